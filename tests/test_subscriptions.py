"""eventChanged over graphql-transport-ws, against real servers (tests/live.py).

The protocol has no "subscribed" acknowledgement, so each test first makes warm-up changes until
every subscription has shown one (`until_live`); warm-up events are titled "warm-up" and left out
of what is counted afterwards. "Exactly once" is checked by collecting every change a subscriber
gets, waiting a little longer for strays, and comparing with what was made.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from hub.config import Settings
from hub.db import Database
from hub.grids import service as grids
from tests.live import LiveServer, in_process_server, live_server
from tests.policy_clients import SUPERUSER, credentials
from tests.services import REDIS_URL, need_postgres, need_redis
from tests.world import World

PROTOCOL = Subprotocol("graphql-transport-ws")
WARM_UP = "warm-up"
# How long to keep listening after the expected changes, for duplicates and strays.
GRACE_SECONDS = 0.4

EVENT_CHANGED = """
subscription($inGrid: String, $departmentCode: String) {
  eventChanged(inGrid: $inGrid, departmentCode: $departmentCode) {
    action version status
    event { id title status version grid { code } department { code } }
  }
}
"""
REPORT = 'mutation($title: String!, $grid: String!) { reportEvent(input: {category: SANITATION, title: $title, gridCode: $grid, reporterSystem: "test"}) { id version } }'
ACCEPT = "mutation($id: ID!) { acceptEvent(id: $id) { version } }"
DISPATCH = "mutation($id: ID!, $department: String!) { dispatchEvent(id: $id, departmentCode: $department) { version } }"
START = "mutation($id: ID!) { startEvent(id: $id) { version } }"
RESOLVE = "mutation($id: ID!) { resolveEvent(id: $id) { version } }"

# The workers test tells worker processes apart through /proc (Linux).
HAVE_PROC = os.path.exists("/proc/net/tcp")

postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


# --- a small graphql-transport-ws client ----------------------------------------------------


class Operation:
    """One operation on a connection: its messages arrive on its own queue."""

    def __init__(self, client: WSClient, op_id: str) -> None:
        self.client = client
        self.id = op_id
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def message(self, within: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), within)

    async def change(self, within: float = 10.0) -> dict[str, Any]:
        """The next eventChanged that is not a warm-up."""
        while True:
            message = await self.message(within)
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            change: dict[str, Any] = message["payload"]["data"]["eventChanged"]
            if change["event"]["title"] != WARM_UP:
                return change

    async def changes(self, count: int) -> list[dict[str, Any]]:
        """Exactly `count` changes: then nothing else arrives within the grace period."""
        received = [await self.change() for _ in range(count)]
        with pytest.raises(TimeoutError):
            extra = await self.change(within=GRACE_SECONDS)
            pytest.fail(f"unexpected change after the expected {count}: {extra}")
        return received

    def saw_warm_up(self) -> bool:
        """Whether a warm-up change has arrived (consumes what is queued; there is nothing else
        to consume while warming up)."""
        seen = False
        while not self.messages.empty():
            message = self.messages.get_nowait()
            assert message["type"] == "next", message
            change = message["payload"]["data"]["eventChanged"]
            assert change["event"]["title"] == WARM_UP, change
            seen = True
        return seen


class WSClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.local_port: int = ws.local_address[1]
        self._ids = itertools.count(1)
        self._operations: dict[str, Operation] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, headers: Mapping[str, str]) -> AsyncIterator[WSClient]:
        """A connection authenticated by `headers` on its upgrade request."""
        async with connect(
            url, subprotocols=[PROTOCOL], additional_headers=headers, open_timeout=10
        ) as ws:
            assert ws.subprotocol == PROTOCOL
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            raw = await asyncio.wait_for(ws.recv(), 10)
            # graphql-transport-ws speaks in text frames: a browser cannot read binary ones.
            assert isinstance(raw, str), raw
            ack = json.loads(raw)
            assert ack["type"] == "connection_ack", ack
            client = cls(ws)
            try:
                yield client
            finally:
                client._reader.cancel()
                with suppress(asyncio.CancelledError):
                    await client._reader

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif "id" in message:
                    self._operations[message["id"]].messages.put_nowait(message)
        except ConnectionClosed:
            return

    async def start(self, query: str, variables: dict[str, Any] | None = None) -> Operation:
        operation = Operation(self, str(next(self._ids)))
        self._operations[operation.id] = operation
        payload = {"query": query, "variables": variables or {}}
        await self.ws.send(
            json.dumps({"id": operation.id, "type": "subscribe", "payload": payload})
        )
        return operation

    async def subscribe(self, **variables: str) -> Operation:
        return await self.start(EVENT_CHANGED, variables)

    async def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """A query or mutation over this connection: one `next`, then `complete`."""
        operation = await self.start(query, variables)
        result = await operation.message()
        assert result["type"] == "next", result
        assert "errors" not in result["payload"], result
        assert (await operation.message())["type"] == "complete"
        return result["payload"]["data"]  # type: ignore[no-any-return]

    async def complete(self, operation: Operation) -> None:
        await self.ws.send(json.dumps({"id": operation.id, "type": "complete"}))


# --- making changes --------------------------------------------------------------------------

Execute = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def over_http(http: httpx.AsyncClient) -> Execute:
    async def execute(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
        assert "errors" not in body, body["errors"]
        return body["data"]  # type: ignore[no-any-return]

    return execute


class Events:
    """Makes changes and remembers each one as (event id, action, version), in order."""

    def __init__(self, execute: Execute) -> None:
        self.execute = execute
        self.made: list[tuple[str, str, int]] = []

    async def report(self, grid: str, title: str = "垃圾堆放") -> str:
        data = await self.execute(REPORT, {"title": title, "grid": grid})
        event = data["reportEvent"]
        self._remember(title, event["id"], "report", event["version"])
        return event["id"]  # type: ignore[no-any-return]

    async def act(self, query: str, event_id: str, title: str = "", **variables: str) -> None:
        data = await self.execute(query, {"id": event_id, **variables})
        action = next(iter(data))
        version = data[action]["version"]
        self._remember(title, event_id, action.removesuffix("Event"), version)

    def _remember(self, title: str, event_id: str, action: str, version: int) -> None:
        if title != WARM_UP:
            self.made.append((event_id, action, version))

    async def warm_up(self, dispatch_to: str | None = None, grid: str = "G1") -> None:
        event_id = await self.report(grid, WARM_UP)
        if dispatch_to:
            await self.act(ACCEPT, event_id, WARM_UP)
            await self.act(DISPATCH, event_id, WARM_UP, department=dispatch_to)


async def until_live(
    operations: list[Operation], poke: Callable[[], Awaitable[None]], within: float = 15.0
) -> None:
    """Make warm-up changes until every subscription has received one."""
    pending = list(operations)
    deadline = time.monotonic() + within
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} subscriptions never went live"
        await poke()
        await asyncio.sleep(0.15)
        pending = [operation for operation in pending if not operation.saw_warm_up()]


def seen(changes: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(c["event"]["id"], c["action"], c["version"]) for c in changes]


# --- one process ------------------------------------------------------------------------------


async def test_filters_order_and_content(database_url: str, policy_dir: Path, world: World) -> None:
    with live_server(database_url, policy_dir) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, headers=server.headers) as http,
            WSClient.connect(server.ws_url, server.headers) as ws,
        ):
            everything = await ws.subscribe()
            street = await ws.subscribe(inGrid="S1")
            health = await ws.subscribe(departmentCode="health")
            events = Events(over_http(http))
            await until_live([everything, street, health], lambda: events.warm_up("health"))

            ids = {grid: await events.report(grid) for grid in ["G1", "G2", "G3", "G4"]}
            # G4's event goes elsewhere first: what the filtered feeds must not see comes before
            # what they must, so the grace period after their last change covers it.
            await events.act(ACCEPT, ids["G4"])
            await events.act(DISPATCH, ids["G4"], department="civil_affairs")
            for query, extra in [
                (ACCEPT, {}),
                (DISPATCH, {"department": "health"}),
                (START, {}),
                (RESOLVE, {}),
            ]:
                await events.act(query, ids["G1"], **extra)

            all_changes, street_changes, health_changes = await asyncio.gather(
                everything.changes(len(events.made)), street.changes(7), health.changes(3)
            )
            assert seen(all_changes) == events.made
            in_street = {ids["G1"], ids["G2"], ids["G3"]}
            assert seen(street_changes) == [m for m in events.made if m[0] in in_street]
            assert {c["event"]["grid"]["code"] for c in street_changes} == {"G1", "G2", "G3"}
            assert [(c["action"], c["version"]) for c in health_changes] == [
                ("dispatch", 3),
                ("start", 4),
                ("resolve", 5),
            ]
            assert {c["event"]["department"]["code"] for c in health_changes} == {"health"}

            g1 = [c for c in all_changes if c["event"]["id"] == ids["G1"]]
            assert [c["version"] for c in g1] == [1, 2, 3, 4, 5]
            assert [c["status"] for c in g1] == [
                "REPORTED",
                "ACCEPTED",
                "DISPATCHED",
                "IN_PROGRESS",
                "RESOLVED",
            ]
            # `event` is re-read when delivered; its version is at least the change's.
            assert all(c["event"]["version"] >= c["version"] for c in all_changes)


async def test_a_redispatch_reaches_both_departments(
    database_url: str, policy_dir: Path, world: World
) -> None:
    """The department an event is taken from hears of the re-dispatch (and then no more); the
    department it goes to hears from the re-dispatch onward."""
    with live_server(database_url, policy_dir) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, headers=server.headers) as http,
            WSClient.connect(server.ws_url, server.headers) as ws,
        ):
            health = await ws.subscribe(departmentCode="health")
            civil = await ws.subscribe(departmentCode="civil_affairs")
            events = Events(over_http(http))
            await until_live([health], lambda: events.warm_up("health"))
            await until_live([civil], lambda: events.warm_up("civil_affairs"))

            event_id = await events.report("G1")
            await events.act(ACCEPT, event_id)
            await events.act(DISPATCH, event_id, department="health")
            await events.act(DISPATCH, event_id, department="civil_affairs")
            await events.act(START, event_id)
            assert [action for _, action, _ in events.made] == [
                "report",
                "accept",
                "dispatch",
                "dispatch",
                "start",
            ]

            health_changes, civil_changes = await asyncio.gather(
                health.changes(2), civil.changes(2)
            )
            assert seen(health_changes) == [(event_id, "dispatch", 3), (event_id, "dispatch", 4)]
            assert seen(civil_changes) == [(event_id, "dispatch", 4), (event_id, "start", 5)]
            # The event is re-read on delivery, after the re-dispatch committed: health's last
            # sight of it shows where it went.
            assert health_changes[-1]["event"]["department"] == {"code": "civil_affairs"}


async def test_errors_arrive_as_protocol_errors(
    database_url: str, policy_dir: Path, world: World
) -> None:
    with live_server(database_url, policy_dir) as server:
        async with WSClient.connect(server.ws_url, server.headers) as ws:
            cases = [
                ({"inGrid": "NOPE"}, "BAD_USER_INPUT", "inGrid"),
                ({"departmentCode": "nope"}, "BAD_USER_INPUT", "departmentCode"),
            ]
            for variables, code, field in cases:
                operation = await ws.subscribe(**variables)
                message = await operation.message()
                assert message["type"] == "error", message
                (error,) = message["payload"]
                assert error["extensions"]["code"] == code
                assert error["extensions"]["field"] == field
            invalid = await ws.start("subscription { eventChanged { nope } }")
            message = await invalid.message()
            assert message["type"] == "error"
            assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
            # The connection survives its failed operations.
            async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as http:
                working = await ws.subscribe(inGrid="C1")
                events = Events(over_http(http))
                await until_live([working], events.warm_up)
                event_id = await events.report("G2")
                assert seen([await working.change()]) == [(event_id, "report", 1)]


# --- several processes ------------------------------------------------------------------------


async def _across_two_servers(a: LiveServer, b: LiveServer) -> None:
    """Subscribe on both servers; changes made on either reach both, each exactly once."""
    async with AsyncExitStack() as stack:
        http_a = await stack.enter_async_context(
            httpx.AsyncClient(base_url=a.url, headers=a.headers)
        )
        http_b = await stack.enter_async_context(
            httpx.AsyncClient(base_url=b.url, headers=b.headers)
        )
        ws_a = await stack.enter_async_context(WSClient.connect(a.ws_url, a.headers))
        ws_b = await stack.enter_async_context(WSClient.connect(b.ws_url, b.headers))
        on_a, on_b = await ws_a.subscribe(), await ws_b.subscribe()
        via_a, via_b = Events(over_http(http_a)), Events(over_http(http_b))
        await until_live([on_a, on_b], via_a.warm_up)

        first = await via_b.report("G1")
        await via_a.act(ACCEPT, first)
        second = await via_a.report("G3")
        await via_b.act(ACCEPT, second)
        made = via_a.made + via_b.made
        for received in await asyncio.gather(on_a.changes(len(made)), on_b.changes(len(made))):
            assert Counter(seen(received)) == Counter(made)
            # Each event's changes were made one after the other, on different servers: they
            # arrive in that order everywhere.
            for event_id in (first, second):
                assert [v for e, _, v in seen(received) if e == event_id] == [1, 2]


@postgres_only
@pytest.mark.postgres
async def test_two_servers_share_postgres(
    database_url: str, policy_dir: Path, world: World
) -> None:
    need_postgres()
    with live_server(database_url, policy_dir) as a, live_server(database_url, policy_dir) as b:
        await _across_two_servers(a, b)


@pytest.mark.redis
async def test_two_servers_share_redis(database_url: str, policy_dir: Path, world: World) -> None:
    need_redis()
    env = {"GRIDHUB_BROKER_URL": REDIS_URL}
    with (
        live_server(database_url, policy_dir, env=env) as a,
        live_server(database_url, policy_dir, env=env) as b,
    ):
        await _across_two_servers(a, b)


# --- several workers --------------------------------------------------------------------------


class Workers:
    """Which worker process of a live server holds the server end of a TCP connection: found in
    /proc (the socket's inode in /proc/net/tcp, then the process whose fd points at it), so the
    server needs no debugging hooks."""

    def __init__(self, server: LiveServer) -> None:
        self.group = server.process.pid  # live_server starts a new session: pgid == pid
        self.port = int(server.url.rsplit(":", 1)[1])

    def of(self, client_port: int) -> int:
        # /proc/net/tcp is not read atomically: under socket churn a line can be missed.
        for _ in range(20):
            try:
                return self._holder(client_port)
            except LookupError:
                time.sleep(0.01)
        return self._holder(client_port)

    def _holder(self, client_port: int) -> int:
        inode = self._inode(client_port)
        target = f"socket:[{inode}]"
        for pid in self._pids():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except (FileNotFoundError, PermissionError, ProcessLookupError):
                    continue
        raise LookupError(f"no worker holds the connection from port {client_port}")

    def _inode(self, client_port: int) -> int:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    local = int(fields[1].rsplit(":", 1)[1], 16)
                    remote = int(fields[2].rsplit(":", 1)[1], 16)
                    if local == self.port and remote == client_port and int(fields[9]):
                        return int(fields[9])
        raise LookupError(f"no server socket for the connection from port {client_port}")

    def _pids(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            # A process may exit between listing and reading (ProcessLookupError, ESRCH).
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
            if int(fields[2]) == self.group:  # pgrp
                pids.append(int(entry))
        return pids


@postgres_only
@pytest.mark.postgres
@pytest.mark.slow
async def test_every_worker_delivers_every_change(
    database_url: str, policy_dir: Path, world: World
) -> None:
    need_postgres()
    if not HAVE_PROC:
        pytest.skip("telling workers apart reads /proc (Linux)")
    with live_server(database_url, policy_dir, workers=2) as server:
        workers = Workers(server)
        async with AsyncExitStack() as stack:
            # Connections land on whichever worker accepts first, and the kernel may favour
            # one: open them until each worker holds two subscriptions and two mutation
            # connections (at least one of each after 40 tries); close the surplus.
            subscribers: dict[int, list[Operation]] = {}
            mutators: dict[int, list[WSClient]] = {}

            def enough(least: int) -> bool:
                groups = [*subscribers.values(), *mutators.values()]
                return len(groups) == 4 and all(len(group) >= least for group in groups)

            for attempt in range(300):
                if enough(2) or (attempt >= 40 and enough(1)):
                    break
                connection = AsyncExitStack()
                client = await connection.enter_async_context(
                    WSClient.connect(server.ws_url, server.headers)
                )
                worker = workers.of(client.local_port)
                if len(subscribers.setdefault(worker, [])) < 2:
                    subscribers[worker].append(await client.subscribe())
                elif len(mutators.setdefault(worker, [])) < 2:
                    mutators[worker].append(client)
                else:
                    await connection.aclose()
                    continue
                stack.push_async_callback(connection.aclose)
            assert enough(1), f"connections did not spread over two workers: {subscribers}"
            feeds = [feed for group in subscribers.values() for feed in group]
            first_mutator = next(iter(mutators.values()))[0]
            await until_live(feeds, Events(first_mutator.execute).warm_up)

            # Many mutations, from every mutation connection at once.
            async def mutate(client: WSClient) -> list[tuple[str, str, int]]:
                events = Events(client.execute)
                for grid in ("G1", "G3", "G4", "G2"):
                    await events.act(ACCEPT, await events.report(grid))
                return events.made

            made_on: dict[int, list[tuple[str, str, int]]] = {}
            pairs = [(w, client) for w, clients in mutators.items() for client in clients]
            for (worker, _), made_here in zip(
                pairs, await asyncio.gather(*(mutate(client) for _, client in pairs)), strict=True
            ):
                made_on.setdefault(worker, []).extend(made_here)
            made = [change for changes in made_on.values() for change in changes]
            assert len(made) >= 16

            # Each worker's subscribers get the other worker's changes as well as their own.
            assert all(made_on.get(worker) for worker in subscribers)
            feeds_received = await asyncio.gather(*(feed.changes(len(made)) for feed in feeds))
            for received in feeds_received:
                assert Counter(seen(received)) == Counter(made)


# --- no leaks ---------------------------------------------------------------------------------


def local_subscribers(broker: Any) -> int:
    return int(getattr(broker, "local", broker).subscriber_count)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_disconnects_leave_no_subscribers_or_tasks(
    app: Any, world: World, settings: Settings
) -> None:
    broker = app.state.broker
    headers = credentials(settings, SUPERUSER)
    async with in_process_server(app) as address:
        baseline = len(asyncio.all_tasks())
        async with httpx.AsyncClient(base_url=f"http://{address}", headers=headers) as http:
            events = Events(over_http(http))
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(
                        WSClient.connect(f"ws://{address}/graphql", headers)
                    )
                    for _ in range(4)
                ]
                feeds = [await client.subscribe() for client in clients]
                feeds.append(await clients[0].subscribe(inGrid="S1"))
                await until_live(feeds, events.warm_up)
                assert local_subscribers(broker) == 5

                # The protocol's "complete" ends one subscription and keeps the connection.
                await clients[0].complete(feeds[0])
                await eventually(lambda: local_subscribers(broker) == 4)
                # A client that vanishes without a close frame.
                clients[1].ws.transport.abort()
                await eventually(lambda: local_subscribers(broker) == 3)
                # Changes still reach the others.
                event_id = await events.report("G2")
                assert seen([await feeds[2].change()]) == [(event_id, "report", 1)]
            # The rest closed normally.
            await eventually(lambda: local_subscribers(broker) == 0)
        await eventually(lambda: len(asyncio.all_tasks()) <= baseline)


async def test_grid_created_after_subscribing_joins_its_subtree(
    app: Any, world: World, db: Database, settings: Settings
) -> None:
    headers = credentials(settings, SUPERUSER)
    async with (
        in_process_server(app) as address,
        httpx.AsyncClient(base_url=f"http://{address}", headers=headers) as http,
        WSClient.connect(f"ws://{address}/graphql", headers) as ws,
    ):
        events = Events(over_http(http))
        street, other_street = await ws.subscribe(inGrid="S1"), await ws.subscribe(inGrid="S2")
        await until_live([street], events.warm_up)
        await until_live([other_street], lambda: events.warm_up(grid="G4"))
        async with db.transaction() as session:
            parent = await grids.resolve_code(session, code="C2")
            await grids.create(session, code="G5", name="第5网格", level="grid", parent=parent)
        in_new_grid = await events.report("G5")
        elsewhere = await events.report("G4")
        got, got_elsewhere = await asyncio.gather(street.changes(1), other_street.changes(1))
        assert seen(got) == [(in_new_grid, "report", 1)]
        assert seen(got_elsewhere) == [(elsewhere, "report", 1)]
