"""`gridhub policy`: the auditors' tools (matrix, explain, diff, check) against the real policies/
folder and small policies in tmp_path, and export/import/versions against a real database."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from hub.api.registry import SchemaRegistry
from hub.api.roles import catalogue_of
from hub.api.schema import build_schema
from hub.authz import expectations, report, store
from hub.authz.models import AuditRecord
from hub.authz.policy import (
    EXPECTATIONS_FILE,
    MODEL_FILE,
    POLICY_FILE,
    READ,
    READ_MASKED,
    ROWS_PREFIX,
    Policy,
)
from hub.authz.profile import Catalogue, Level
from hub.commands.policy import policy
from hub.config import DEFAULT_POLICY_DIR, Settings
from hub.db import Database

DEFAULT_POLICY = DEFAULT_POLICY_DIR / POLICY_FILE
DEFAULT_ENV = {"GRIDHUB_POLICY_DIR": str(DEFAULT_POLICY_DIR)}
ROLES = (
    "public",
    "grid_worker",
    "community_admin",
    "public_security",
    "health",
    "civil_affairs",
    "environment",
    "dispatcher",
    "auditor",
    "policy_admin",
    "operator",
    "connector:household",
    "connector:health",
    "connector:hotline",
    "connector:public_security",
)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return catalogue_of(build_schema()._schema)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(policy, list(args), env=env or DEFAULT_ENV)


async def run_async(*args: str, env: dict[str, str]) -> Result:
    # The database commands run their own event loop (asyncio.run): off this test's loop.
    return await asyncio.to_thread(CliRunner().invoke, policy, list(args), env=env)


def line_of(text: str, wanted: str) -> int:
    """The 1-based line number of `wanted` in a policy text (whitespace-insensitive)."""
    normal = ", ".join(t.strip() for t in wanted.split(","))
    for number, raw in enumerate(text.splitlines(), start=1):
        if ", ".join(t.strip() for t in raw.split(",")) == normal:
            return number
    raise AssertionError(f"{wanted} is not in the policy")


def policy_dir_with(tmp_path: Path, text: str) -> Path:
    """A policy folder: the default model and expectations beside `text` as policy.csv."""
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    for name in (MODEL_FILE, EXPECTATIONS_FILE):
        shutil.copy(DEFAULT_POLICY_DIR / name, folder / name)
    (folder / POLICY_FILE).write_text(text, encoding="utf-8")
    return folder


def without(text: str, *lines: str) -> str:
    kept = [raw for raw in text.splitlines() if raw.strip() not in lines]
    assert len(kept) == len(text.splitlines()) - len(lines), "a line to remove is not there"
    return "\n".join(kept) + "\n"


def default_text() -> str:
    return DEFAULT_POLICY.read_text(encoding="utf-8")


# --- matrix ----------------------------------------------------------------------------------


def markdown_table(output: str, heading: str) -> dict[str, dict[str, str]]:
    """The table under `heading`: first cell -> column header -> cell."""
    lines = output.splitlines()
    start = lines.index(heading) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header, _rule, *body = rows
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in body}


def test_matrix_markdown_shows_levels_and_scopes() -> None:
    result = run("matrix")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Access matrix\n")
    residents = markdown_table(result.output, "### Resident")
    assert residents["healthNotes"]["health"] == "full"
    assert residents["idNumber"]["health"] == "masked"
    assert residents["idNumber"]["public_security"] == "full"
    assert residents["idNumber"]["dispatcher"] == "hidden"
    assert residents["name"]["dispatcher"] == "masked"
    # Nobody without a token sees any resident field.
    assert {row["public"] for row in residents.values()} == {"hidden"}
    assert tuple(residents["id"]) == ROLES
    scopes = markdown_table(result.output, "## Row scopes")
    assert scopes["Resident"]["grid_worker"] == "own_grids"
    assert scopes["Resident"]["public"] == "none"
    assert scopes["Notice"]["public"] == "published"
    calls = markdown_table(result.output, "## Operations (call)")
    assert calls["Mutation.changePolicy"]["policy_admin"] == "allow"
    assert calls["Mutation.changePolicy"]["auditor"] == "deny"
    # Inherited: community_admin calls what grid_worker calls.
    assert calls["Mutation.acceptEvent"]["community_admin"] == "allow"
    sets = markdown_table(result.output, "## Input fields (set)")
    assert sets["ResidentInput.healthNotes"]["health"] == "allow"
    assert sets["ResidentInput.healthNotes"]["grid_worker"] == "deny"
    assert sets["ResidentInput.healthNotes"]["community_admin"] == "deny"


def csv_matrix(output: str) -> dict[tuple[str, str], dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(output)))
    return {(row.pop("kind"), row.pop("object")): row for row in rows}


def test_matrix_csv(catalogue: Catalogue) -> None:
    result = run("matrix", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ",".join(("kind", "object", *ROLES))
    cells = csv_matrix(result.output)
    assert cells["field", "Resident.healthNotes"]["health"] == "full"
    assert cells["field", "Resident.idNumber"]["health"] == "masked"
    assert cells["field", "Resident.idNumber"]["public_security"] == "full"
    resident_fields = [name for name in catalogue.field_objects() if name.startswith("Resident.")]
    assert {cells["field", name]["public"] for name in resident_fields} == {"hidden"}
    assert cells["rows", "Resident"]["grid_worker"] == "own_grids"
    assert cells["rows", "Event"]["health"] == "own_department"
    assert cells["call", "Mutation.openEmergencyGrant"]["public_security"] == "allow"
    assert cells["set", "ResidentInput.tags"]["civil_affairs"] == "allow"
    # The write side: write scopes, attributions, grant levels.
    assert cells["write", "Notice"]["community_admin"] == "own_grids"
    assert cells["write", "Notice"]["grid_worker"] == "none"
    assert cells["on_behalf", "CreateNoticeInput.departmentCode"]["community_admin"] == "deny"
    assert cells["grant", "EmergencyGrant"]["dispatcher"] == "community grid"
    # One row per field, scoped type (read and write), operation, input field and attribution,
    # and the grant levels: nothing left out.
    assert len(cells) == (
        len(list(catalogue.field_objects()))
        + 2 * len(catalogue.scoped)
        + len(catalogue.operations)
        + len(list(catalogue.input_objects()))
        + len(catalogue.attributions)
        + 1
    )


def test_matrix_of_another_policy_file(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text(
        "p, clerk, Resident, rows:own_grids, allow\n"
        "p, clerk, Resident.*, read, allow\n"
        "p, clerk, Resident.phone, read, deny\n"
        "p, clerk, Resident.phone, read_masked, allow\n"
        "g2, Resident.phone, mask:phone\n",
        encoding="utf-8",
    )
    result = run("matrix", "--format", "csv", "--policy", str(small))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "kind,object,clerk"
    cells = csv_matrix(result.output)
    assert cells["field", "Resident.name"] == {"clerk": "full"}
    assert cells["field", "Resident.phone"] == {"clerk": "masked"}
    assert cells["field", "Event.code"] == {"clerk": "hidden"}
    assert cells["rows", "Resident"] == {"clerk": "own_grids"}


def test_matrix_refuses_a_policy_naming_unknown_objects(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("p, clerk, Resident.nmae, read, allow\n", encoding="utf-8")
    result = run("matrix", "--policy", str(bad))
    assert result.exit_code == 1
    assert "line 1" in result.output or ":1:" in result.output
    assert "Resident.nmae" in result.output


# --- explain ---------------------------------------------------------------------------------


def test_explain_a_masked_field() -> None:
    text = default_text()
    deny = line_of(text, "p, health, Resident.idNumber, read, deny")
    masked = line_of(text, "p, health, Resident.idNumber, read_masked, allow")
    wildcard = line_of(text, "p, health, Resident.*, read, allow")
    result = run("explain", "health", "Resident.idNumber")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "health reads Resident.idNumber: MASKED" in out
    assert f"line {wildcard}: p, health, Resident.*, read, allow\n" in out
    assert f"line {deny}: p, health, Resident.idNumber, read, deny  <- wins" in out
    assert f"line {masked}: p, health, Resident.idNumber, read_masked, allow  <- wins" in out
    assert f"deny wins over allow: line {deny} decides" in out
    assert "Casbin enforce(health, Resident.idNumber, read) = deny (agrees)" in out
    assert "Casbin enforce(health, Resident.idNumber, read_masked) = allow (agrees)" in out
    assert (
        f"Level: masked, because read is denied (line {deny}) and read_masked is allowed "
        f"(line {masked})." in out
    )
    # The field's classes, with their lines.
    sensitive = line_of(text, "g2, Resident.idNumber, sensitive")
    assert f"line {sensitive}: g2, Resident.idNumber, sensitive" in out


def test_explain_an_inherited_line() -> None:
    text = default_text()
    inherited = line_of(text, "p, grid_worker, Resident.*, read, allow")
    link = line_of(text, "g, community_admin, grid_worker")
    result = run("explain", "community_admin", "Resident.name", "read")
    assert result.exit_code == 0, result.output
    assert (
        f"line {inherited}: p, grid_worker, Resident.*, read, allow  "
        f"(inherited through line {link}: g, community_admin, grid_worker)  <- wins"
    ) in result.output
    assert "community_admin read Resident.name: ALLOW" in result.output
    assert "(agrees)" in result.output


def test_explain_default_deny_and_other_objects() -> None:
    result = run("explain", "public", "Resident.healthNotes")
    assert result.exit_code == 0, result.output
    assert "public reads Resident.healthNotes: HIDDEN" in result.output
    assert result.output.count("no line matches: default deny") == 2

    # A type without an action: every scope it supports.
    result = run("explain", "grid_worker", "Resident")
    assert result.exit_code == 0, result.output
    scope_line = line_of(default_text(), "p, grid_worker, Resident, rows:own_grids, allow")
    assert "grid_worker rows:all Resident: DENY" in result.output
    assert "grid_worker rows:own_grids Resident: ALLOW" in result.output
    assert f"line {scope_line}: p, grid_worker, Resident, rows:own_grids, allow" in result.output

    # An operation: call; an input field: set.
    result = run("explain", "dispatcher", "Mutation.changePolicy")
    assert result.exit_code == 0, result.output
    assert "dispatcher call Mutation.changePolicy: DENY" in result.output
    result = run("explain", "grid_worker", "ResidentInput.healthNotes")
    assert result.exit_code == 0, result.output
    assert "grid_worker set ResidentInput.healthNotes: DENY" in result.output
    deny = line_of(default_text(), "p, grid_worker, ResidentInput.healthNotes, set, deny")
    assert f"deny wins over allow: line {deny} decides" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("health", "Resident.nmae"), "'Resident.nmae' is not a field"),
        (("health", "Resident.*"), "'Resident.*' is not a field"),
        (("helth", "Resident.name"), "role 'helth' is not in the policy (did you mean health?)"),
        (("health", "Resident.name", "call"), "Resident.name takes the actions read, read_masked"),
    ],
)
def test_explain_refuses_what_names_nothing(args: tuple[str, ...], message: str) -> None:
    result = run("explain", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Casbin" not in result.output


def test_explain_suggests_the_field_meant() -> None:
    result = run("explain", "health", "Resident.nmae")
    assert "did you mean Resident.name" in result.output


SAMPLE = [
    ("health", "Resident.idNumber", "read"),
    ("health", "Resident.healthNotes", "read"),
    ("grid_worker", "Resident.healthNotes", "read"),
    ("community_admin", "Resident.idNumber", "read_masked"),
    ("community_admin", "Mutation.dispatchEvent", "call"),
    ("community_admin", "Mutation.reportEvent", "call"),
    ("community_admin", "ResidentInput.healthNotes", "set"),
    ("dispatcher", "Resident.name", "read_masked"),
    ("environment", "Event.reporter", "read"),
    ("public", "Notice", "rows:published"),
    ("public", "Notice", "rows:all"),
    ("connector:health", "ResidentInput.idNumber", "set"),
    ("auditor", "AuditRecord.fields", "read"),
    ("policy_admin", "AuditRecord.fields", "read"),
]


@pytest.mark.parametrize(("role", "obj", "action"), SAMPLE)
def test_explain_agrees_with_casbin(role: str, obj: str, action: str) -> None:
    loaded = Policy.from_directory(DEFAULT_POLICY_DIR)
    casbin_says = loaded.enforcer().enforce(role, obj, action)
    word = "allow" if casbin_says else "deny"
    result = run("explain", role, obj, action)
    assert result.exit_code == 0, result.output
    assert f"{role} {action} {obj}: {word.upper()}" in result.output
    assert f"Casbin enforce({role}, {obj}, {action}) = {word} (agrees)" in result.output


def test_every_decision_agrees_with_casbin(catalogue: Catalogue) -> None:
    """The whole default policy, every role and object: what explain reports is Casbin's answer."""
    loaded = Policy.from_directory(DEFAULT_POLICY_DIR)
    enforcer = loaded.enforcer()
    requests = [(f, a) for f in catalogue.field_objects() for a in (READ, READ_MASKED)]
    requests += [(t, ROWS_PREFIX + s) for t, scopes in catalogue.scoped.items() for s in scopes]
    requests += [(o, "call") for o in catalogue.operations]
    requests += [(i, "set") for i in catalogue.input_objects()]
    for role in loaded.subjects:
        for obj, action in requests:
            decision = report.decision(loaded, role, obj, action, enforcer=enforcer)
            assert decision.agrees, (role, obj, action)
            # The deciding line is consistent with the decision.
            winner = decision.winner
            assert decision.allowed == (winner is not None and winner.effect == "allow")


