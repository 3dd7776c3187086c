"""A real GridHub server in a subprocess on 127.0.0.1, for tests that need real HTTP or
WebSockets (protocol audits, subscriptions across workers and processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import IO, Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None = None

    def log_text(self) -> str:
        """What the server has written to stdout and stderr so far."""
        if self.log is None:
            return ""
        # pread, not seek + read: the server writes through the same file offset.
        fd = self.log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    @property
    def graphql_url(self) -> str:
        return self.url + "/graphql"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"


@contextmanager
def live_server(
    database_url: str,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[LiveServer]:
    """Run `gridhub serve` against `database_url` until the block ends."""
    port = free_port()
    environment = {**os.environ, "GRIDHUB_DATABASE_URL": database_url, **(env or {})}
    command = [
        sys.executable,
        "-m",
        "hub.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    # The server's log goes to a file, not a pipe: nobody drains a pipe while the test runs,
    # and a chatty server would block once the pipe's buffer filled.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed after the server stops
    process = subprocess.Popen(
        command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"gridhub serve exited early:\n{output}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gridhub serve did not become healthy in time")
            time.sleep(0.1)
        yield LiveServer(url=url, process=process, log=log)
    finally:
        # The whole process group: with --workers, uvicorn's children go too.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@asynccontextmanager
async def in_process_server(app: Any) -> AsyncIterator[str]:
    """uvicorn serving `app` (its lifespan already running) in this event loop, so a test can
    look inside the app while real sockets talk to it. Yields "127.0.0.1:PORT"."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
