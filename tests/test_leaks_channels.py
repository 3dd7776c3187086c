"""No leaks on the channels beside /graphql: what Open311 shows the public, what webhooks send
their subscribers and what connector exports write, is held to the same oracle as every GraphQL answer (tests/markers.py:
Casbin's `enforce()` alone over planted markers). Open311 is checked under the default policy and
under variants of it that show, mask or scope out more.

Open311 reads run as the `public` role, so the viewpoint is the public's. Every body of every
read endpoint, JSON and XML, is searched for the markers the oracle says the public may not read
in full (a masked field's full value included); the request's own text counts as naming the
codes it names (the `tracked` scope). Where the oracle shows a marker in full, Open311 must show
it too (else the search would prove nothing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.authz import Access, store
from hub.authz.policy import EXPECTATIONS_FILE, MODEL_FILE, Policy, read_policy_file
from hub.authz.profile import Level
from hub.config import Settings
from hub.connectors import export, webhooks
from hub.connectors.definition import load_file
from hub.connectors.engine import run_connector
from hub.db import Database
from tests.connector_helpers import live_policy
from tests.live import in_process_server
from tests.markers import VIEWPOINTS, MarkerWorld, Oracle, Viewpoint, leaked
from tests.markers import seed_markers as seed
from tests.policy_clients import access_as, write_policy_dir
from tests.world import World

BASE = "/open311/v2"
PUBLIC = VIEWPOINTS["public"]
MISSING_CODE = "EV20240101ZZZZZZ"

# Variants of the public's event lines: each changes what the oracle (and Open311) must show.
SHOWS_DESCRIPTIONS = ["p, public, Event.description, read, allow"]
MASKS_DESCRIPTIONS = [
    "g2, Event.description, mask:name",
    "p, public, Event.description, read_masked, allow",
]
LISTS_EVENTS = [
    "p, public, Event, rows:all, allow",
    "p, public, Event.description, read, allow",
]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default policy, with the auditors' expectations about the public's events lifted
    (but that it never reads reporters): the variants here show, mask and scope them out, to
    prove the search would find a marker where one shows."""
    directory = write_policy_dir(tmp_path_factory.mktemp("channel-policies"))
    expected = directory / EXPECTATIONS_FILE
    kept = [
        line
        for line in expected.read_text(encoding="utf-8").splitlines()
        if not line.startswith("public, Event") or line.startswith("public, Event.reporter,")
    ]
    expected.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return directory


@pytest.fixture
async def marked(db: Database, world: World, app: Any) -> MarkerWorld:
    async with db.transaction() as session:
        seeded = await seed(session, world)
    await app.state.registry.sync(app.state.db)
    return seeded


