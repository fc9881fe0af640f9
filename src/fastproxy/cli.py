"""The command line: ``fastproxy run | check | fleet | version`` (argument parsing; ``service.py`` runs).

``run`` and ``check`` read HAProxy-format files with ``-f`` (several, files or directories, in order),
as ``haproxy -f`` and ``haproxy -c -f`` do.  ``run`` stays in the foreground (``-D``: in the
background once serving) and logs to stderr; SIGUSR1 stops it softly (listeners close first,
established connections get the grace period, ``hard-stop-after``, 10 s by default, and are then cut),
SIGTERM and SIGINT at once (HAProxy's hard stop), and the process exits 0.  ``run -W`` is
master-worker mode (``master.py``): SIGUSR2 or SIGHUP to the master reloads the files without closing
the listeners (with ``--fleet``, each worker runs the fleet and a new one reads etcd again before it
serves).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Callable, Optional, Sequence

from . import __version__, extensions, implementation
from .config import model
from .errors import ConfigError

log = logging.getLogger("fastproxy")


def _load(files: Sequence[str]) -> model.Config:
    from .config import load

    return load(files)


def _report_warnings(cfg: model.Config) -> None:
    for warning in cfg.warnings:
        print(f"[WARNING] {warning}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    cfg: Optional[model.Config] = None
    worker = args.worker_link is not None
    if args.files:
        try:
            cfg = _load(args.files)
        except ConfigError as exc:
            print(f"[ALERT] configuration errors:\n{exc}", file=sys.stderr)
            return 1
        if not worker:  # its master said them already
            _report_warnings(cfg)
        if cfg.global_.daemon and not args.daemon:
            print("[NOTICE] 'daemon' is ignored: fastproxy runs in the foreground "
                  "(-D runs it in the background)", file=sys.stderr)
    master_worker = args.master_worker or (cfg is not None and cfg.global_.master_worker)
    if master_worker and not worker and cfg is None:
        print("[ALERT] master-worker mode (-W) needs a configuration (-f)", file=sys.stderr)
        return 1
    fleet = None
    if args.fleet:
        from . import fleet as fleet_module

        try:
            fleet = fleet_module.FleetSettings(
                endpoints=tuple(fleet_module.parse_endpoint(e) for e in args.etcd or ["127.0.0.1:2379"]),
                backends=tuple(args.fleet), root=args.etcd_prefix, hash_key=args.hash_key)
        except fleet_module.FleetError as exc:
            print(f"[ALERT] {exc}", file=sys.stderr)
            return 1
    elif args.hash_key is not None:
        print("[ALERT] --hash-key applies to the --fleet backends: name one", file=sys.stderr)
        return 1
    cli_sockets = []
    for text in args.master_cli:
        if not master_worker:
            print("[ALERT] -S (the master CLI) needs master-worker mode (-W)", file=sys.stderr)
            return 1
        from .master_cli import parse_master_socket

        try:
            cli_socket, warnings = parse_master_socket(text)
        except ValueError as exc:
            print(f"[ALERT] -S '{text}': {exc}", file=sys.stderr)
            return 1
        for warning in warnings:
            print(f"[WARNING] {warning}", file=sys.stderr)
        cli_sockets.append(cli_socket)
    transferred = None
    if args.old_socket and args.old_socket != "/dev/null" and not worker:
        if master_worker:
            print("[ALERT] -x is not supported in master-worker mode (-W): the master keeps the "
                  "listening sockets across reloads itself", file=sys.stderr)
            return 1
        from .listener_transfer import TransferError, TransferredListeners, fetch_sockets

        try:
            transferred = TransferredListeners(fetch_sockets(args.old_socket))
        except TransferError as exc:
            print(f"[WARNING] {exc}", file=sys.stderr)
            print("[ALERT] Failed to get the sockets from the old process!", file=sys.stderr)
            return 1
    import uvloop

    from . import lifecycle, service

    ready = lifecycle.daemonize() if args.daemon and not worker else None
    old_pids = args.finish_pids if args.finish_pids is not None else args.terminate_pids
    if old_pids or transferred is not None:
        ready = _then_old_ones_told(ready, old_pids or [], signal.SIGUSR1 if args.finish_pids is not None
                                    else signal.SIGTERM, transferred)
    if master_worker and not worker:
        from .master import Master

        assert cfg is not None
        master = Master(args.files, pidfile=args.pidfile, grace=args.grace, quiet=args.quiet,
                        detach=args.daemon, worker_args=_fleet_arguments(args), cli=cli_sockets)
        return uvloop.run(master.run(cfg, ready))
    if worker:
        from .handover import inheriting_opener, parse_inherited
        from .master import WorkerLink

        import socket

        pairs_from = socket.socket(fileno=args.handover_from) if args.handover_from is not None else None
        status = uvloop.run(service.serve(cfg, None, args.grace, ready=ready,
                                          open_listener=inheriting_opener(parse_inherited(args.inherit)),
                                          worker=WorkerLink(args.worker_link, args.carried_state),
                                          fleet=fleet, pairs_from=pairs_from))
        lifecycle.exit_now(status)  # a former worker is gone sooner (every reload waits for it)
    return uvloop.run(service.serve(cfg, args.pidfile, args.grace, ready=ready, fleet=fleet,
                                    open_listener=transferred.opener() if transferred else None))


def _then_old_ones_told(ready: Optional[Callable[[], None]], pids: list[int], signum: int,
                        transferred: Any) -> Callable[[], None]:
    """Once this process serves: the fetched sockets it did not take closed, the old processes told
    to finish (``-sf``: SIGUSR1, a soft stop) or to stop (``-st``: SIGTERM), as haproxy's
    tell_old_pids() once it is bound; a process already gone is no error.  Then ``ready``."""
    def serving() -> None:
        if transferred is not None:
            transferred.close_unused()
        for pid in pids:
            try:
                os.kill(pid, signum)
            except OSError:
                pass
        if ready is not None:
            ready()
    return serving


def _fleet_arguments(args: argparse.Namespace) -> list[str]:
    """The fleet's options again, for a master's workers: each worker runs the fleet (and reads etcd
    again when a reload starts it)."""
    if not args.fleet:
        return []
    words = [word for backend in args.fleet for word in ("--fleet", backend)]
    words += [word for endpoint in args.etcd or [] for word in ("--etcd", endpoint)]
    words += ["--etcd-prefix", args.etcd_prefix]
    if args.hash_key is not None:
        words += ["--hash-key", args.hash_key]
    return words


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args.files)
    except ConfigError as exc:
        print(f"[ALERT] configuration errors:\n{exc}", file=sys.stderr)
        return 1
    _report_warnings(cfg)
    print("Configuration file is valid")
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    """``fastproxy fleet list|put|drain|remove|instances``: the fleet's keys in etcd, for operators."""
    import asyncio

    from . import fleet

    try:
        endpoint = fleet.parse_endpoint(args.etcd)
        root = args.etcd_prefix
        if args.action == "instances":
            for name, fields in asyncio.run(fleet.list_instances(endpoint, root)):
                print(f"{name} version {fields.get('version', '?')} pid {fields.get('pid', '?')} "
                      f"backends {','.join(fields.get('backends', []))}")
            return 0
        if args.backend is None:
            print("[ALERT] fastproxy fleet " + args.action + ": a backend is required", file=sys.stderr)
            return 2
        if args.action == "list":
            for member in asyncio.run(fleet.list_members(endpoint, root, args.backend)):
                print(f"{member.name} {member.address}:{member.port} weight {member.weight} {member.state}")
            return 0
        if args.server is None:
            print(f"[ALERT] fastproxy fleet {args.action}: a server name is required", file=sys.stderr)
            return 2
        if args.action == "put":
            if args.address is None:
                print("[ALERT] fastproxy fleet put: ADDRESS:PORT is required", file=sys.stderr)
                return 2
            host, port = fleet.parse_endpoint(args.address)
            member = fleet.Member(args.server, host, port, args.weight, args.state)
            asyncio.run(fleet.put_member(endpoint, root, args.backend, member))
            return 0
        if args.action == "drain":
            found = asyncio.run(fleet.get_member(endpoint, root, args.backend, args.server))
            if found is None:
                print(f"[ALERT] no server {args.server} in the fleet's {args.backend}", file=sys.stderr)
                return 1
            drained = fleet.Member(found.name, found.address, found.port, found.weight, "drain")
            asyncio.run(fleet.put_member(endpoint, root, args.backend, drained))
            return 0
        if not asyncio.run(fleet.remove_member(endpoint, root, args.backend, args.server)):
            print(f"[ALERT] no server {args.server} in the fleet's {args.backend}", file=sys.stderr)
            return 1
        return 0
    except fleet.FleetError as exc:
        print(f"[ALERT] {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - etcd unreachable, whatever the client raised
        print(f"[ALERT] etcd at {args.etcd}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def cmd_version(args: argparse.Namespace) -> int:
    kind = implementation()
    if kind == "mixed":  # a half-built install: say which extension fell back to its twin
        kind = "mixed: " + ", ".join(f"{name} {impl}" for name, impl in extensions().items())
    print(f"fastproxy {__version__} ({kind} data plane, Python {sys.version.split()[0]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastproxy",
        description="A layer-4 (TCP) proxy and load balancer that runs HAProxy TCP-mode configurations.",
        epilog="Run 'fastproxy run' with no file to try the embedded default on 127.0.0.1:8080.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the proxy in the foreground",
                         description="Run the proxy in the foreground, logging to stderr. With no -f, run "
                                     "the embedded default (127.0.0.1:8080 over two built-in echo backends).")
    run.add_argument("-f", dest="files", action="append", default=[], metavar="FILE",
                     help="HAProxy-format configuration file or directory (repeatable, read in order)")
    run.add_argument("-p", dest="pidfile", metavar="PIDFILE", help="write the process id to PIDFILE")
    run.add_argument("--grace", type=float, metavar="SECONDS",
                     help="on stop, how long established connections may go on before they are cut "
                          "(default: hard-stop-after, else 10)")
    run.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    run.add_argument("-W", dest="master_worker", action="store_true",
                     help="master-worker mode: a master that starts the worker and reloads it on "
                          "SIGUSR2 or SIGHUP without closing the listeners (as 'master-worker' in global)")
    run.add_argument("-D", dest="daemon", action="store_true",
                     help="daemon mode: go to the background once serving (the pidfile has the pid)")
    run.add_argument("-S", dest="master_cli", action="append", default=[], metavar="SOCKET[,OPTIONS]",
                     help="with -W, the master CLI on SOCKET (a path or host:port), bind options after "
                          "commas (mode,600,level,operator...)")
    run.add_argument("-sf", dest="finish_pids", nargs="*", type=int, metavar="PID",
                     help="once serving, tell these processes to finish (SIGUSR1: a soft stop)")
    run.add_argument("-st", dest="terminate_pids", nargs="*", type=int, metavar="PID",
                     help="once serving, tell these processes to stop now (SIGTERM)")
    run.add_argument("-x", dest="old_socket", metavar="SOCKET",
                     help="listen on the sockets of the process whose stats socket (with 'expose-fd "
                          "listeners') is SOCKET, instead of binding new ones")
    # Set by the master on the workers it starts (master.py), not by hand.
    run.add_argument("--worker-link", type=int, metavar="FD", help=argparse.SUPPRESS)
    run.add_argument("--inherit", action="append", default=[], metavar="FD=ADDRESS", help=argparse.SUPPRESS)
    run.add_argument("--handover-from", type=int, metavar="FD", help=argparse.SUPPRESS)
    run.add_argument("--carried-state", metavar="FILE", help=argparse.SUPPRESS)
    run.add_argument("--fleet", action="append", default=[], metavar="BACKEND",
                     help="take BACKEND's servers from etcd, under <prefix>backends/BACKEND/ (repeatable)")
    run.add_argument("--etcd", action="append", metavar="HOST:PORT",
                     help="an etcd endpoint for --fleet (repeatable; default 127.0.0.1:2379)")
    run.add_argument("--etcd-prefix", default="/fastproxy/", metavar="PREFIX",
                     help="the fleet's key prefix in etcd (default /fastproxy/)")
    run.add_argument("--hash-key", choices=["id", "addr", "addr-port"],
                     help="what the --fleet backends' ring positions derive from, as HAProxy 3.0's "
                          "hash-key (default: the server's name)")
    run.set_defaults(handler=cmd_run)

    fleet = sub.add_parser("fleet", help="list and change the fleet's servers in etcd",
                           description="The servers of fleet backends (run --fleet) in etcd: list them, "
                                       "put one (added, or changed), drain or remove one; list the "
                                       "running instances.")
    fleet.add_argument("action", choices=["list", "put", "drain", "remove", "instances"])
    fleet.add_argument("backend", nargs="?")
    fleet.add_argument("server", nargs="?")
    fleet.add_argument("address", nargs="?", metavar="ADDRESS:PORT")
    fleet.add_argument("--weight", type=int, default=1)
    fleet.add_argument("--state", choices=["ready", "drain", "maint"], default="ready")
    fleet.add_argument("--etcd", default="127.0.0.1:2379", metavar="HOST:PORT")
    fleet.add_argument("--etcd-prefix", default="/fastproxy/", metavar="PREFIX")
    fleet.set_defaults(handler=cmd_fleet)

    check = sub.add_parser("check", help="validate configuration files and exit (like haproxy -c)",
                           description="Read the files and report every error and warning; exit 0 if "
                                       "the configuration would run, 1 if not.")
    check.add_argument("-f", dest="files", action="append", required=True, metavar="FILE",
                       help="HAProxy-format configuration file or directory (repeatable)")
    check.set_defaults(handler=cmd_check)

    version = sub.add_parser("version", help="print the version and the active data plane")
    version.set_defaults(handler=cmd_version)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=f"%(asctime)s fastproxy[{os.getpid()}]: %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
