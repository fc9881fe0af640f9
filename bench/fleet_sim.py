"""A large fleet in one process: 100 instances, 1,000 servers, a rolling restart of every server.

Run (the exact command and a recorded run are in bench/README_fleet.md)::

    python bench/fleet_sim.py --algorithm maglev --implementation compiled
    python bench/fleet_sim.py --algorithm ketama --implementation compiled
    python bench/fleet_sim.py --rebuilds-only --implementation python

Each instance is a ring (``fastproxy.ring``: the compiled ``CHashRing`` or the ``PyHashRing`` twin) built
as a fleet backend's is (``balance._GroupRings``: ring names from ``balance.ring_names``, 160 ketama points
per server of weight 1, a Maglev table of 65,537 entries).  Server ``i`` is ``web-<i>-<generation>`` at
``10.<i / 256>.<i % 256>.1:8080``; the rolling restart takes each server in turn out (drained, then
removed: both take it off the ring) and brings it back as the next generation, a new name at the same
address, as a redeployed pod comes back.  Every instance is fed the same two events per step, in its own
way, as etcd's watch and the 50 ms batches deliver them to instances near and far:

- ``separate``: the removal, then the addition, each applied on its own (two rebuilds, in place);
- ``batched``: both in one batch, in either order (one rebuild, from the members, never the mid-state);
- ``reversed``: the new generation registered before the old one is removed, each on its own;
- ``lagging``: behind by a step: two steps' four events at once, every other step (shuffled).

Reported: per step, whether every instance that has applied the step holds the byte-identical table
(``digest()``; at every other step the lagging ones are a step behind and are compared at the next), the
keys moved on a ``separate`` instance against the ideal (1/N of the keys leave with the server; back at
its own address the server takes its keys back, so the ideal after a step is 0), and each rebuild's time.
``--hash-key name`` (fastproxy's default without ``--hash-key``) shows what a new name costs instead.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from fastproxy import ring as ring_module  # noqa: E402
from fastproxy.balance import POINTS_PER_WEIGHT, ring_names  # noqa: E402

MODES = ("separate", "batched", "reversed", "lagging")
DEFAULT_TABLE_SIZE = 65537  # a maglev backend's table (model.Balance.table_size)


class Instance:
    """One instance of the fleet: its members (server name -> identity) and its ring."""

    def __init__(self, ring_class: Any, algorithm: str, members: dict[str, str], mode: str,
                 table_size: int = DEFAULT_TABLE_SIZE) -> None:
        self.ring_class, self.algorithm, self.mode, self.table_size = ring_class, algorithm, mode, table_size
        self.members = dict(members)
        self.current = self.ring_members()  # what the ring holds now: ring name -> weight
        self.ring = self.build()
        self.rebuilds: list[float] = []  # seconds
        self.waiting: list[tuple[str, str, str | None]] = []  # a lagging instance's events not applied yet

    def weight(self) -> int:
        return POINTS_PER_WEIGHT if self.algorithm == "ketama" else 1

    def ring_members(self) -> dict[str, int]:
        names = ring_names([(identity, name) for name, identity in self.members.items()])
        return dict.fromkeys(names, self.weight())

    def build(self) -> Any:
        self.current = self.ring_members()
        return self.ring_class(self.current, self.algorithm, points_per_weight=1, table_size=self.table_size)

    def record(self, event: tuple[str, str, str | None]) -> None:
        kind, name, identity = event
        if kind == "add":
            assert identity is not None
            self.members[name] = identity
        else:
            self.members.pop(name, None)

    def apply(self, events: list[tuple[str, str, str | None]]) -> None:
        """Events as one batch: the ring rebuilt once from the members (``Balancer.batch``)."""
        for event in events:
            self.record(event)
        started = time.perf_counter()
        self.ring = self.build()
        self.rebuilds.append(time.perf_counter() - started)

    def apply_one(self, event: tuple[str, str, str | None]) -> None:
        """One event on its own: the ring changed in place when one entry differs, as
        ``_GroupRings.server_changed`` does, else rebuilt."""
        before = self.current
        self.record(event)
        after = self.ring_members()
        gone = [n for n in before if n not in after]
        added = [n for n in after if n not in before]
        started = time.perf_counter()
        if len(gone) + len(added) == 1:
            for n in gone:
                self.ring.remove(n)
            for n in added:
                self.ring.add(n, after[n])
            self.current = after
        elif gone or added:
            self.ring = self.build()
        self.rebuilds.append(time.perf_counter() - started)


def identity_of(i: int, generation: int, hash_key: str) -> str:
    address = f"10.{i // 256}.{i % 256}.1:8080"
    return address if hash_key == "addr-port" else f"web-{i:04d}-{generation}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def moved(before: list[str], after: list[str]) -> float:
    return sum(x != y for x, y in zip(before, after)) / len(before)


def simulate(args: argparse.Namespace, ring_class: Any) -> dict[str, Any]:
    rng = random.Random(args.seed)
    n = args.servers
    members = {f"web-{i:04d}-0": identity_of(i, 0, args.hash_key) for i in range(n)}
    instances = [Instance(ring_class, args.algorithm, members, MODES[k % len(MODES)], args.table_size)
                 for k in range(args.instances)]
    reference = next(instance for instance in instances if instance.mode == "separate")
    keys = [rng.getrandbits(64).to_bytes(8, "little") for _ in range(args.keys)]
    steps = min(args.steps or n, n)
    identical_steps = compared_steps = 0
    compared_instances = 0
    mid_moved: list[float] = []
    end_moved: list[float] = []
    started = time.perf_counter()
    for step in range(steps):
        i = step % n
        old, new = f"web-{i:04d}-0", f"web-{i:04d}-1"
        removal = ("remove", old, None)
        addition = ("add", new, identity_of(i, 1, args.hash_key))
        before = reference.ring.lookup_many(keys)
        for instance in instances:
            if instance.mode == "separate":
                instance.apply_one(removal)
                if instance is reference:
                    mid_moved.append(moved(before, instance.ring.lookup_many(keys)))
                instance.apply_one(addition)
            elif instance.mode == "reversed":
                instance.apply_one(addition)
                instance.apply_one(removal)
            elif instance.mode == "batched":
                instance.apply(rng.sample([removal, addition], 2))
            else:
                instance.waiting += [removal, addition]
                if len(instance.waiting) == 4 or step == steps - 1:
                    instance.apply(rng.sample(instance.waiting, len(instance.waiting)))
                    instance.waiting = []
        end_moved.append(moved(before, reference.ring.lookup_many(keys)))
        caught_up = [instance for instance in instances if not instance.waiting]
        digests = {instance.ring.digest() for instance in caught_up}
        compared_steps += 1
        compared_instances += len(caught_up)
        identical_steps += len(digests) == 1
        if args.progress and step % 100 == 99:
            print(f"  step {step + 1}/{steps}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    elapsed = time.perf_counter() - started
    # The other implementation, from the same members, builds the same bytes.
    twin_class = ring_module.PyHashRing if ring_class is not ring_module.PyHashRing else ring_module.CHashRing
    twin = twin_class(reference.current, args.algorithm, points_per_weight=1, table_size=args.table_size) \
        if twin_class is not None else None
    rebuilds = [seconds for instance in instances for seconds in instance.rebuilds]
    ideal = 1 / n
    return {
        "steps": steps, "identical": identical_steps, "compared": compared_steps,
        "instances per comparison": compared_instances / compared_steps,
        "mid moved mean/ideal": statistics.mean(mid_moved) / ideal,
        "mid moved p99/ideal": percentile(mid_moved, 0.99) / ideal,
        "mid moved max/ideal": max(mid_moved) / ideal,
        "end moved mean": statistics.mean(end_moved), "end moved max": max(end_moved),
        "rebuilds": len(rebuilds), "rebuild median ms": statistics.median(rebuilds) * 1e3,
        "rebuild p99 ms": percentile(rebuilds, 0.99) * 1e3, "rebuild max ms": max(rebuilds) * 1e3,
        "elapsed s": elapsed,
        "twin agrees": None if twin is None else twin.digest() == reference.ring.digest(),
    }


def rebuild_times(ring_class: Any, algorithm: str, servers: int, rounds: int,
                  table_size: int = DEFAULT_TABLE_SIZE) -> list[float]:
    """Seconds to build the table of ``servers`` servers, ``rounds`` times (one server fewer each)."""
    weight = POINTS_PER_WEIGHT if algorithm == "ketama" else 1
    times = []
    for r in range(rounds):
        members = {identity_of(i, 0, "addr-port"): weight for i in range(servers) if i != r}
        started = time.perf_counter()
        ring_class(members, algorithm, points_per_weight=1, table_size=table_size)
        times.append(time.perf_counter() - started)
    return times


def implementations(name: str) -> list[tuple[str, Any]]:
    found = []
    if name in ("compiled", "both"):
        if ring_module.CHashRing is None:
            sys.exit("the compiled ring (fastproxy._ring) is not importable: build it first")
        found.append(("compiled", ring_module.CHashRing))
    if name in ("python", "both"):
        found.append(("python", ring_module.PyHashRing))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=0, help="restart this many servers (default: all)")
    parser.add_argument("--keys", type=int, default=200_000, help="keys looked up for the keys moved")
    parser.add_argument("--algorithm", choices=["maglev", "ketama"], default="maglev")
    parser.add_argument("--implementation", choices=["compiled", "python", "both"], default="compiled")
    parser.add_argument("--hash-key", choices=["addr-port", "name"], default="addr-port")
    parser.add_argument("--table-size", type=int, default=DEFAULT_TABLE_SIZE, help="Maglev entries")
    parser.add_argument("--rebuilds-only", action="store_true",
                        help="only time table rebuilds of --servers servers (both algorithms)")
    parser.add_argument("--rounds", type=int, default=5, help="rebuilds timed with --rebuilds-only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    if args.rebuilds_only:
        print("| implementation | algorithm | servers | rebuild median ms | min | max |")
        print("|---|---|---|---|---|---|")
        for label, ring_class in implementations(args.implementation):
            for algorithm in ("maglev", "ketama"):
                times = rebuild_times(ring_class, algorithm, args.servers, args.rounds, args.table_size)
                print(f"| {label} | {algorithm} | {args.servers} | {statistics.median(times) * 1e3:.1f} "
                      f"| {min(times) * 1e3:.1f} | {max(times) * 1e3:.1f} |")
        return 0

    for label, ring_class in implementations(args.implementation):
        result = simulate(args, ring_class)
        table = f", {args.table_size} entries" if args.algorithm == "maglev" else ""
        print(f"{label} {args.algorithm}{table}, hash-key {args.hash_key}: {args.instances} instances, "
              f"{args.servers} servers, {result['steps']} restarts ({result['elapsed s']:.0f} s)")
        print(f"  byte-identical after the step: {result['identical']}/{result['compared']} steps "
              f"({result['instances per comparison']:.1f} instances compared per step, the lagging ones "
              f"at every other step)")
        print(f"  keys moved with the server out, over the ideal 1/N: "
              f"mean {result['mid moved mean/ideal']:.3f}, p99 {result['mid moved p99/ideal']:.3f}, "
              f"max {result['mid moved max/ideal']:.3f}")
        print(f"  keys moved after the step (ideal 0): mean {result['end moved mean']:.6f}, "
              f"max {result['end moved max']:.6f}")
        if result["twin agrees"] is not None:
            print(f"  the other implementation's table of the last membership: "
                  f"{'byte-identical' if result['twin agrees'] else 'DIFFERENT'}")
        print(f"  rebuilds: {result['rebuilds']}, median {result['rebuild median ms']:.2f} ms, "
              f"p99 {result['rebuild p99 ms']:.2f} ms, max {result['rebuild max ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