def test_inheritance_beyond_casbins_reach_is_refused(tmp_path: Path) -> None:
    """Casbin's role manager follows at most 10 `g` links while hub's decide would follow any
    chain: a policy where the two could part is refused when it loads, naming the line."""
    chain = [f"g, r{n}, r{n + 1}" for n in range(11)]
    text = "\n".join([*chain, "p, r11, Resident.name, read, allow"]) + "\n"
    folder = policy_dir_with(tmp_path, text)
    result = run("explain", "r0", "Resident.name", "read", env={"GRIDHUB_POLICY_DIR": str(folder)})
    assert result.exit_code == 1, result.output
    assert "inherits through 10 or more roles" in result.output
    # Nine links are within Casbin's reach: the two agree.
    short = "\n".join([*chain[2:], "p, r11, Resident.name, read, allow"]) + "\n"
    (tmp_path / "short").mkdir()
    folder = policy_dir_with(tmp_path / "short", short)
    result = run("explain", "r2", "Resident.name", "read", env={"GRIDHUB_POLICY_DIR": str(folder)})
    assert result.exit_code == 0, result.output
    assert "(agrees)" in result.stdout


# --- diff ------------------------------------------------------------------------------------


def test_diff_reports_exactly_the_change(tmp_path: Path) -> None:
    removed = "p, health, Resident.idNumber, read_masked, allow"
    added = "p, environment, Event.description, read, deny"
    new = tmp_path / "new.csv"
    new.write_text(without(default_text(), removed) + added + "\n", encoding="utf-8")
    result = run("diff", str(DEFAULT_POLICY), str(new))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"\n- {removed}\n+ {added}\n" in out
    assert "\nhealth:\n  loses field Resident.idNumber (was masked as id_number)\n\n" in out
    assert "\nenvironment:\n  loses field Event.description (was full)\n\n" in out
    # Roles whose access does not change are not listed.
    for role in ROLES:
        if role not in ("health", "environment"):
            assert f"\n{role}:" not in out
    # The new policy breaks an auditors' expectation: the reviewer learns it here.
    assert "breaks 1 of the expectations" in out
    assert "health read Resident.idNumber: expected masked, the policy gives deny" in out
    # The SDL diff of exactly the two roles.
    sdl = out[out.index("SDL diff per role:") :]
    assert sdl.count("--- old/") == 2
    health = sdl[sdl.index("--- old/health") : sdl.index("--- old/environment")]
    assert "-  idNumber: String!" in health
    assert "\n+" not in health.replace("+++ new/health", "")
    assert "-  description: String" in sdl[sdl.index("--- old/environment") :]


