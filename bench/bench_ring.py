"""The consistent-hash ring side by side with uhashring (pytest-benchmark).

Run (the exact command, results and goals are in bench/README_ring.md)::

    PYTHONPATH=src python -m pytest bench/bench_ring.py -s -p no:cacheprovider \
        --benchmark-columns=min,median,rounds --benchmark-group-by=group --benchmark-sort=name

Rings under test: fastproxy's compiled ring (ketama, 160 points per unit of weight; Maglev, 65537
entries), its pure-Python twin, and uhashring (md5 ketama, 160 vnodes per unit of weight).  Servers:
1,000 named ``server-0000``..., weights 1, 2, 3, 4 in turn (2,500 units).  Keys: 10,000 str keys
``client-<n>``.  Lookup times are per key, from Python: a ``for`` loop calling ``lookup`` (single) and
one ``lookup_many`` call (batch; uhashring has none, so a list comprehension).  The distribution
numbers (peak-to-mean load, keys moved on removal) are exact for fastproxy's rings (the table's own
shares) and for uhashring (its points), and printed at the end with the timings.
"""

from __future__ import annotations

import pytest
from uhashring import HashRing as UHashRing

from fastproxy import ring

SERVERS = 1000
WEIGHTS = {f"server-{i:04d}": 1 + i % 4 for i in range(SERVERS)}
KEYS = [f"client-{i}" for i in range(10_000)]
MOVED_KEYS = [f"moved-{i}" for i in range(200_000)]
RESULTS: dict[str, dict[str, float]] = {}


def record(benchmark, name: str, what: str, per: int = 1) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    RESULTS.setdefault(name, {})[what] = stats.stats.min / per
    RESULTS[name][what + " median"] = stats.stats.median / per
    benchmark.extra_info["ns per key" if per > 1 else "ms"] = round(
        stats.stats.min / per * (1e9 if per > 1 else 1e3), 2)


def compiled():
    if ring.CHashRing is None:
        pytest.fail("the compiled ring (fastproxy._ring) is not importable: build it first")
    return ring.CHashRing


RINGS = {
    "fastproxy ketama": lambda: compiled()(WEIGHTS, "ketama"),
    "fastproxy maglev": lambda: compiled()(WEIGHTS, "maglev"),
    "python twin ketama": lambda: ring.PyHashRing(WEIGHTS, "ketama"),
    "python twin maglev": lambda: ring.PyHashRing(WEIGHTS, "maglev"),
    "uhashring": lambda: UHashRing(nodes=dict(WEIGHTS)),
}
_built: dict[str, object] = {}


def built(name: str):
    if name not in _built:
        _built[name] = RINGS[name]()
    return _built[name]


def lookup_function(name: str):
    r = built(name)
    return r.get_node if name == "uhashring" else r.lookup


@pytest.mark.parametrize("name", list(RINGS))
def test_lookup_single(benchmark, name):
    benchmark.group = "lookup, single (10,000 keys, per round)"
    lookup = lookup_function(name)

    def run():
        for key in KEYS:
            lookup(key)
    if name.startswith("python") or name == "uhashring":
        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    else:
        benchmark(run)
    record(benchmark, name, "single", len(KEYS))


@pytest.mark.parametrize("name", list(RINGS))
def test_lookup_batch(benchmark, name):
    benchmark.group = "lookup, batch (10,000 keys, per round)"
    r = built(name)
    if name == "uhashring":
        get_node = r.get_node
        benchmark.pedantic(lambda: [get_node(key) for key in KEYS], rounds=5, warmup_rounds=1)
    elif name.startswith("python"):
        benchmark.pedantic(r.lookup_many, args=(KEYS,), rounds=5, warmup_rounds=1)
    else:
        benchmark(r.lookup_many, KEYS)
    record(benchmark, name, "batch", len(KEYS))


LARGE_BATCH = [f"client-{i}" for i in range(100_000)]


@pytest.mark.parametrize("name", ["fastproxy ketama", "fastproxy maglev"])
def test_lookup_batch_large(benchmark, name):
    """A batch of 100,000 keys: the keys no longer fit the caches beside the table."""
    benchmark.group = "lookup, batch (100,000 keys, per round)"
    benchmark(built(name).lookup_many, LARGE_BATCH)
    record(benchmark, name, "batch 100k", len(LARGE_BATCH))


@pytest.mark.parametrize("name", list(RINGS))
def test_build(benchmark, name):
    benchmark.group = "build, 1,000 weighted servers"
    if name.startswith("python") or name == "uhashring":
        benchmark.pedantic(RINGS[name], rounds=3, warmup_rounds=0)
    else:
        benchmark.pedantic(RINGS[name], rounds=30, warmup_rounds=3)
    record(benchmark, name, "build")