@asynccontextmanager
async def public(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def install(
    app: Any, db: Database, policy_dir: Path, *, remove: str = "", add: Sequence[str] = ()
) -> Oracle:
    """A new policy version (lines starting with `remove` dropped, `add` added), installed in
    the app; returns the oracle of exactly that text."""
    async with db.transaction() as session:
        base = await store.current(session)
        assert base is not None
        lines = [
            line for line in base.text.splitlines() if not (remove and line.startswith(remove))
        ]
        text = "\n".join([*lines, *add]) + "\n"
        await store.save(session, base=base, text=text, actor="test", reason="channel leaks")
    await app.state.registry.sync(db)
    assert app.state.registry.version == base.version + 1, "the variant was not installed"
    return oracle_of(policy_dir, text)


def oracle_of(policy_dir: Path, text: str) -> Oracle:
    model = read_policy_file(policy_dir / MODEL_FILE)
    return Oracle(Policy.parse(model, text), MARKED[0])


# The marker world of the running test (oracle_of needs it; one test runs at a time per module).
MARKED: list[MarkerWorld] = []


def event_codes(marked: MarkerWorld) -> list[str]:
    return [row.code for key, row in marked.rows.items() if key.startswith("event") and row.code]


def open311_urls(marked: MarkerWorld) -> list[str]:
    """Every read Open311 offers, over the marker events, in both formats."""
    codes = event_codes(marked)
    urls: list[str] = []
    for fmt in ("json", "xml"):
        urls += [
            f"{BASE}/requests.{fmt}",
            f"{BASE}/requests.{fmt}?page_size=200",
            f"{BASE}/requests.{fmt}?service_request_id={','.join(codes)}",
            f"{BASE}/requests.{fmt}?status=open,closed",
        ]
        for code in codes:
            urls += [f"{BASE}/requests/{code}.{fmt}", f"{BASE}/tokens/{code}.{fmt}"]
    return urls


async def check_open311(app: Any, marked: MarkerWorld, oracle: Oracle) -> str:
    """Every Open311 body as the public, searched for what the oracle hides; returns them all."""
    bodies: list[str] = []
    async with public(app) as http:
        for url in open311_urls(marked):
            response = await http.get(url)
            assert response.status_code in (200, 400, 404), (url, response.text)
            body = response.text
            found = leaked(body, oracle.forbidden(PUBLIC, named=url))
            assert not found, f"{url} shows {found}:\n{body[:1000]}"
            bodies.append(body)
    return "\n".join(bodies)


def descriptions_shown(marked: MarkerWorld, oracle: Oracle, level: Level) -> list[str]:
    """The description markers the oracle shows the public at `level` when their code is named."""
    return [
        m.value
        for m in marked.markers
        if m.field == "Event.description"
        and oracle.shown(PUBLIC, m, named=m.row.code or "") is level
    ]


async def test_open311_shows_the_public_nothing_the_oracle_hides(
    app: Any, db: Database, marked: MarkerWorld, policy_dir: Path
) -> None:
    MARKED[:] = [marked]
    async with db.reader() as session:
        current = await store.current(session)
    assert current is not None
    await check_open311(app, marked, oracle_of(policy_dir, current.text))

    # Descriptions in full: the oracle shows them where the code is named, and so does Open311.
    oracle = await install(app, db, policy_dir, add=SHOWS_DESCRIPTIONS)
    shown = descriptions_shown(marked, oracle, Level.FULL)
    assert shown, "the variant must show descriptions, or the search proves nothing"
    bodies = await check_open311(app, marked, oracle)
    assert all(value in bodies for value in shown)

    # Masked: never in full (check_open311), and masked where they show.
    oracle = await install(app, db, policy_dir, remove=SHOWS_DESCRIPTIONS[0])
    oracle = await install(app, db, policy_dir, add=MASKS_DESCRIPTIONS)
    assert descriptions_shown(marked, oracle, Level.MASKED)
    bodies = await check_open311(app, marked, oracle)
    assert '"description":"M' in bodies.replace(" ", "")

    # Listed (rows:all): every event, each description in full, in the plain listing too.
    oracle = await install(app, db, policy_dir, remove="p, public, Event")
    oracle = await install(app, db, policy_dir, add=LISTS_EVENTS)
    bodies = await check_open311(app, marked, oracle)
    assert all(value in bodies for value in descriptions_shown(marked, oracle, Level.FULL))

    # No event rows at all: nothing shows, and no field of them.
    oracle = await install(app, db, policy_dir, remove="p, public, Event")
    assert not descriptions_shown(marked, oracle, Level.FULL)
    await check_open311(app, marked, oracle)


async def test_out_of_scope_equals_missing_on_open311(
    app: Any, db: Database, marked: MarkerWorld, policy_dir: Path
) -> None:
    """An event the public may not see answers exactly as one that does not exist, on every
    read and in both formats."""
    MARKED[:] = [marked]
    await install(app, db, policy_dir, remove="p, public, Event, rows:")
    (code, *_) = event_codes(marked)
    async with public(app) as http:
        for fmt in ("json", "xml"):
            for template in (
                "/requests/{}.{}",
                "/tokens/{}.{}",
                "/requests.{1}?service_request_id={0}",
            ):
                real = await http.get(BASE + template.format(code, fmt))
                missing = await http.get(BASE + template.format(MISSING_CODE, fmt))
                assert (real.status_code, real.content) == (
                    missing.status_code,
                    missing.content,
                ), template


async def test_bad_parameters_are_400_where_the_public_sees_no_event(
    app: Any, db: Database, marked: MarkerWorld, policy_dir: Path
) -> None:
    """With no event of the public's to list, a bad parameter is still the client's error."""
    MARKED[:] = [marked]
    await install(app, db, policy_dir, remove="p, public, Event")
    async with public(app) as http:
        for params in ({"page": "0"}, {"status": "pending"}, {"start_date": "yesterday"}):
            response = await http.get(f"{BASE}/requests.json", params=params)
            assert response.status_code == 400, (params, response.text)
            assert response.json()[0]["code"] == 400
        assert (await http.get(f"{BASE}/requests.json")).json() == []


# --- webhooks ----------------------------------------------------------------------------------

# Who a webhook may act as: every viewpoint of the leak suite, and the departments' connectors.
SUBSCRIBERS: dict[str, Viewpoint] = {
    **VIEWPOINTS,
    "connector:public_security": Viewpoint(
        "connector:public_security", department="public_security"
    ),
    "connector:hotline": Viewpoint("connector:hotline"),
}
SECRET = b"webhook-secret-for-channel-leaks"


def subscriber_access(policy_dir: Path, marked: MarkerWorld, view: Viewpoint) -> Access:
    """The Access deliveries act with, as hub.connectors.webhooks.subscriber_viewer builds it."""
    world = marked.world
    department = world.departments[view.department] if view.department else None
    return access_as(
        view.role,
        policy_dir,
        department_code=view.department,
        department_id=department.id if department else None,
        grid_codes=view.grids,
        grid_paths=tuple(marked.grid_paths[code] for code in view.grids),
    )


@pytest.fixture
async def hook() -> AsyncIterator[tuple[list[bytes], str]]:
    bodies: list[bytes] = []

    async def endpoint(request: Request) -> Response:
        bodies.append(await request.body())
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/hook", endpoint, methods=["POST"])])
    async with in_process_server(receiver) as address:
        yield bodies, f"http://{address}/hook"


async def test_webhook_bodies_show_no_subscriber_what_the_oracle_hides(
    db: Database, world: World, policy_dir: Path, hook: tuple[list[bytes], str]
) -> None:
    async with db.transaction() as session:
        marked = await seed(session, world)
    oracle = Oracle(Policy.from_directory(policy_dir), marked)
    bodies, url = hook
    seen_in_full: set[str] = set()
    async with httpx.AsyncClient() as client:
        for name, view in SUBSCRIBERS.items():
            bodies.clear()
            subscription = webhooks.Subscription(
                name=f"leaks-{name}",
                url=url,
                secret=SECRET,
                subject=view.role,
                department=view.department,
                backoff_base_seconds=0.0,
            )
            access = subscriber_access(policy_dir, marked, view)
            await webhooks.run_once(db, subscription=subscription, access=access, client=client)
            text = b"\n".join(bodies).decode("utf-8")
            found = leaked(text, oracle.forbidden(view))
            assert not found, f"a webhook as {name} sends {found}:\n{text[:1000]}"
            seen_in_full |= {value for value in oracle.visible(view) if value in text}
    # The search can find markers: some subscriber is sent the titles the oracle shows it.
    assert any(value.startswith("MARKER-TITLE-") for value in seen_in_full), seen_in_full


# --- connector exports -------------------------------------------------------------------------

# Exports act as connector subjects only; each is checked for the columns it may read.
EXPORTERS = [
    "connector:household",
    "connector:health",
    "connector:hotline",
    "connector:public_security",
]


def export_definition(directory: Path, role: str, columns: Sequence[str]) -> Path:
    """A resident export as `role`, of `columns` (GridHub field names, each its own header)."""
    name = "leaks_" + role.replace(":", "_")
    spec = directory / f"{name}.toml"
    mapping = "\n".join(f'{column} = "{column}"' for column in columns)
    spec.write_text(
        f'name = "{name}"\nkind = "file"\ndirection = "push"\nentity = "resident"\n'
        f'subject = "{role}"\npage_size = 5\n\n[source]\npath = "{directory / name}.csv"\n\n'
        f"[mapping]\n{mapping}\n",
        encoding="utf-8",
    )
    return spec


async def test_exports_write_no_connector_what_the_oracle_hides(
    db: Database, world: World, settings: Settings, policy_dir: Path, tmp_path: Path
) -> None:
    async with db.transaction() as session:
        marked = await seed(session, world)
    oracle = Oracle(Policy.from_directory(policy_dir), marked)
    registry = await live_policy(settings, db)
    seen_in_full: set[str] = set()
    for role in EXPORTERS:
        view = VIEWPOINTS.get(role, Viewpoint(role))
        # Every column the role reads at all: an export refuses a hidden one before reading.
        columns = [
            column
            for column, obj in export.READ_OBJECTS.items()
            if oracle.level(role, obj) is not Level.HIDDEN
            and (column != "gridCode" or oracle.level(role, "Grid.code") is not Level.HIDDEN)
        ]
        if not columns:
            continue
        spec = export_definition(tmp_path, role, columns)
        run = await run_connector(db, load_file(spec), registry)
        assert run.status == "ok", (role, run.error)
        text = (tmp_path / f"{spec.stem}.csv").read_text(encoding="utf-8-sig")
        found = leaked(text, oracle.forbidden(view))
        assert not found, f"an export as {role} writes {found}:\n{text[:1000]}"
        seen_in_full |= {value for value in oracle.visible(view) if value in text}
    # The search can find markers: exports carry the ones the oracle shows in full.
    assert seen_in_full