def test_diff_of_a_gained_level_change(tmp_path: Path) -> None:
    # dispatcher: Resident.name masked -> full.
    new = tmp_path / "new.csv"
    new.write_text(default_text() + "p, dispatcher, Resident.name, read, allow\n", encoding="utf-8")
    result = run("diff", str(DEFAULT_POLICY), str(new))
    assert result.exit_code == 0, result.output
    assert "\ndispatcher:\n  field Resident.name: masked as name -> full\n" in result.output
    count = len(expectations.load(DEFAULT_POLICY_DIR / EXPECTATIONS_FILE))
    assert f"All {count} expectations in " in result.output


def test_diff_reports_added_and_removed_roles(tmp_path: Path, catalogue: Catalogue) -> None:
    text = default_text()
    auditor_lines = [raw.strip() for raw in text.splitlines() if raw.startswith("p, auditor,")]
    new_text = without(text, *auditor_lines) + "p, inspector, Grid, rows:all, allow\n"
    new_text += "p, inspector, Grid.name, read, allow\n"
    new = tmp_path / "new.csv"
    new.write_text(new_text, encoding="utf-8")
    result = run("diff", str(DEFAULT_POLICY), str(new))
    assert result.exit_code == 0, result.output
    assert "Roles added: inspector" in result.output
    assert "Roles removed: auditor" in result.output
    assert "\ninspector (added role):\n  gains field Grid.name: full\n" in result.output
    assert "\nauditor (removed role):\n  loses field Grid.id (was full)\n" in result.output
    assert "--- old/inspector\n+++ new/inspector\n" in result.output
    # The same answer from the pure function the web console will use.
    changes = report.diff(
        Policy.from_directory(DEFAULT_POLICY_DIR),
        Policy.from_directory(DEFAULT_POLICY_DIR).with_text(new_text),
        catalogue,
    )
    assert changes.added_roles == ("inspector",)
    assert changes.removed_roles == ("auditor",)
    assert [r.role for r in changes.roles] == ["auditor", "inspector"]
    inspector = changes.roles[1]
    assert [(c.object, c.old, c.new) for c in inspector.fields] == [
        ("Grid.name", Level.HIDDEN, Level.FULL)
    ]
    assert [(s.type_name, s.gained, s.lost) for s in inspector.scopes] == [
        ("Grid", frozenset({"all"}), frozenset())
    ]


