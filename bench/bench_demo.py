"""Demo loading: rows per second and peak memory of `gridhub demo`. Prints; asserts nothing.

    python bench/bench_demo.py --residents 1000000                  # a fresh SQLite file
    python bench/bench_demo.py --residents 1000000 --db postgresql://postgres@127.0.0.1/bench

A given database must be empty (or pass --reset to delete its rows first). The baseline, measured
in the same run after the load, is generating the same rows without writing them: the ratio
shows what the database adds on top of Python.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.demo.loader import DEFAULT_BATCH, DemoReport, load
from hub.demo.people import Census, resident_batches
from hub.demo.world import build_world
from hub.migrate import upgrade


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def generate_only(residents: int, seed: int, batch: int) -> tuple[int, float]:
    started = time.perf_counter()
    rows = 0
    anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    world = build_world(seed)
    for chunk in resident_batches(
        world, seed=seed, total=residents, anchor=anchor, batch_size=batch, census=Census()
    ):
        rows += chunk.rows
    return rows, time.perf_counter() - started


async def load_once(
    url: str, residents: int, seed: int, batch: int, reset: bool
) -> tuple[DemoReport, float]:
    started = time.perf_counter()
    await upgrade(url)
    migrated = time.perf_counter() - started
    report = await load(url, residents=residents, seed=seed, batch_size=batch, reset=reset)
    return report, migrated


def bench(url: str, residents: int, seed: int, batch: int, reset: bool) -> None:
    report, migrated = asyncio.run(load_once(url, residents, seed, batch, reset))
    rss = peak_rss_mib()
    print(f"database      {report.url}")
    print(f"migrate       {migrated:.1f} s")
    print(
        f"load          {report.seconds:.1f} s for {report.residents:,} residents, "
        f"{report.rows:,} rows in all tables"
    )
    print(f"rows/s        {report.rows_per_second:,.0f}")
    print(f"residents/s   {report.residents / report.seconds:,.0f}")
    print(f"peak RSS      {rss:,.0f} MiB")
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        print(f"file size     {path.stat().st_size / 2**20:,.0f} MiB")
    rows, seconds = generate_only(residents, seed, batch)
    print(
        f"baseline      generating the residents' {rows:,} rows without a database: "
        f"{seconds:.1f} s ({rows / seconds:,.0f} rows/s)"
    )
    print(f"ratio         load / generation = {report.seconds / seconds:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--reset", action="store_true", help="delete the rows of --db first")
    args = parser.parse_args()
    if args.db:
        bench(args.db, args.residents, args.seed, args.batch, args.reset)
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'bench_demo.db'}"
        bench(url, args.residents, args.seed, args.batch, reset=False)


if __name__ == "__main__":
    main()
