"""A real GridHub server in a subprocess on 127.0.0.1, for tests that need real HTTP or
WebSockets (protocol audits, subscriptions across workers and processes).

The server runs the tests' policy (the `policy_dir` fixture: the default policy plus the test-only
`superuser`) and verifies tokens with TEST_SECRET; `LiveServer.headers` acts as superuser with a
purpose, as the `client` fixture does in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn

from hub.config import Settings
from tests.policy_clients import SUPERUSER, TEST_SECRET, credentials


def free_port() -> int:
    """A port nothing listens on now. Under pytest-xdist each worker takes only its own share of
    the ports: a server another worker starts meanwhile can never take this one, nor answer a
    health check meant for this worker's server."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    port = 0
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        # Not the port's parity: Linux hands bind() mostly odd ports.
        if count <= 1 or (port >> 1) % count == index:
            return port
    return port


def server_settings(database_url: str, policy_dir: Path, data_dir: Path) -> Settings:
    """What a test server runs with: the tests' policy and signing secret."""
    return Settings(
        database_url=database_url,
        policy_dir=policy_dir,
        data_dir=data_dir,
        jwt_secret=TEST_SECRET,
    )


def server_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `gridhub serve` run with `settings`' policy and secret."""
    assert settings.jwt_secret is not None
    return {
        "GRIDHUB_DATABASE_URL": settings.database_url,
        "GRIDHUB_POLICY_DIR": str(settings.policy_dir),
        "GRIDHUB_JWT_SECRET": settings.jwt_secret,
        "GRIDHUB_DATA_DIR": str(settings.data_dir),
    }


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None = None
    # What the server runs with (to issue tokens for other roles), and superuser's headers.
    settings: Settings | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

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
    policy_dir: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[LiveServer]:
    """Run `gridhub serve` against `database_url`, under the policy in `policy_dir`, until the
    block ends."""
    with tempfile.TemporaryDirectory(prefix="gridhub-data-") as data_dir:
        settings = server_settings(database_url, policy_dir, Path(data_dir))
        with _serve(settings, workers=workers, env=env, startup_timeout=startup_timeout) as server:
            yield server


@contextmanager
def _serve(
    settings: Settings,
    *,
    workers: int,
    env: Mapping[str, str] | None,
    startup_timeout: float,
) -> Iterator[LiveServer]:
    port = free_port()
    environment = {**os.environ, **server_env(settings), **(env or {})}
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
        yield LiveServer(
            url=url,
            process=process,
            log=log,
            settings=settings,
            headers=credentials(settings, SUPERUSER),
        )
    finally:
        # The whole process group: with --workers, uvicorn's children go too.
        # A server that already exited has no group left to signal: its own error stands.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
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