def test_diff_of_the_same_policy() -> None:
    result = run("diff", str(DEFAULT_POLICY), str(DEFAULT_POLICY))
    assert result.exit_code == 0, result.output
    assert "No role's access changes." in result.output
    assert "SDL diff" not in result.output


# --- check -----------------------------------------------------------------------------------


def test_check_passes_on_the_default_files() -> None:
    count = len(expectations.load(DEFAULT_POLICY_DIR / EXPECTATIONS_FILE))
    result = run("check")
    assert result.exit_code == 0, result.output
    assert f"{count} expectations checked against {DEFAULT_POLICY}: all hold" in result.output


def test_check_names_the_broken_expectation(tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    extra = "p, dispatcher, Resident.idNumber, read_masked, allow\n"
    broken.write_text(default_text() + extra, encoding="utf-8")
    wanted = DEFAULT_POLICY_DIR / EXPECTATIONS_FILE
    line = line_of(wanted.read_text(encoding="utf-8"), "dispatcher, Resident.idNumber, read, deny")
    result = run("check", "--policy", str(broken))
    assert result.exit_code == 1
    assert (
        f"FAILED {wanted}:{line}: dispatcher read Resident.idNumber: expected deny, "
        "the policy gives masked"
    ) in result.output
    total = len(expectations.load(wanted))
    assert f"1 of {total} expectations fail" in result.output


def test_check_with_another_expectations_file(tmp_path: Path) -> None:
    own = tmp_path / "mine.csv"
    own.write_text(
        "# mine\n"
        "health, Resident.healthNotes, read, allow\n"
        "health, Resident.helthNotes, read, deny\n"  # a typo: met by any policy, so refused
        "public, Resident, rows:published, deny\n"  # Resident has no published scope
        "gone_role, Resident.name, read, deny\n",
        encoding="utf-8",
    )
    result = run("check", str(own))
    assert result.exit_code == 1
    assert f"FAILED {own}:3: Resident.helthNotes is not in the schema" in result.output
    takes = "rows:all, rows:own_grids, write:all, write:own_grids"
    assert f"FAILED {own}:4: Resident takes {takes}, not rows:published" in result.output
    assert "note: roles not in the policy: gone_role" in result.output
    assert "2 of 4 expectations fail" in result.output


def test_check_reports_a_policy_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("p, health, Resident.*, read, allow\np, health, Res*.name, read, allow\n")
    result = run("check", "--policy", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.output


# --- the live policy: export, import, versions -----------------------------------------------


async def audit_count(db: Database) -> int:
    async with db.reader() as session:
        return (await session.scalar(select(func.count()).select_from(AuditRecord))) or 0


async def test_export_import_round_trip(db: Database, settings: Settings, tmp_path: Path) -> None:
    env = {"GRIDHUB_POLICY_DIR": str(settings.policy_dir)}
    url = settings.database_url
    seeded = (settings.policy_dir / POLICY_FILE).read_text(encoding="utf-8")

    result = await run_async("versions", "--db", url, env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("No policy versions")

    # Export on an empty database seeds version 1 from policy.csv first.
    result = await run_async("export", "--db", url, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == seeded

    # Import a changed policy: stored as version 2, with the audit record.
    changed = seeded + "p, auditor, Stats.eventCounts, read, allow\n"
    source = tmp_path / "changed.csv"
    source.write_text(changed, encoding="utf-8")
    result = await run_async(
        "import", str(source), "--reason", "auditors count events", "--db", url, env=env
    )
    assert result.exit_code == 0, result.output
    assert "stored as policy version 2" in result.output
    async with db.reader() as session:
        live = await store.current(session)
        record = await session.scalar(select(AuditRecord).order_by(AuditRecord.seq.desc()))
    assert live is not None and live.version == 2
    assert live.text == changed
    assert live.actor == "cli:import" and live.reason == "auditors count events"
    assert live.diff == "+ p, auditor, Stats.eventCounts, read, allow"
    assert record is not None
    assert (record.kind, record.actor, record.role, record.outcome) == (
        "policy",
        "cli:import",
        "policy_admin",
        "ok",
    )
    assert record.operation == "policy import" and record.detail == {"version": 2}

    # A worker picks the new version up by itself.
    registry = SchemaRegistry(build_schema(), settings)
    assert registry.version == 0
    assert await registry.sync(db)
    assert registry.version == 2
    assert registry.profile_for("auditor").level("Stats.eventCounts") is Level.FULL

    # Export to a file gives back exactly what was imported.
    exported = tmp_path / "exported.csv"
    result = await run_async("export", "--db", url, "-o", str(exported), env=env)
    assert result.exit_code == 0, result.output
    assert exported.read_text(encoding="utf-8") == changed

    # The live matrix shows the imported policy.
    result = await run_async("matrix", "--live", "--format", "csv", "--db", url, env=env)
    assert result.exit_code == 0, result.output
    assert csv_matrix(result.output)["field", "Stats.eventCounts"]["auditor"] == "full"

    # Importing the live policy again stores nothing.
    result = await run_async("import", str(source), "--reason", "again", "--db", url, env=env)
    assert result.exit_code == 0, result.output
    assert "is the live policy already: nothing stored" in result.output

    result = await run_async("versions", "--db", url, env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["VERSION", "WHEN", "ACTOR", "REASON", "RESTORES"]
    assert len(lines) == 3
    assert lines[1].startswith("1 ") and "system" in lines[1]
    assert "initial policy from policy.csv" in lines[1]
    assert lines[2].startswith("2 ") and "cli:import" in lines[2]
    assert "auditors count events" in lines[2] and lines[2].endswith("-")


async def test_import_refuses_a_policy_the_runtime_would_refuse(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    env = {"GRIDHUB_POLICY_DIR": str(settings.policy_dir)}
    url = settings.database_url
    seeded = (settings.policy_dir / POLICY_FILE).read_text(encoding="utf-8")
    wanted = (settings.policy_dir / EXPECTATIONS_FILE).read_text(encoding="utf-8")
    expectation_line = line_of(wanted, "health, Resident.idNumber, read, masked")

    # It breaks an auditors' expectation: health would no longer see ID numbers masked.
    breaking = tmp_path / "breaking.csv"
    breaking.write_text(
        without(seeded, "p, health, Resident.idNumber, read_masked, allow"), encoding="utf-8"
    )
    result = await run_async("import", str(breaking), "--reason", "try", "--db", url, env=env)
    assert result.exit_code == 1, result.output
    assert "refused, nothing stored" in result.output
    assert "breaks the auditors' expectations" in result.output
    assert f"line {expectation_line}: health read Resident.idNumber" in result.output
    # Only the seeded version is there, and no audit record was written.
    async with db.reader() as session:
        assert await store.latest_version(session) == 1
    assert await audit_count(db) == 0

    # It names an object the schema does not have.
    typo = tmp_path / "typo.csv"
    typo.write_text(seeded + "p, health, Resident.nmae, read, allow\n", encoding="utf-8")
    result = await run_async("import", str(typo), "--reason", "try", "--db", url, env=env)
    assert result.exit_code == 1, result.output
    assert "Resident.nmae, which does not exist" in result.output

    # It breaks the model.
    broken = tmp_path / "broken.csv"
    broken.write_text(seeded + "p, health, Res*.name, read, allow\n", encoding="utf-8")
    result = await run_async("import", str(broken), "--reason", "try", "--db", url, env=env)
    assert result.exit_code == 1, result.output
    assert "is not Type, Type.field or Type.*" in result.output

    async with db.reader() as session:
        assert await store.latest_version(session) == 1
    assert await audit_count(db) == 0

    # A reason is required.
    result = await run_async("import", str(typo), "--reason", " ", "--db", url, env=env)
    assert result.exit_code == 2
    assert "say why the policy changes" in result.output


async def test_the_database_must_be_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    for args in (("export",), ("versions",), ("matrix", "--live")):
        result = await run_async(*args, "--db", url, env=DEFAULT_ENV)
        assert result.exit_code == 1, result.output
        assert "run `gridhub db upgrade` first" in result.output
