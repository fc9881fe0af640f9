"""The command line: ``fastproxy run | check | version`` (argument parsing; ``service.py`` runs).

``run`` and ``check`` read HAProxy-format files with ``-f`` (several, files or directories, in order),
as ``haproxy -f`` and ``haproxy -c -f`` do.  ``run`` stays in the foreground and logs to stderr;
SIGTERM and SIGINT stop it cleanly: listeners close first, established connections get the grace
period (``hard-stop-after``, 10 s by default) and are then cut, and the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

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
    if args.files:
        try:
            cfg = _load(args.files)
        except ConfigError as exc:
            print(f"[ALERT] configuration errors:\n{exc}", file=sys.stderr)
            return 1
        _report_warnings(cfg)
        if cfg.global_.daemon:
            print("[NOTICE] 'daemon' is ignored: fastproxy runs in the foreground "
                  "(use your service manager to run it in the background)", file=sys.stderr)
    import uvloop

    from .service import serve

    return uvloop.run(serve(cfg, args.pidfile, args.grace))


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args.files)
    except ConfigError as exc:
        print(f"[ALERT] configuration errors:\n{exc}", file=sys.stderr)
        return 1
    _report_warnings(cfg)
    print("Configuration file is valid")
    return 0


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
    run.set_defaults(handler=cmd_run)

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
