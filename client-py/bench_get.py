#!/usr/bin/env python3
"""GET round-trip latency of the blocking client: sequential GETs of one
session, each timed from the call to its decoded result.

    python3 client-py/bench_get.py [--count 20000] [--size 1024] [--socket PATH]

Without ``--socket`` it starts a daemon of its own on a temporary directory:
``$SESSIOND_BIN``, else target/release/sessiond if built, else target/debug.
Not a test: it prints figures to compare with the Rust client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run from a checkout: the package and the test harness

import sessiond  # noqa: E402
from tests.support import REPO, Daemon  # noqa: E402


def percentile(sorted_ns: list[int], q: float) -> float:
    """The q-quantile in microseconds (nearest rank)."""
    rank = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[rank] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="timed GETs (default 20000)")
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed GETs first (default 1000)")
    parser.add_argument("--size", type=int, default=1024, help="bytes of session data (default 1024)")
    parser.add_argument("--socket", help="a running daemon's socket; default: start one")
    args = parser.parse_args()

    daemon = None
    if args.socket is None:
        release = REPO / "target" / "release" / "sessiond"
        if "SESSIOND_BIN" not in os.environ and release.is_file():
            os.environ["SESSIOND_BIN"] = str(release)
        daemon = Daemon()
        print(f"daemon: {daemon.binary} (started for this run)")
    try:
        client = sessiond.Client(args.socket or daemon.socket)  # type: ignore[union-attr]
        key = client.create({"data": os.urandom(args.size // 2).hex()}).key
        for _ in range(args.warmup):
            client.get(key)
        samples = []
        clock = time.perf_counter_ns
        for _ in range(args.count):
            start = clock()
            client.get(key)
            samples.append(clock() - start)
        client.close()
    finally:
        if daemon is not None:
            daemon.close()

    samples.sort()
    total_s = sum(samples) / 1e9
    print(f"python {sys.version.split()[0]}, sessiond client {sessiond.__version__}")
    print(f"GET of a {args.size}-byte session, {args.count} sequential calls, one connection")
    print(
        f"p50 {percentile(samples, 0.50):.1f} us   p90 {percentile(samples, 0.90):.1f} us   "
        f"p99 {percentile(samples, 0.99):.1f} us   p99.9 {percentile(samples, 0.999):.1f} us   "
        f"max {samples[-1] / 1000:.1f} us"
    )
    print(f"mean {statistics.fmean(samples) / 1000:.1f} us   {args.count / total_s:,.0f} GETs/s")


if __name__ == "__main__":
    main()