def test_build_maglev_at_100_entries_per_server(benchmark):
    """Maglev's peak-to-mean goal is for M >= 100 N: 100,003 entries for 1,000 servers."""
    benchmark.group = "build, 1,000 weighted servers"
    benchmark.pedantic(lambda: compiled()(WEIGHTS, "maglev", table_size=100_003), rounds=30, warmup_rounds=3)
    record(benchmark, "fastproxy maglev M=100003", "build")


# --- distribution ---------------------------------------------------------------------------------

def uhashring_shares(r) -> dict[str, float]:
    """Exact arc shares of uhashring's points (md5: a 128-bit circle)."""
    points = r.get_points()
    circle = 1 << 128
    owned: dict[str, int] = dict.fromkeys(WEIGHTS, 0)
    previous = points[-1][0] - circle
    for position, node in points:
        owned[node] += position - previous
        previous = position
    return {node: count / circle for node, count in owned.items()}


def peak_to_mean(shares: dict[str, float], weights: dict[str, int]) -> float:
    """The most loaded server's load per unit of weight over the mean load per unit of weight."""
    total = sum(weights.values())
    return max(shares[name] / (weight / total) for name, weight in weights.items())


def moved_on_removal(make, victim: str) -> tuple[float, float]:
    """(fraction of keys that moved, the removed server's fair share) when ``victim`` leaves."""
    before = make(WEIGHTS)
    rest = {name: weight for name, weight in WEIGHTS.items() if name != victim}
    after = make(rest)
    lookup_before = before.get_node if isinstance(before, UHashRing) else before.lookup
    lookup_after = after.get_node if isinstance(after, UHashRing) else after.lookup
    moved = sum(1 for key in MOVED_KEYS if lookup_before(key) != lookup_after(key))
    return moved / len(MOVED_KEYS), WEIGHTS[victim] / sum(WEIGHTS.values())


QUALITY_RINGS = {
    "fastproxy ketama": lambda w: compiled()(w, "ketama"),
    "fastproxy maglev": lambda w: compiled()(w, "maglev"),
    "fastproxy maglev M=100003": lambda w: compiled()(w, "maglev", table_size=100_003),
    "uhashring": lambda w: UHashRing(nodes=dict(w)),
}


@pytest.mark.parametrize("name", list(QUALITY_RINGS))
def test_distribution(name):
    make = QUALITY_RINGS[name]
    r = make(WEIGHTS)
    shares = uhashring_shares(r) if name == "uhashring" else r.shares()
    result = RESULTS.setdefault(name, {})
    result["peak-to-mean"] = peak_to_mean(shares, WEIGHTS)
    equal = {name_: 1 for name_ in WEIGHTS}
    r_equal = make(equal)
    result["peak-to-mean, equal weights"] = peak_to_mean(
        uhashring_shares(r_equal) if name == "uhashring" else r_equal.shares(), equal)
    moved, fair = moved_on_removal(make, "server-0503")  # weight 4
    result["moved on removal"] = moved
    result["fair share of the removed"] = fair


def test_summary():
    """Print the side-by-side table (the goals of issue 3 in brackets)."""
    def ns(name, what):
        value = RESULTS.get(name, {}).get(what)
        return f"{value * 1e9:9.1f}" if value is not None else f"{'-':>9}"

    def ms(name, what):
        value = RESULTS.get(name, {}).get(what)
        return f"{value * 1e3:9.2f}" if value is not None else f"{'-':>9}"

    def number(name, what, digits=4):
        value = RESULTS.get(name, {}).get(what)
        return f"{value:9.{digits}f}" if value is not None else f"{'-':>9}"

    header = (f"{'ring':28} {'single ns':>9} {'(median)':>9} {'batch ns':>9} {'(median)':>9} "
              f"{'100k ns':>9} {'build ms':>9} {'peak/mean':>9} {'(equal w)':>9} {'moved':>9} {'fair':>9}")
    lines = ["", header]
    for name in [*RINGS, "fastproxy maglev M=100003"]:
        lines.append(
            f"{name:28} {ns(name, 'single')} {ns(name, 'single median')} {ns(name, 'batch')} "
            f"{ns(name, 'batch median')} {ns(name, 'batch 100k')} {ms(name, 'build')} "
            f"{number(name, 'peak-to-mean')} "
            f"{number(name, 'peak-to-mean, equal weights')} {number(name, 'moved on removal')} "
            f"{number(name, 'fair share of the removed')}")
    uhash = RESULTS.get("uhashring", {}).get("single")
    for name in ("fastproxy ketama", "fastproxy maglev"):
        single = RESULTS.get(name, {}).get("single")
        if uhash and single:
            lines.append(f"{name}: single lookup {uhash / single:.0f} times faster than uhashring "
                         "[goal: >= 15, and <= 100 ns; batch <= 25 ns]")
    lines.append("[goals: build maglev M=65537 N=1000 <= 2 ms, ketama 160/weight N=1000 <= 10 ms, "
                 "maglev peak-to-mean <= 1.01 with M >= 100 N]")
    print("\n".join(lines))
