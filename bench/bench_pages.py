"""What a server-rendered page costs over the GraphQL it runs: each public page against the same
operations, with the same variables, posted to /graphql as the public role, in the same process
and run. Prints medians and ratios; asserts nothing.

    python bench/bench_pages.py                 # demo data (2,000 residents), SQLite
    python bench/bench_pages.py --db postgresql://postgres@127.0.0.1/bench

The baseline of a page is the sum of the medians of the operations it ran (recorded while the
page was first fetched), so the ratio is what the page adds: templates, Markdown, charts,
suppression, and running its operations in process instead of over HTTP. `/stats` caches its
figures for a minute, so its repeated fetches show the cached page; its first fetch is printed
on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import asgi_call

from hub.api.gateway import Gateway
from hub.app import create_app
from hub.config import Settings
from hub.demo.loader import load_demo
from hub.migrate import upgrade

PAGES = [
    "/",
    "/notices",
    "/notices?q=%E9%80%9A%E7%9F%A5",
    "/notices/{notice}",
    "/notices/feed.atom",
    "/stats",
    "/stats?community=C01",
    "/feedback/track?code={tracking}",
]


async def median_ms(call: Callable[[], Awaitable[Any]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run(url: str, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(database_url=url, data_dir=Path(data_dir))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await measure(app, rounds)


async def measure(app: Any, rounds: int) -> None:
    async def graphql(query: str) -> dict[str, Any]:
        body = orjson.dumps({"query": query})
        return orjson.loads(await asgi_call(app, "POST", "/graphql", body=body))  # type: ignore[no-any-return]

    notice = (await graphql("{ notices(first: 1) { nodes { id } } }"))["data"]["notices"]
    submitted = await graphql(
        'mutation { submitFeedback(input: {kind: SUGGESTION, content: "bench"}) { trackingCode } }'
    )
    values = {
        "notice": notice["nodes"][0]["id"],
        "tracking": submitted["data"]["submitFeedback"]["trackingCode"],
    }

    # Record the operations each page runs, by wrapping the gateway the pages share.
    recorded: list[tuple[str, Any, str | None]] = []
    original = Gateway.execute

    async def recording(self: Gateway, document: str, variables: Any = None, **kw: Any) -> Any:
        recorded.append((document, variables, kw.get("operation_name")))
        return await original(self, document, variables, **kw)

    print(f"{'page':<34} {'page ms':>8} {'graphql ms':>10} {'ratio':>6}  operations")
    for template in PAGES:
        path = template.format(**values)
        split = urlsplit(path)

        async def page(split: Any = split) -> bytes:
            return await asgi_call(app, "GET", split.path, query=split.query.encode())

        recorded.clear()
        Gateway.execute = recording  # type: ignore[method-assign]
        try:
            started = time.perf_counter()
            await page()
            first = (time.perf_counter() - started) * 1000
        finally:
            Gateway.execute = original  # type: ignore[method-assign]
        operations = list(recorded)

        async def baseline(
            operations: list[tuple[str, Any, str | None]] = operations, path: str = path
        ) -> None:
            for document, variables, name in operations:
                body = orjson.dumps(
                    {"query": document, "variables": variables or {}, "operationName": name}
                )
                answer = orjson.loads(await asgi_call(app, "POST", "/graphql", body=body))
                if answer.get("errors"):
                    raise SystemExit(f"{path}: {answer['errors'][0]}")

        for _ in range(5):  # warm-up: parser and validation caches, the stats cache
            await page()
            await baseline()
        page_ms = await median_ms(page, rounds)
        graphql_ms = await median_ms(baseline, rounds)
        # A page served from its cache ran no operation: there is nothing to compare with.
        ratio = f"{page_ms / graphql_ms:>5.2f}x" if operations else "     -"
        print(
            f"{path[:34]:<34} {page_ms:>8.2f} {graphql_ms:>10.2f} {ratio}  "
            f"{len(operations)} (first fetch {first:.1f} ms)"
        )


async def prepare(url: str | None, workdir: Path) -> str:
    if url is None:
        url = f"sqlite+aiosqlite:///{workdir / 'bench-pages.db'}"
    await upgrade(url)
    await load_demo(url, residents=2000, seed=7, reset=True, progress=False)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--rounds", type=int, default=100, help="fetches per side and page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = asyncio.run(prepare(args.db, Path(tmp)))
        asyncio.run(run(url, args.rounds))


if __name__ == "__main__":
    main()
