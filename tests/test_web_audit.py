"""The auditors' console at /audit: who may open it, every page in both languages, the matrix
against the CLI's cell by cell, a policy change seen in the history and the SDL diff, the access
log's filters and paging, the emergency grants, and a tampered log shown as broken."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from hub.api.ids import to_global_id
from hub.authz import audit, store
from hub.commands.policy import policy
from hub.config import Settings
from hub.db import Database
from hub.web import audit as audit_pages
from hub.web.audit_policy import definitions
from hub.web.i18n import Catalogue
from tests.policy_clients import credentials, token
from tests.world import World

PAGES = (
    "/audit",
    "/audit/matrix",
    "/audit/schema",
    "/audit/schema?role=auditor",
    "/audit/policies",
    "/audit/log",
    "/audit/grants",
)
WORDS = Catalogue.load()
# Auditors may read published notices' titles: a change that adds to the auditor's schema.
ADDED_LINES = ["p, auditor, Notice, rows:published, allow", "p, auditor, Notice.title, read, allow"]
CHANGE = """
  mutation($add: [String!]!, $reason: String!) {
    changePolicy(input: { add: $add, remove: [], reason: $reason }) { version }
  }"""


# --- a browser signed in as some role ------------------------------------------------------


@pytest.fixture
async def browser(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    # https: the session cookie is Secure, and a cookie jar sends it over https only.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def sign_in(http: httpx.AsyncClient, credential: str) -> None:
    page = await http.get("/signin")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    response = await http.post(
        "/signin", data={"csrf_token": found.group(1), "credential": credential}
    )
    assert response.status_code == 303, response.text


@pytest.fixture
async def auditor(browser: httpx.AsyncClient, settings: Settings) -> httpx.AsyncClient:
    await sign_in(browser, token(settings, "auditor", subject="auditor-1"))
    return browser


async def graphql(app: Any, headers: dict[str, str], query: str, **variables: Any) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        response = await http.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def with_language(path: str, language: str) -> str:
    # Not params=: httpx would replace the path's own query string with them.
    return f"{path}{'&' if '?' in path else '?'}lang={language}"


def attributes(html: str, element_id: str, tag: str) -> list[dict[str, str]]:
    """The data-* attributes and text of every `tag` inside the element `element_id`."""
    start = html.index(f'id="{element_id}"')
    end = html.index("</table>", start) if "<table" in html[start - 100 : start] else len(html)
    found = []
    for match in re.finditer(rf"<{tag}\b([^>]*)>(.*?)</{tag}>", html[start:end], re.S):
        attrs = {k: unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', match[1])}
        attrs["text"] = unescape(re.sub(r"<[^>]+>", "", match[2])).strip()
        found.append(attrs)
    return found


def cli_matrix(*args: str, env: dict[str, str]) -> dict[tuple[str, str], dict[str, str]]:
    result = CliRunner().invoke(policy, ["matrix", "--format", "csv", *args], env=env)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    return {(row.pop("kind"), row.pop("object")): row for row in rows}


def page_matrix(html: str) -> tuple[list[str], dict[tuple[str, str], str]]:
    header = html[html.index('id="policy-matrix"') : html.index("</thead>")]
    roles = [unescape(role) for role in re.findall(r'<th scope="col" data-role="([^"]+)"', header)]
    cells = {
        (cell["field"], cell["role"]): cell["level"]
        for cell in attributes(html, "policy-matrix", "td")
    }
    return roles, cells


def assert_same_matrix(html: str, cli: dict[tuple[str, str], dict[str, str]]) -> None:
    roles, cells = page_matrix(html)
    fields = {name: levels for (kind, name), levels in cli.items() if kind == "field"}
    assert roles == list(next(iter(fields.values())))
    expected = {(name, role): level for name, row in fields.items() for role, level in row.items()}
    assert cells == expected


def policy_text(settings: Settings) -> str:
    return (settings.policy_dir / "policy.csv").read_text(encoding="utf-8")


def history_rows(html: str) -> dict[str, dict[str, str]]:
    rows = attributes(html, "policy-history", "tr")
    return {row["version"]: row for row in rows if "version" in row}


# --- who may open the console ----------------------------------------------------------------


async def test_strangers_are_sent_to_sign_in(browser: httpx.AsyncClient) -> None:
    for path in PAGES:
        response = await browser.get(path)
        assert response.status_code == 303, path
        location = response.headers["location"]
        assert location.startswith("/signin?next=") and "%2Faudit" in location, path


@pytest.mark.parametrize("role", ["dispatcher", "policy_admin", "public_security"])
async def test_other_roles_are_refused(
    browser: httpx.AsyncClient, settings: Settings, role: str
) -> None:
    await sign_in(browser, token(settings, role))
    for path in PAGES:
        response = await browser.get(path + ("&" if "?" in path else "?") + "lang=en")
        assert response.status_code == 403, path
        assert "Your role may not use this page." in response.text
        assert "policy-matrix" not in response.text and "access-log" not in response.text


# --- every page in both languages --------------------------------------------------------------


@pytest.mark.parametrize("language", ["zh-CN", "en"])
async def test_every_page_renders_for_an_auditor(auditor: httpx.AsyncClient, language: str) -> None:
    titles = {
        "/audit": "audit.overview.title",
        "/audit/matrix": "audit.matrix.title",
        "/audit/schema": "audit.schema.title",
        "/audit/policies": "audit.policies.title",
        "/audit/log": "audit.log.title",
        "/audit/grants": "audit.grants.title",
    }
    for path in PAGES:
        response = await auditor.get(with_language(path, language))
        assert response.status_code == 200, (path, response.text)
        html = response.text
        assert f'<html lang="{language}">' in html
        title = re.search(r"<title>(.*?)</title>", html, re.S)
        assert title and title.group(1).strip(), path
        base = path.split("?")[0]
        if "role=" not in path:
            assert WORDS.text(language, titles[base]) in unescape(title.group(1)), path
        assert 'aria-current="page"' in html
        # Every form field has its label.
        for field_id in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html):
            assert f'<label for="{field_id}">' in html, (path, field_id)
        assert "style=" not in html and "<script>" not in html
    overview = (await auditor.get("/audit", params={"lang": language})).text
    assert WORDS.text(language, "audit.chain.ok") in overview
    assert 'id="current-version">1<' in overview
    matrix = (await auditor.get("/audit/matrix", params={"lang": language})).text
    assert WORDS.text(language, "audit.level.masked") in matrix
    assert WORDS.text(language, "audit.level.hidden") in matrix


# --- the matrix --------------------------------------------------------------------------------


async def test_the_matrix_equals_the_clis_cell_by_cell(
    auditor: httpx.AsyncClient, settings: Settings
) -> None:
    page = await auditor.get("/audit/matrix")
    assert page.status_code == 200
    env = {"GRIDHUB_POLICY_DIR": str(settings.policy_dir)}
    assert_same_matrix(page.text, cli_matrix(env=env))
    roles, cells = page_matrix(page.text)
    assert "auditor" in roles and "superuser" in roles
    # Spot checks, in case both sides were wrong together.
    assert cells["Resident.idNumber", "public_security"] == "full"
    assert cells["Resident.idNumber", "health"] == "masked"
    assert cells["Resident.idNumber", "auditor"] == "hidden"
    # The displayed word is the localised level.
    shown = {
        (c["field"], c["role"]): c["text"] for c in attributes(page.text, "policy-matrix", "td")
    }
    assert shown["Resident.idNumber", "health"] == WORDS.text("zh-CN", "audit.level.masked")
    scopes = attributes(page.text, "policy-scopes", "td")
    resident_scope = {c["role"]: c["scopes"] for c in scopes if c["type"] == "Resident"}
    assert resident_scope["grid_worker"] == "own_grids"


async def test_an_unknown_version_is_404(auditor: httpx.AsyncClient) -> None:
    assert (await auditor.get("/audit/matrix?version=99")).status_code == 404
    assert (await auditor.get("/audit/matrix?version=abc")).status_code == 400
    assert (await auditor.get("/audit/schema?role=mayor")).status_code == 404


@pytest.mark.parametrize(
    ("path", "status", "message", "values"),
    [
        ("/audit/schema?from=99", 404, "audit.error.no_version", {"version": 99}),
        ("/audit/schema?to=7", 404, "audit.error.no_version", {"version": 7}),
        ("/audit/matrix?version=99", 404, "audit.error.no_version", {"version": 99}),
        (
            "/audit/matrix?version=abc",
            400,
            "audit.error.bad_number",
            {"name": "version", "value": "abc"},
        ),
        ("/audit/schema?role=mayor", 404, "audit.error.unknown_role", {"role": "mayor"}),
        ("/audit/grants?after=not-a-cursor", 400, None, {}),
    ],
)
@pytest.mark.parametrize("language", ["zh-CN", "en"])
async def test_errors_stay_in_the_console(
    auditor: httpx.AsyncClient,
    path: str,
    status: int,
    message: str | None,
    values: dict[str, Any],
    language: str,
) -> None:
    page = await auditor.get(with_language(path, language))
    assert page.status_code == status
    html = unescape(page.text)
    # The console's frame and navigation, a specific message, and the way back to the console;
    # not the public error page's link home.
    assert 'class="audit-nav"' in html and 'id="console-error"' in html
    assert '<a href="/audit">' + WORDS.text(language, "audit.error.back") in html
    assert WORDS.text(language, "error.home") not in html
    if message == "audit.error.unknown_role":
        assert "mayor" in html and "v1" in html
    elif message is not None:
        assert WORDS.text(language, message, **values) in html
    if message == "audit.error.no_version":
        assert 'href="/audit/policies"' in html


# --- a policy change -------------------------------------------------------------------------


async def test_a_policy_change_shows_in_the_history_the_diff_and_the_matrix(
    app: Any, auditor: httpx.AsyncClient, settings: Settings
) -> None:
    admin = credentials(settings, "policy_admin", subject="admin-1")
    await graphql(app, admin, CHANGE, add=ADDED_LINES, reason="审计员查看通知标题")

    history = await auditor.get("/audit/policies?lang=en")
    assert history.status_code == 200
    rows = history_rows(history.text)
    assert set(rows) == {"1", "2"}
    assert "admin-1" in rows["2"]["text"] and "审计员查看通知标题" in rows["2"]["text"]
    assert "live" in rows["2"]["text"]
    assert "Rollback point" in rows["1"]["text"]
    assert 'href="/audit/schema?from=1&amp;to=2"' in history.text
    # The first version "adds" the whole policy: summed up, its lines folded away.
    first_lines = len(store.policy_lines(policy_text(settings)))
    assert f"Initial policy, {first_lines} lines" in rows["1"]["text"]
    assert "Lines changed (2 added, 0 removed)" in rows["2"]["text"]
    # In Chinese the sentence has its verb, and full-width punctuation.
    zh = await auditor.get("/audit/schema?from=1&to=2&lang=zh-CN")
    meta = attributes(zh.text, "schema-versions", "time")
    assert meta and "由 admin-1 于" in zh.text
    assert re.search(r"</time> 修改，原因：审计员查看通知标题", zh.text)

    # All roles: the changed line and the one role whose access changes.
    summary = await auditor.get("/audit/schema?from=1&to=2&lang=en")
    assert summary.status_code == 200
    for line in ADDED_LINES:
        assert f"+ {line}" in unescape(summary.text)
    changed = re.findall(r'<li data-role="([^"]+)"', summary.text)
    assert changed == ["auditor"]

    # The auditor's SDL diff: notices and their titles come in, marked as added.
    diff = await auditor.get("/audit/schema?role=auditor&from=1&to=2")
    assert diff.status_code == 200
    lines = attributes(diff.text, "sdl-diff", "span")
    added = [line["text"] for line in lines if line["kind"] == "added"]
    assert "+type Notice {" in added and "+  title: String!" in added, added
    assert any(line.startswith("+  notices(") for line in added), added
    assert all(line["text"].startswith("+") for line in lines if line["kind"] == "added")
    assert all(line["text"].startswith("-") for line in lines if line["kind"] == "removed")
    # Each hunk names the definitions its changes are in.
    where_of: dict[str, str] = {}
    hunk = ""
    for line in lines:
        if line["kind"] == "hunk":
            hunk = line["where"]
            assert line["text"].endswith(hunk), line
        where_of[line["text"]] = hunk
    assert "type Notice" in where_of["+type Notice {"].split(", ")
    notices = next(text for text in where_of if text.startswith("+  notices("))
    assert "type Query" in where_of[notices].split(", ")
    # The default compares the live version with the one before it.
    default = await auditor.get("/audit/schema?role=auditor")
    assert 'data-from="1" data-to="2"' in default.text
    # Another role's schema did not change.
    same = await auditor.get("/audit/schema?role=health&from=1&to=2")
    assert 'id="sdl-diff-empty"' in same.text

    # The matrix follows the live version, and still equals the CLI's view of it.
    live = await auditor.get("/audit/matrix")
    assert page_matrix(live.text)[1]["Notice.title", "auditor"] == "full"
    env = {"GRIDHUB_POLICY_DIR": str(settings.policy_dir)}
    cli = await asyncio.to_thread(cli_matrix, "--live", "--db", settings.database_url, env=env)
    assert_same_matrix(live.text, cli)
    old = await auditor.get("/audit/matrix?version=1")
    assert page_matrix(old.text)[1]["Notice.title", "auditor"] == "hidden"

    # A rollback: version 3 restores version 1, which becomes a restored rollback point.
    await graphql(app, admin, 'mutation { rollbackPolicy(version: 1, reason: "undo") { version } }')
    history = await auditor.get("/audit/policies?lang=en")
    rows = history_rows(history.text)
    assert "Rollback: restores version 1" in rows["3"]["text"]
    assert "Restored by version v3" in rows["1"]["text"]
    assert 'data-restores="1"' in history.text and 'data-restored-by="3"' in history.text


async def test_a_version_that_breaks_todays_expectations_is_no_rollback_point(
    app: Any, auditor: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    # Stored behind the checks' back (as an old version written under older expectations
    # would be): auditors reading ID numbers breaks `auditor, Resident.idNumber, read, deny`.
    async with db.transaction() as session:
        current = await session.scalar(text("SELECT text FROM policy_versions WHERE version = 1"))
        await session.execute(
            text(
                "INSERT INTO policy_versions (version, created_at, actor, reason, text, diff) "
                "VALUES (2, CURRENT_TIMESTAMP, 'someone', 'old times', :text, '')"
            ),
            {"text": f"{current}p, auditor, Resident.idNumber, read, allow\n"},
        )
        await session.execute(
            text(
                "INSERT INTO policy_versions (version, created_at, actor, reason, text, diff) "
                "VALUES (3, CURRENT_TIMESTAMP, 'system', 'back', :text, '')"
            ),
            {"text": current},
        )
    history = await auditor.get("/audit/policies?lang=en")
    rows = history_rows(history.text)
    assert "Cannot be restored now" in rows["2"]["text"]
    assert "Resident.idNumber" in rows["2"]["text"]
    assert "Rollback point" in rows["1"]["text"]


# --- the access log --------------------------------------------------------------------------


async def read_sensitive_fields(app: Any, world: World, settings: Settings) -> tuple[int, int]:
    """officer-7 reads one resident's ID number, doctor-3 another's phone: two read records."""
    police, patient = world.residents[1], world.residents[0]
    await graphql(
        app,
        credentials(settings, "public_security", subject="officer-7"),
        "query($id: ID!) { resident(id: $id) { idNumber } }",
        id=to_global_id("Resident", police.id),
    )
    await graphql(
        app,
        credentials(settings, "health", subject="doctor-3", purpose=quote("慢病随访")),
        "query($id: ID!) { resident(id: $id) { phone } }",
        id=to_global_id("Resident", patient.id),
    )
    return police.id, patient.id


def log_rows(html: str) -> list[dict[str, str]]:
    if 'id="access-log"' not in html:
        return []
    return [row for row in attributes(html, "access-log", "tr") if "seq" in row]


def log_cells(html: str) -> list[dict[str, str]]:
    return [cell for cell in attributes(html, "access-log", "td") if len(cell) > 1]


async def test_the_log_filters_by_field_record_and_time(
    app: Any, world: World, auditor: httpx.AsyncClient, settings: Settings
) -> None:
    police_read, health_read = await read_sensitive_fields(app, world, settings)

    everything = await auditor.get("/audit/log?kind=read")
    assert len(log_rows(everything.text)) == 2

    by_field = await auditor.get("/audit/log", params={"field": "Resident.phone"})
    assert by_field.status_code == 200
    cells = log_cells(by_field.text)
    assert [c["actor"] for c in cells if "actor" in c] == ["doctor-3"]
    assert [c["fields"] for c in cells if "fields" in c] == ["Resident.phone"]
    assert [c["records"] for c in cells if "records" in c] == [f"Resident:{health_read}"]

    for record in (f"Resident:{police_read}", to_global_id("Resident", police_read)):
        by_record = await auditor.get("/audit/log", params={"record": record})
        cells = log_cells(by_record.text)
        assert [c["actor"] for c in cells if "actor" in c] == ["officer-7"], record
        assert [c["records"] for c in cells if "records" in c] == [f"Resident:{police_read}"]

    both = await auditor.get(
        "/audit/log", params={"record": f"Resident:{police_read}", "field": "Resident.phone"}
    )
    assert log_rows(both.text) == [] and 'id="log-empty"' in both.text

    by_purpose = await auditor.get("/audit/log", params={"purpose": "慢病随访"})
    assert [c["actor"] for c in log_cells(by_purpose.text) if "actor" in c] == ["doctor-3"]

    # since/until are Beijing wall-clock times.
    past = await auditor.get("/audit/log", params={"kind": "read", "since": "2000-01-01T08:00"})
    assert len(log_rows(past.text)) == 2
    future = await auditor.get("/audit/log", params={"kind": "read", "since": "2999-01-01T00:00"})
    assert log_rows(future.text) == []
    until_past = await auditor.get("/audit/log", params={"until": "2000-01-01T00:00:00"})
    assert log_rows(until_past.text) == []

    # The filters stay in the form.
    assert 'id="field" name="field" type="text" value="Resident.phone"' in by_field.text


async def test_a_bad_filter_is_400_with_a_message(auditor: httpx.AsyncClient) -> None:
    bad_record = await auditor.get("/audit/log?record=not-an-id&lang=en")
    assert bad_record.status_code == 400
    assert WORDS.text("en", "audit.log.bad_filter") in bad_record.text
    bad_time = await auditor.get("/audit/log?since=yesterday&lang=en")
    assert bad_time.status_code == 400
    assert WORDS.text("en", "audit.log.bad_time") in bad_time.text


async def test_the_log_pages_by_cursor(
    app: Any,
    world: World,
    auditor: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_pages, "LOG_PAGE_SIZE", 2)
    for n in range(3):
        await graphql(
            app,
            credentials(settings, "public_security", subject=f"officer-{n}"),
            "query($id: ID!) { resident(id: $id) { idNumber } }",
            id=to_global_id("Resident", world.residents[n].id),
        )
    first = await auditor.get("/audit/log?kind=read")
    first_seqs = [row["seq"] for row in log_rows(first.text)]
    assert len(first_seqs) == 2 and 'data-total="3"' in first.text
    older = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert older and 'rel="prev"' not in first.text
    second = await auditor.get(unescape(older.group(1)))
    second_seqs = [row["seq"] for row in log_rows(second.text)]
    assert len(second_seqs) == 1 and set(second_seqs).isdisjoint(first_seqs)
    assert int(second_seqs[0]) < min(int(s) for s in first_seqs)
    # The filter travels with the cursor.
    assert "kind=read" in older.group(1)
    newer = re.search(r'<a rel="prev" href="([^"]+)"', second.text)
    assert newer
    back = await auditor.get(unescape(newer.group(1)))
    assert [row["seq"] for row in log_rows(back.text)] == first_seqs


# --- emergency grants --------------------------------------------------------------------------


async def test_the_grants_page_lists_open_and_past_grants(
    app: Any, auditor: httpx.AsyncClient, settings: Settings
) -> None:
    police = credentials(
        settings, "public_security", subject="officer-9", department="public_security"
    )
    opened = await graphql(
        app,
        police,
        'mutation { openEmergencyGrant(input: { reason: "燃气泄漏", gridCode: "S2", '
        "minutes: 30 }) { id } }",
    )
    grant_id = opened["openEmergencyGrant"]["id"]
    await graphql(app, police, f'mutation {{ closeEmergencyGrant(id: "{grant_id}") {{ id }} }}')
    await graphql(
        app,
        police,
        'mutation { openEmergencyGrant(input: { reason: "火灾 fire", gridCode: "S1", '
        "minutes: 30 }) { id } }",
    )
    page = await auditor.get("/audit/grants?lang=en")
    rows = [row for row in attributes(page.text, "emergency-grants", "tr") if "grant" in row]
    assert [(row["active"], "officer-9" in row["text"]) for row in rows] == [
        ("true", True),
        ("false", True),
    ]
    assert "火灾 fire" in rows[0]["text"] and "S1" in rows[0]["text"]
    assert "燃气泄漏" in rows[1]["text"] and "closed" in rows[1]["text"]
    open_only = await auditor.get("/audit/grants?active=1")
    rows = [row for row in attributes(open_only.text, "emergency-grants", "tr") if "grant" in row]
    assert [row["active"] for row in rows] == ["true"]
    overview = await auditor.get("/audit")
    assert 'id="count-active-grants">1<' in overview.text
    assert 'id="count-grants">2<' in overview.text


# --- the audit chain ---------------------------------------------------------------------------


async def test_a_tampered_log_shows_the_chain_broken(
    app: Any, world: World, auditor: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    await read_sensitive_fields(app, world, settings)
    intact = await auditor.get("/audit?lang=en")
    assert 'data-chain="ok"' in intact.text
    assert 'id="count-reads">2<' in intact.text
    async with db.transaction() as session:
        seq = await session.scalar(
            text("SELECT MIN(seq) FROM audit_records WHERE actor = 'officer-7'")
        )
        await session.execute(
            text("UPDATE audit_records SET purpose = 'curiosity' WHERE seq = :seq"), {"seq": seq}
        )
    broken = await auditor.get("/audit?lang=en")
    assert broken.status_code == 200
    assert 'data-chain="broken"' in broken.text and 'data-chain="ok"' not in broken.text
    assert f'id="chain-first-bad">#{seq}<' in broken.text
    assert "Broken" in broken.text


# --- the matrix's filters --------------------------------------------------------------------


# Two roles that agree on a resident's name and differ on the phone number, which is sensitive.
SMALL_POLICY = """
g2, Resident.phone, sensitive
g2, Resident.phone, mask:phone
p, auditor, Resident, rows:all, allow
p, auditor, Resident.name, read, allow
p, health, Resident, rows:all, allow
p, health, Resident.name, read, allow
p, health, Resident.phone, read_masked, allow
"""


async def test_the_matrix_shows_only_differing_or_sensitive_fields(
    auditor: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    env = {"GRIDHUB_POLICY_DIR": str(settings.policy_dir)}
    cli = {name: row for (kind, name), row in cli_matrix(env=env).items() if kind == "field"}
    everything = await auditor.get("/audit/matrix")
    badges = set(re.findall(r'<th scope="row">([^<]+?) <span class="badge">', everything.text))
    assert "Resident.idNumber" in badges

    def fields(html: str) -> set[str]:
        return {cell["field"] for cell in attributes(html, "policy-matrix", "td")}

    assert fields(everything.text) == set(cli)
    differ = await auditor.get("/audit/matrix?differ=1")
    assert fields(differ.text) == {name for name, row in cli.items() if len(set(row.values())) > 1}
    assert 'id="differ" name="differ" type="checkbox" value="1" checked' in differ.text
    assert f'data-shown="{len(fields(differ.text))}" data-total="{len(cli)}"' in differ.text

    sensitive = await auditor.get("/audit/matrix?sensitive=1")
    assert fields(sensitive.text) == badges
    both = await auditor.get("/audit/matrix?sensitive=1&differ=1")
    assert fields(both.text) == badges & fields(differ.text)
    # Whatever is shown still equals the CLI, cell by cell.
    for page in (differ, sensitive, both):
        _, cells = page_matrix(page.text)
        assert all(cli[name][role] == level for (name, role), level in cells.items())

    # In a policy where most fields are alike for every role, the filters leave few.
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO policy_versions (version, created_at, actor, reason, text, diff) "
                "VALUES (2, CURRENT_TIMESTAMP, 'someone', 'small', :text, '')"
            ),
            {"text": SMALL_POLICY},
        )
    small = await auditor.get("/audit/matrix?version=2")
    assert len(fields(small.text)) == len(cli)
    assert fields((await auditor.get("/audit/matrix?version=2&differ=1")).text) == {
        "Resident.phone"
    }
    assert fields((await auditor.get("/audit/matrix?version=2&sensitive=1")).text) == {
        "Resident.phone"
    }
    nothing = await auditor.get("/audit/matrix?version=2&sensitive=1&differ=1&lang=en")
    assert fields(nothing.text) == {"Resident.phone"}


async def test_roles_are_named_in_the_pages_language(auditor: httpx.AsyncClient) -> None:
    matrix = await auditor.get("/audit/matrix?lang=zh-CN")
    header = matrix.text[matrix.text.index('id="policy-matrix"') : matrix.text.index("</thead>")]
    dispatcher = re.search(r'data-role="dispatcher"><a [^>]*>([^<]+)</a>', header)
    assert dispatcher and dispatcher.group(1) == "调度员"
    schema = await auditor.get("/audit/schema?role=dispatcher&lang=en")
    assert '<option value="dispatcher" selected>Dispatcher</option>' in schema.text
    assert "<h1>The schema of Dispatcher</h1>" in schema.text


# --- the log's records, in detail -----------------------------------------------------------


async def test_the_log_shows_each_records_detail(
    app: Any, world: World, auditor: httpx.AsyncClient, settings: Settings
) -> None:
    office = credentials(
        settings,
        "community_admin",
        subject="office-1",
        grids=["C1"],
        department="community_service",
    )
    notice = await graphql(
        app,
        office,
        'mutation { createNotice(input: {title: "停水", body: "明日停水", '
        'departmentCode: "community_service", gridCodes: ["C1"]}) { id } }',
    )
    publish = "mutation Publish($id: ID!) { publishNotice(id: $id) { status } }"
    notice_id = notice["createNotice"]["id"]
    await graphql(app, office, publish, id=notice_id)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        again = await http.post(
            "/graphql",
            json={"query": publish, "variables": {"id": notice_id}},
            headers=office,
        )
        assert again.json()["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
        refused = await http.post(
            "/graphql", json={"query": "{ me { role } }"}, headers={"Authorization": "Bearer x"}
        )
        assert refused.status_code == 401

    page = await auditor.get("/audit/log", params={"kind": "mutation", "lang": "zh-CN"})
    rows = [row for row in attributes(page.text, "access-log", "tr") if "seq" in row]
    published = [row for row in rows if "Publish" in row["text"]]
    assert len(published) == 2
    failed, done = published  # newest first
    # The failed attempt says why (its error code); the one that worked names the notice.
    assert "INVALID_TRANSITION" in failed["text"]
    assert "Notice:" in done["text"] and "Notice.publishedAt" in done["text"]
    # The role in the page's language, in full-width brackets.
    actors = {cell["text"] for cell in log_cells(page.text) if "actor" in cell}
    assert actors == {"office-1 （社区管理员，community_service）"}
    keys = re.findall(r'<dd data-key="([a-z_]+)">([^<]*)<', page.text)
    assert ("codes", "INVALID_TRANSITION") in keys
    # Every record names the policy version it was decided under, linked to its matrix.
    assert '<a href="/audit/matrix?version=1">v1</a>' in page.text

    failures = await auditor.get("/audit/log", params={"kind": "auth_failure", "lang": "en"})
    cells = log_cells(failures.text)
    actors = [cell for cell in cells if "actor" in cell]
    # Nobody signed in has no role: no empty "()" after the actor.
    assert actors and all(cell["text"] == "unknown" for cell in actors), actors
    details = dict(re.findall(r'<dd data-key="([a-z_]+)">([^<]*)<', failures.text))
    assert details["path"] == "/graphql" and details["reason"]
    assert f"<dt>{WORDS.text('en', 'audit.detail.reason')}</dt>" in failures.text


async def test_long_field_and_record_lists_are_folded(
    auditor: httpx.AsyncClient, db: Database
) -> None:
    fields = tuple(f"Resident.field{n}" for n in range(8))
    records = tuple(f"Resident:{n}" for n in range(1, 10))
    async with db.transaction() as session:
        await audit.append(
            session,
            audit.AuditEntry(
                kind="read",
                actor="reader-1",
                role="health",
                outcome="ok",
                fields=fields,
                records=records,
                purpose="体检",
            ),
        )
    page = await auditor.get("/audit/log?kind=read&lang=en")
    html = page.text
    cells = log_cells(html)
    assert [c["fields"] for c in cells if "fields" in c] == [" ".join(sorted(fields))]
    cell = html[
        html.index('<td class="fields"') : html.index("</td>", html.index('<td class="fields"'))
    ]
    shown, folded = cell.split("<details", 1)
    assert len(re.findall(r"<a ", shown)) == 5 and len(re.findall(r"<a ", folded)) == 3
    assert WORDS.text("en", "audit.log.more_fields", count=3) in folded
    cell = html[
        html.index('<td class="records"') : html.index("</td>", html.index('<td class="records"'))
    ]
    shown, folded = cell.split("<details", 1)
    assert len(re.findall(r"<a ", shown)) == 5
    assert WORDS.text("en", "audit.log.more_records", count=4) in folded
    assert "Resident:9" in folded


async def test_an_empty_time_range_is_flagged(auditor: httpx.AsyncClient) -> None:
    backwards = await auditor.get(
        "/audit/log",
        params={"since": "2025-01-02T00:00", "until": "2025-01-01T00:00", "lang": "en"},
    )
    assert backwards.status_code == 200
    assert 'role="alert" id="log-range"' in backwards.text
    assert WORDS.text("en", "audit.log.empty_range") in backwards.text
    same = await auditor.get(
        "/audit/log", params={"since": "2025-01-01T00:00", "until": "2025-01-01T00:00"}
    )
    assert 'id="log-range"' in same.text
    fine = await auditor.get(
        "/audit/log", params={"since": "2025-01-01T00:00", "until": "2025-01-02T00:00"}
    )
    assert 'id="log-range"' not in fine.text


async def test_the_role_filter_offers_the_policys_roles(
    app: Any, world: World, auditor: httpx.AsyncClient, settings: Settings
) -> None:
    await read_sensitive_fields(app, world, settings)
    page = await auditor.get("/audit/log", params={"role": "health", "lang": "zh-CN"})
    select = page.text[page.text.index('<select id="role"') : page.text.index("</select>")]
    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', select)
    assert options[0] == ("", "", WORDS.text("zh-CN", "audit.log.any_role"))
    values = [value for value, _, _ in options[1:]]
    assert {"auditor", "dispatcher", "health", "public_security"} <= set(values)
    assert [value for value, selected, _ in options if selected] == ["health"]
    assert ("dispatcher", "", "调度员") in options
    assert [c["actor"] for c in log_cells(page.text) if "actor" in c] == ["doctor-3"]
    # A role the policy no longer has (older records) can still be asked for.
    gone = await auditor.get("/audit/log", params={"role": "night_watch"})
    assert '<option value="night_watch" selected>night_watch</option>' in gone.text


def test_each_sdl_line_belongs_to_its_definition() -> None:
    sdl = [
        '"""A place."""',
        "type Grid implements Node {",
        '  """Its code."""',
        "  code: String!",
        "}",
        "",
        "enum Level {",
        "  GRID",
        "}",
        "",
        "scalar JSON",
        "union Thing = Grid | Resident",
        "input GridFilter {",
        "  code: String",
        "}",
    ]
    assert definitions(sdl) == [
        "type Grid",
        "type Grid",
        "type Grid",
        "type Grid",
        "type Grid",
        None,
        "enum Level",
        "enum Level",
        "enum Level",
        None,
        "scalar JSON",
        "union Thing",
        "input GridFilter",
        "input GridFilter",
        "input GridFilter",
    ]
