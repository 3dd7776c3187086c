"""What the benchmarks share: demo data, calls straight into the ASGI app, a uvicorn worker in
a subprocess, and a request rate over HTTP. Nothing here asserts; it measures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from hub.demo.loader import load_demo
from hub.migrate import upgrade

BENCH_DIR = Path(__file__).resolve().parent


async def prepare(url: str | None, residents: int, workdir: Path) -> str:
    """A database with the demo data for `residents` residents (a fresh SQLite file by default)."""
    if url is None:
        url = f"sqlite+aiosqlite:///{workdir / f'bench-{residents}.db'}"
    await upgrade(url)
    await load_demo(url, residents=residents, seed=1, reset=True, progress=False)
    return url


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


def start_server(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One uvicorn worker (uvloop + httptools) on 127.0.0.1 serving `factory` (module:function
    in bench/), with `env` added to the environment."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            factory,
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
            str(BENCH_DIR),
        ],
        env={**os.environ, **env},
    )
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz")
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("the benchmark server did not start")


async def rate(
    send: Callable[[], Awaitable[httpx.Response]], seconds: float, connections: int
) -> float:
    """Requests per second that `connections` concurrent clients get through in `seconds`."""
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
