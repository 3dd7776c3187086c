"""A page of 100 residents x 10 fields: /graphql against a hand-written JSON endpoint serving the
same rows from the same database, in the same run. Prints medians and ratios; asserts nothing.

    python bench/bench_page.py                      # 10k residents, SQLite, in-process and HTTP
    python bench/bench_page.py --sizes 10000,1000000 --db postgresql://postgres@127.0.0.1/bench

In-process: both go through the full ASGI app, called directly (no client, no sockets). Over HTTP:
one uvicorn worker (uvloop + httptools) in a subprocess, 16 concurrent connections from an httpx
client in this process. Requests alternate between the two sides so machine noise hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plain_app import build

from hub.authz.identity import issue_token
from hub.config import Settings
from hub.demo.loader import load_demo
from hub.migrate import upgrade

QUERY = """query Page($after: String) {
  residents(first: 100, after: $after) {
    edges { node { id name gender birthDate idNumber phone address householdCode createdAt updatedAt } }
  }
}"""


def same_rows(graphql: dict, plain: dict) -> bool:
    return graphql["data"] == plain["data"]


async def asgi_call(
    app: Any,
    method: str,
    path: str,
    query: bytes = b"",
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """One request straight into the ASGI app: no client library, no sockets, so what is
    measured is the app's own work on both sides."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "headers": [
            (b"host", b"bench"),
            (b"accept", b"application/json"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    delivered = False
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


# GraphQL reads the page as public_security, the role that reads all ten fields in full, with a
# stated purpose: every page therefore also appends its audit record (bench_authz.py measures
# what authorisation costs on its own).
SECRET = "bench-secret-for-the-page-benchmark-only"
ROLE = "public_security"


def role_headers(settings: Settings) -> dict[str, str]:
    token = issue_token(settings, role=ROLE, subject="bench")
    return {"authorization": f"Bearer {token}", "x-gridhub-purpose": "benchmark"}


async def in_process(url: str, rounds: int) -> tuple[float, float]:
    settings = Settings(database_url=url, jwt_secret=SECRET)
    app = build(settings)
    graphql_body = orjson.dumps({"query": QUERY})
    headers = [(k.encode(), v.encode()) for k, v in role_headers(settings).items()]
    async with app.router.lifespan_context(app):

        async def graphql() -> bytes:
            return await asgi_call(app, "POST", "/graphql", body=graphql_body, headers=headers)

        async def plain() -> bytes:
            return await asgi_call(app, "GET", "/plain/residents", query=b"first=100")

        if not same_rows(orjson.loads(await graphql()), orjson.loads(await plain())):
            raise SystemExit("the two endpoints disagree: the comparison would be unfair")
        times: dict[str, list[float]] = {"graphql": [], "plain": []}
        for _ in range(20):  # warm-up
            await graphql()
            await plain()
        for _ in range(rounds):
            for name, call in (("graphql", graphql), ("plain", plain)):
                start = time.perf_counter()
                await call()
                times[name].append(time.perf_counter() - start)
    return statistics.median(times["graphql"]), statistics.median(times["plain"])


def start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRIDHUB_DATABASE_URL": url, "GRIDHUB_JWT_SECRET": SECRET}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "plain_app:factory",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--app-dir",
            str(Path(__file__).parent),
        ],
        env=env,
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz")
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("the benchmark server did not start")


async def over_http(port: int, seconds: float, connections: int = 16) -> tuple[float, float]:
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:

        async def rate(send) -> float:  # requests per second over `seconds`
            done = 0
            stop = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    (await send()).raise_for_status()
                    done += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return done / (time.perf_counter() - start)

        headers = role_headers(Settings(jwt_secret=SECRET))

        def graphql():
            return client.post("/graphql", json={"query": QUERY}, headers=headers)

        def plain():
            return client.get("/plain/residents?first=100")

        await rate(graphql)  # warm-up both
        await rate(plain)
        graphql_rates, plain_rates = [], []
        for _ in range(3):
            graphql_rates.append(await rate(graphql))
            plain_rates.append(await rate(plain))
        return statistics.median(graphql_rates), statistics.median(plain_rates)


async def prepare(url: str | None, residents: int, workdir: Path) -> str:
    if url is None:
        url = f"sqlite+aiosqlite:///{workdir / f'bench-{residents}.db'}"
    await upgrade(url)
    await load_demo(url, residents=residents, seed=1, reset=True, progress=False)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000", help="comma-separated resident counts")
    parser.add_argument(
        "--db", default=None, help="database URL (default: a fresh SQLite file per size)"
    )
    parser.add_argument("--rounds", type=int, default=300, help="in-process requests per side")
    parser.add_argument("--seconds", type=float, default=3.0, help="HTTP load per measurement")
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for size in [int(s) for s in args.sizes.split(",")]:
            url = asyncio.run(prepare(args.db, size, Path(tmp)))
            graphql, plain = asyncio.run(in_process(url, args.rounds))
            line = (
                f"residents={size:>8}  in-process median: graphql {graphql * 1000:.2f} ms, "
                f"plain {plain * 1000:.2f} ms, ratio {graphql / plain:.1f}x"
            )
            if not args.no_http:
                port = 18000 + os.getpid() % 1000
                server = start_server(url, port)
                try:
                    g_rate, p_rate = asyncio.run(over_http(port, args.seconds))
                finally:
                    server.terminate()
                    server.wait()
                line += f"  |  HTTP: graphql {g_rate:.0f} req/s, plain {p_rate:.0f} req/s, ratio {p_rate / g_rate:.1f}x"
            print(line, flush=True)
            results.append((size, graphql))
        if len(results) > 1:
            base = results[0][1]
            for size, graphql in results[1:]:
                print(
                    f"graphql page time at {size} vs {results[0][0]} residents: {graphql / base:.2f}x"
                )


if __name__ == "__main__":
    main()
