"""Household import through the file connector: records/s and peak RSS of a first import, and of
a no-change re-sync, against reading the same file without writing (same run, same machine).

    python bench/bench_sync.py                      # 100k residents, SQLite
    python bench/bench_sync.py --rows 20000
    python bench/bench_sync.py --db postgresql://postgres@127.0.0.1/bench   # a scratch database!

Each phase runs `gridhub sync run` in a child process, as an operator would, so its peak RSS is
the child's own (os.wait4). Phases:

- read only: the same file through the file kind, mapped, nothing written (the baseline);
- first import: every row creates a resident, its tags, its links and an audit record per page;
- re-sync with --full: every row read, mapped and matched again, nothing written (it must write
  nothing: the script checks the audit log did not grow);
- incremental re-sync: the file has not changed, so nothing is read at all.

Prints rates and ratios; asserts nothing but the no-write property.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from hub.authz.models import AuditRecord
from hub.db import Database
from hub.demo.loader import load_demo
from hub.grids.models import Grid
from hub.migrate import upgrade
from hub.models import Resident
from hub.residents import idcard
from hub.sync.models import SyncRun

DEFINITION = """
name = "bench-household"
kind = "file"
direction = "pull"
entity = "resident"
subject = "connector:household"
system = "bench-registry"
page_size = 1000

[source]
path = "{path}"

[match]
external_id = "人员编号"
natural_key = ["idNumber"]
version = "更新时间"

[mapping]
name = "姓名"
idNumber = "公民身份号码"
phone = "联系电话"
address = "现住址"
householdCode = "户号"
gridCode = "网格编码"
"""

READ_ONLY = """
import asyncio, sys
from pathlib import Path
from hub.connectors.definition import load_file
from hub.connectors.files import open_source
from hub.connectors.mapping import map_record
from hub.connectors.records import SourceContext

async def main():
    definition = load_file(Path(sys.argv[1]))
    context = SourceContext(connector="bench", options=definition.resolved_source(), page_size=1000)
    count = 0
    async for page in open_source(context).pages(None):
        for record in page.records:
            map_record(definition, record.payload)
            count += 1
    print(count)

asyncio.run(main())
"""


def write_dump(path: Path, rows: int, grid_codes: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "人员编号",
                "姓名",
                "公民身份号码",
                "联系电话",
                "现住址",
                "户号",
                "网格编码",
                "更新时间",
            ]
        )
        for n in range(rows):
            # (birth date, sequence) is unique per row: every row is a different person.
            born = date(1940, 1, 1) + timedelta(days=7 * (n // 1000))
            writer.writerow(
                [
                    f"B{n:08d}",
                    f"住户{n}",
                    idcard.make("320102", born, n % 1000),
                    f"139{n:08d}",
                    f"鼓楼区某街道{n % 500}号楼{n % 30}单元",
                    f"H{n // 3:08d}",
                    grid_codes[n % len(grid_codes)],
                    "2026-11-01T08:00:00+08:00",
                ]
            )


def child(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run a child; returns (seconds, peak RSS bytes, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({process.returncode}):\n{output}")
    return seconds, usage.ru_maxrss * 1024, output


async def prepare(url: str) -> list[str]:
    await upgrade(url)
    await load_demo(url, residents=50, seed=1, reset=True, progress=False)
    database = Database(url)
    async with database.reader() as session:
        codes = list(await session.scalars(select(Grid.code).where(Grid.level == "grid")))
    await database.dispose()
    return codes


async def last_run(url: str) -> str:
    database = Database(url)
    async with database.reader() as session:
        run = await session.scalar(select(SyncRun).order_by(SyncRun.id.desc()).limit(1))
    await database.dispose()
    assert run is not None
    return (
        f"{run.status}: created {run.created}, updated {run.updated}, unchanged {run.unchanged}, "
        f"quarantined {run.quarantined}"
    )


async def counts(url: str) -> tuple[int, int]:
    database = Database(url)
    async with database.reader() as session:
        residents = await session.scalar(select(func.count()).select_from(Resident))
        audits = await session.scalar(select(func.count()).select_from(AuditRecord))
    await database.dispose()
    return int(residents or 0), int(audits or 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = args.db or f"sqlite+aiosqlite:///{work / 'bench.db'}"
        grid_codes = asyncio.run(prepare(url))
        dump = work / "dump.csv"
        write_dump(dump, args.rows, grid_codes)
        folder = work / "connectors"
        folder.mkdir()
        (folder / "bench-household.toml").write_text(DEFINITION.format(path=dump), encoding="utf-8")
        env = {
            **os.environ,
            "GRIDHUB_DATABASE_URL": url,
            "GRIDHUB_CONNECTORS_DIR": str(folder),
            "GRIDHUB_DATA_DIR": str(work / "data"),
        }
        sync = [sys.executable, "-m", "hub.cli", "sync", "run", "bench-household"]
        size_mb = dump.stat().st_size / 1e6
        print(f"{args.rows:,} rows, {size_mb:.1f} MB CSV, database {url.split(':')[0]}")

        read_s, read_rss, _ = child(
            [sys.executable, "-c", READ_ONLY, str(folder / "bench-household.toml")], env
        )
        first_s, first_rss, _ = child(sync, env)
        first_run = asyncio.run(last_run(url))
        residents, audits = asyncio.run(counts(url))
        again_s, again_rss, _ = child([*sync, "--full"], env)
        again_run = asyncio.run(last_run(url))
        residents_after, audits_after = asyncio.run(counts(url))
        incremental_s, _, _ = child(sync, env)

        def line(name: str, seconds: float, rss: int | None = None) -> str:
            rate = args.rows / seconds
            text = f"{name:<22} {seconds:7.2f} s  {rate:9,.0f} records/s  {seconds / read_s:5.1f}x read"
            if rss is not None:
                text += f"  peak RSS {rss / 2**20:6.1f} MiB"
            return text

        print(line("read + map only", read_s, read_rss))
        print(line("first import", first_s, first_rss) + f"  [{first_run}]")
        print(
            line("re-sync --full", again_s, again_rss)
            + f"  ({again_s / first_s:.2f}x first)  [{again_run}]"
        )
        print(f"{'incremental re-sync':<22} {incremental_s:7.2f} s  (unchanged file: nothing read)")
        wrote = (residents_after - residents, audits_after - audits)
        print(f"re-sync wrote {wrote[0]} residents and {wrote[1]} audit records")
        if wrote != (0, 0):
            raise SystemExit("a no-change re-sync wrote something")


if __name__ == "__main__":
    main()
