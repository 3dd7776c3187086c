"""`gridhub policy`: the auditors' tools. What each role sees (matrix), why (explain), what a
change would do (diff), whether the auditors' expectations hold (check), and the live policy in
the database (export, import, versions).

hub.cli registers the group: main.add_command(policy). The reasoning lives in hub.authz.report;
this module reads files and the database, and prints.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from sqlalchemy import inspect, select

from hub.authz import expectations, report, store
from hub.authz.expectations import CLASS_ROLE
from hub.authz.models import PolicyVersion
from hub.authz.policy import (
    EXPECTATIONS_FILE,
    MODEL_FILE,
    POLICY_FILE,
    Policy,
    PolicyError,
    read_policy_file,
)
from hub.authz.profile import Catalogue, Level, Profile
from hub.commands.options import DB_OPTION, settings_for
from hub.config import Settings
from hub.db import Database
from hub.errors import Conflict, GridHubError, PolicyRejected

if TYPE_CHECKING:
    from strawberry import Schema

    from hub.api.registry import SchemaRegistry

T = TypeVar("T")

IMPORT_ACTOR = "cli:import"
IMPORT_ROLE = "policy_admin"

POLICY_FILE_OPTION = click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A policy CSV to read instead of policy.csv in the policy folder (GRIDHUB_POLICY_DIR).",
)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def policy() -> None:
    """The access policy: what each role sees, why, and what a change would do."""


# --- loading ---------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return read_policy_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


def _parse(settings: Settings, text: str, source: str) -> Policy:
    model_text = _read(settings.policy_dir / MODEL_FILE)
    try:
        return Policy.parse(model_text, text, source=source)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


def _file_policy(settings: Settings, path: Path | None) -> tuple[Policy, str]:
    """The policy in `path`, else policy.csv in the policy folder, and where it came from."""
    path = path or settings.policy_dir / POLICY_FILE
    return _parse(settings, _read(path), str(path)), str(path)


@functools.cache
def _full_schema() -> tuple[Schema, Catalogue]:
    """Built once per process (about half a second): commands only read it."""
    from hub.api.roles import catalogue_of
    from hub.api.schema import build_schema

    full = build_schema()
    return full, catalogue_of(full._schema)


def _catalogue() -> Catalogue:
    return _full_schema()[1]


def _policy_error(exc: PolicyError) -> click.ClickException:
    return click.ClickException(f"the policy does not load: {exc}")


# --- matrix ----------------------------------------------------------------------------------


@policy.command("matrix")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["md", "csv"]),
    default="md",
    show_default=True,
    help="Markdown tables, or one CSV table (kind, object, a column per role).",
)
@POLICY_FILE_OPTION
@click.option("--live", is_flag=True, help="Read the live policy version from the database.")
@DB_OPTION
def matrix_command(
    output_format: str, policy_file: Path | None, live: bool, database_url: str | None
) -> None:
    """Every role against every field (full, masked, hidden), row scope, operation and input
    field."""
    settings = settings_for(database_url)
    if live and policy_file is not None:
        raise click.UsageError("--live and --policy name two different policies: pick one")
    if live:
        version = asyncio.run(_with_database(settings, _live_version))
        source = f"live policy, version {version.version} ({version.actor})"
        loaded = _parse(settings, version.text, f"policy version {version.version}")
    else:
        loaded, source = _file_policy(settings, policy_file)
    try:
        m = report.matrix(loaded, _catalogue())
    except PolicyError as exc:
        raise _policy_error(exc) from None
    if output_format == "csv":
        click.echo(report.render_matrix_csv(m), nl=False)
    else:
        click.echo(report.render_matrix_markdown(m, source=source), nl=False)


async def _live_version(db: Database) -> PolicyVersion:
    async with db.reader() as session:
        version = await store.current(session)
    if version is None:
        raise click.ClickException(
            "the database has no policy version yet (the hub seeds one when it first starts; "
            "so does `gridhub policy export`)"
        )
    return version


# --- explain ---------------------------------------------------------------------------------


@policy.command("explain")
@click.argument("role")
@click.argument("obj", metavar="OBJECT")
@click.argument("action", required=False)
@POLICY_FILE_OPTION
def explain_command(role: str, obj: str, action: str | None, policy_file: Path | None) -> None:
    """Why ROLE gets what it gets for OBJECT: the matching policy lines (inherited ones too)
    and the one that decides. Without ACTION a field's level is explained (read, then
    read_masked); an operation takes call, an input field set, a type every row scope.

    Casbin's own enforcer is asked too; if it ever disagrees, this exits with status 2."""
    settings = settings_for(None)
    loaded, source = _file_policy(settings, policy_file)
    # Casbin logs the whole model and policy at INFO whenever an enforcer is built.
    logging.getLogger("casbin").setLevel(logging.WARNING)
    try:
        explanation = report.explain(loaded, role, obj, action, catalogue=_catalogue())
    except report.UnknownRequest as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Policy: {source}")
    for line in _explanation_lines(explanation):
        click.echo(line)
    if not explanation.agrees:
        for decision in explanation.decisions:
            if not decision.agrees:
                click.echo(
                    f"DISAGREEMENT: hub decides {_word(decision.allowed)} but Casbin's enforce"
                    f"({role}, {obj}, {decision.action}) says {_word(decision.casbin_says)}. "
                    "The compiled schemas do not match the policy: report this as a bug.",
                    err=True,
                )
        sys.exit(2)


def _word(allowed: bool) -> str:
    return "allow" if allowed else "deny"


def _explanation_lines(explanation: report.Explanation) -> list[str]:
    e = explanation
    lines = []
    if e.level is not None:
        lines.append(f"{e.role} reads {e.object}: {e.level.value.upper()}")
    if e.classes:
        lines.append(f"{e.object} is classed (g2):")
    for link in e.classes:
        lines.append(f"  line {link.line}: {link.csv()}  ({_class_meaning(link.group)})")
    for decision in e.decisions:
        lines += ["", *_decision_lines(decision)]
    if e.level is not None:
        lines += ["", _level_reason(e)]
    return lines


def _class_meaning(group: str) -> str:
    if group == "sensitive":
        return "sensitive: read only with a stated purpose, and audited"
    return f"mask kind {group.partition(':')[2]}: how the value looks where it is masked"


def _decision_lines(d: report.Decision) -> list[str]:
    lines = [f"{d.role} {d.action} {d.object}: {_word(d.allowed).upper()}"]
    winner = d.winner
    width = max((len(str(m.line)) for m in d.matched), default=1)
    for matched in d.matched:
        text = f"  line {str(matched.line).rjust(width)}: {matched.rule.csv()}"
        if matched.inherited_through:
            chain = ", ".join(
                f"line {link.line}: {link.csv()}" for link in matched.inherited_through
            )
            text += f"  (inherited through {chain})"
        if matched is winner:
            text += "  <- wins"
        lines.append(text)
    if winner is None:
        lines.append("  no line matches: default deny")
    elif winner.effect == "deny" and any(m.effect == "allow" for m in d.matched):
        lines.append(f"  deny wins over allow: line {winner.line} decides")
    else:
        lines.append(f"  line {winner.line} decides")
    agreement = "agrees" if d.agrees else "DISAGREES"
    lines.append(
        f"  Casbin enforce({d.role}, {d.object}, {d.action}) = {_word(d.casbin_says)} ({agreement})"
    )
    return lines


def _level_reason(e: report.Explanation) -> str:
    read, masked = e.decisions
    if e.level is Level.FULL:
        return f"Level: full, because read is allowed{_by(read)}."
    if e.level is Level.MASKED:
        return (
            f"Level: masked, because read is denied{_by(read)} and read_masked is allowed"
            f"{_by(masked)}."
        )
    return (
        f"Level: hidden, because neither read{_by(read)} nor read_masked{_by(masked)} is "
        "allowed: the field is not in the role's schema."
    )


def _by(d: report.Decision) -> str:
    winner = d.winner
    return f" (line {winner.line})" if winner else " (no line: default deny)"


# --- diff ------------------------------------------------------------------------------------


@policy.command("diff")
@click.argument("old_file", metavar="OLD.csv", type=EXISTING_FILE)
@click.argument("new_file", metavar="NEW.csv", type=EXISTING_FILE)
def diff_command(old_file: Path, new_file: Path) -> None:
    """What changes from OLD.csv to NEW.csv, in schema terms: which role gains or loses which
    field (and full/masked/hidden changes), row scope, operation and input field, and each
    changed role's SDL diff."""
    settings = settings_for(None)
    old = _parse(settings, _read(old_file), str(old_file))
    new = _parse(settings, _read(new_file), str(new_file))
    full, catalogue = _full_schema()
    try:
        old_profiles = report.compile_side("old", old, catalogue)
        new_profiles = report.compile_side("new", new, catalogue)
    except PolicyError as exc:
        raise _policy_error(exc) from None
    changes = report.diff_profiles(old, new, old_profiles, new_profiles, catalogue)
    click.echo(f"Policy diff: {old_file} -> {new_file}")
    for line in _diff_lines(changes):
        click.echo(line)
    click.echo("")
    click.echo(_expectations_under(settings, new, new_file))
    if changes.empty:
        return
    click.echo("")
    click.echo("SDL diff per role:")
    roles = [r.role for r in changes.roles]
    click.echo(_sdl_diff(full, old_profiles, new_profiles, roles), nl=False)


def _expectations_under(settings: Settings, new: Policy, new_file: Path) -> str:
    """A reviewer's first question: would the hub accept the new policy at all?"""
    path = settings.policy_dir / EXPECTATIONS_FILE
    try:
        wanted = expectations.load(path)
    except (OSError, PolicyError) as exc:
        return f"Expectations not checked: {exc}"
    failures = expectations.check(new, wanted)
    if not failures:
        return f"All {len(wanted)} expectations in {path} hold under {new_file}."
    lines = [
        f"{new_file} breaks {len(failures)} of the expectations in {path} (import refuses it):"
    ]
    lines += [f"  {failure.describe()}" for failure in failures]
    return "\n".join(lines)


def _diff_lines(changes: report.PolicyDiff) -> list[str]:
    lines = [""]
    if not changes.lines_removed and not changes.lines_added:
        lines.append("The two policies have the same lines.")
    lines += [f"- {line}" for line in changes.lines_removed]
    lines += [f"+ {line}" for line in changes.lines_added]
    if changes.empty:
        return [*lines, "", "No role's access changes."]
    if changes.added_roles:
        lines += ["", f"Roles added: {', '.join(changes.added_roles)}"]
    if changes.removed_roles:
        lines += ["", f"Roles removed: {', '.join(changes.removed_roles)}"]
    for role_diff in changes.roles:
        lines += ["", *_role_diff_lines(role_diff)]
    return lines


def _level_text(level: Level, mask: str | None) -> str:
    return f"masked as {mask}" if level is Level.MASKED and mask else level.value


def _role_diff_lines(r: report.RoleDiff) -> list[str]:
    status = {"added": " (added role)", "removed": " (removed role)"}.get(r.status, "")
    lines = [f"{r.role}{status}:"]
    for change in r.fields_of("gained"):
        lines.append(f"  gains field {change.object}: {_level_text(change.new, change.new_mask)}")
    for change in r.fields_of("lost"):
        lines.append(
            f"  loses field {change.object} (was {_level_text(change.old, change.old_mask)})"
        )
    for change in r.fields_of("changed"):
        lines.append(
            f"  field {change.object}: {_level_text(change.old, change.old_mask)} -> "
            f"{_level_text(change.new, change.new_mask)}"
        )
    for scope in r.scopes:
        if scope.gained:
            lines.append(f"  gains rows of {scope.type_name}: {report.scope_cell(scope.gained)}")
        if scope.lost:
            lines.append(f"  loses rows of {scope.type_name}: {report.scope_cell(scope.lost)}")
    lines += [f"  may now call {name}" for name in r.operations_gained]
    lines += [f"  may no longer call {name}" for name in r.operations_lost]
    lines += [f"  may now set {name}" for name in r.inputs_gained]
    lines += [f"  may no longer set {name}" for name in r.inputs_lost]
    lines += [f"  {name} becomes sensitive (purpose, audit)" for name in r.sensitive_gained]
    lines += [f"  {name} is no longer sensitive" for name in r.sensitive_lost]
    if len(lines) == 1:
        lines.append("  no access at all")
    return lines


def _sdl_diff(
    full: Schema,
    old_profiles: Mapping[str, Profile],
    new_profiles: Mapping[str, Profile],
    roles: Iterable[str],
) -> str:
    from hub.api.roles import role_schema

    def sdl(profiles: Mapping[str, Profile], role: str) -> list[str]:
        if role not in profiles:
            return []
        try:
            text = role_schema(full, profiles[role]).as_str()
        except ValueError as exc:  # a role whose schema cannot be built
            raise click.ClickException(str(exc)) from None
        return (text + "\n").splitlines(keepends=True)

    return "".join(
        "".join(
            difflib.unified_diff(
                sdl(old_profiles, role), sdl(new_profiles, role), f"old/{role}", f"new/{role}"
            )
        )
        for role in roles
    )


# --- check -----------------------------------------------------------------------------------


@policy.command("check")
@click.argument(
    "expectations_file", metavar="[EXPECTATIONS.csv]", type=EXISTING_FILE, required=False
)
@POLICY_FILE_OPTION
def check_command(expectations_file: Path | None, policy_file: Path | None) -> None:
    """Check the auditors' expectations (default: expectations.csv in the policy folder)
    against the policy. Prints every broken line and exits 1 if any."""
    settings = settings_for(None)
    loaded, source = _file_policy(settings, policy_file)
    path = expectations_file or settings.policy_dir / EXPECTATIONS_FILE
    try:
        wanted = expectations.parse(_read(path), source=str(path))
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    catalogue = _catalogue()
    try:
        report.matrix(loaded, catalogue)  # loads every line against the schema, as a worker would
    except PolicyError as exc:
        raise _policy_error(exc) from None
    problems = report.expectation_problems(wanted, catalogue)
    unusable = {e.line for e, _ in problems}
    failures = [(e.line, reason) for e, reason in problems]
    failures += [
        (f.expectation.line, f.describe().partition(": ")[2])
        for f in expectations.check(loaded, [e for e in wanted if e.line not in unusable])
    ]
    unknown_roles = sorted({e.role for e in wanted} - set(loaded.subjects) - {CLASS_ROLE})
    if unknown_roles:
        # Not a failure: an expectation may well say that a role which is gone sees nothing.
        click.echo(f"note: roles not in the policy: {', '.join(unknown_roles)}")
    if failures:
        for line, reason in sorted(failures):
            click.echo(f"FAILED {path}:{line}: {reason}")
        click.echo(f"{len(failures)} of {len(wanted)} expectations fail against {source}")
        sys.exit(1)
    click.echo(f"{len(wanted)} expectations checked against {source}: all hold")


# --- the live policy in the database ---------------------------------------------------------


async def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = Database(settings.database_url)
    try:
        async with db.engine.connect() as connection:
            migrated = await connection.run_sync(
                lambda sync: inspect(sync).has_table(PolicyVersion.__tablename__)
            )
        if not migrated:
            raise click.ClickException(
                "the database has no policy table: run `gridhub db upgrade` first"
            )
        return await work(db)
    finally:
        await db.dispose()


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    try:
        return asyncio.run(_with_database(settings, work))
    except GridHubError as error:
        raise click.ClickException(f"{error.message} [{error.code}]") from None


async def _seed(db: Database, settings: Settings) -> None:
    """Version 1 from policy.csv on a database without a policy (as the hub does at start)."""
    text = _read(settings.policy_dir / POLICY_FILE)
    try:
        async with db.transaction() as session:
            await store.seed(session, text=text)
    except Conflict:
        pass  # somebody seeded it meanwhile: just as good


@policy.command("export")
@DB_OPTION
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def export_command(database_url: str | None, output: Path | None) -> None:
    """Write the live policy (the latest version in the database) as CSV."""
    settings = settings_for(database_url)

    async def work(db: Database) -> PolicyVersion:
        await _seed(db, settings)
        return await _live_version(db)

    version = _run(settings, work)
    text = version.text if version.text.endswith("\n") else version.text + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"policy version {version.version} written to {output}", err=True)


@policy.command("import")
@click.argument("file", type=EXISTING_FILE)
@click.option("--reason", required=True, help="Why the policy changes (kept with the version).")
@DB_OPTION
def import_command(file: Path, reason: str, database_url: str | None) -> None:
    """Store FILE as the next policy version, after the checks a runtime change passes (the
    model, the schema, the auditors' expectations). Running workers pick it up by themselves
    within seconds."""
    if not reason.strip():
        raise click.BadParameter("say why the policy changes", param_hint="--reason")
    settings = settings_for(database_url)
    text = _read(file)
    from hub.api.registry import SchemaRegistry

    try:
        registry = SchemaRegistry(_full_schema()[0], settings)
    except PolicyRejected as exc:
        raise click.ClickException(f"the policy folder's own policy.csv: {exc.message}") from None

    async def work(db: Database) -> PolicyVersion | None:
        await _seed(db, settings)
        return await _store(db, registry, text, reason.strip())

    try:
        version = _run(settings, work)
    except _Refused as refused:
        raise click.ClickException(f"refused, nothing stored: {refused}") from None
    if version is None:
        click.echo(f"{file} is the live policy already: nothing stored")
        return
    click.echo(
        f"stored as policy version {version.version}; running workers pick it up within "
        f"{settings.policy_poll_seconds:g} seconds"
    )


class _Refused(Exception):
    """A policy the checks refuse (kept apart from GridHubError: its own message)."""


async def _store(
    db: Database, registry: SchemaRegistry, text: str, reason: str
) -> PolicyVersion | None:
    from hub.authz.audit import AuditEntry, append

    async with db.transaction() as session:
        live = await store.current(session)
        if live is not None and live.text == text:
            return None
        try:
            # The same checks as a runtime change (hub.api.access): model, schema, expectations.
            registry.compile(text, version=(live.version if live else 0) + 1)
        except PolicyRejected as exc:
            raise _Refused(exc.message) from None
        version = await store.save(session, base=live, text=text, actor=IMPORT_ACTOR, reason=reason)
        await append(
            session,
            AuditEntry(
                kind="policy",
                actor=IMPORT_ACTOR,
                role=IMPORT_ROLE,
                outcome="ok",
                operation="policy import",
                detail={"version": version.version},
            ),
        )
    return version


@policy.command("versions")
@DB_OPTION
def versions_command(database_url: str | None) -> None:
    """List the policy versions, oldest first: version, when, actor, reason, restores."""

    async def work(db: Database) -> list[PolicyVersion]:
        async with db.reader() as session:
            statement = select(PolicyVersion).order_by(PolicyVersion.version)
            return list((await session.scalars(statement)).all())

    versions = _run(settings_for(database_url), work)
    if not versions:
        click.echo("No policy versions (the hub seeds version 1 when it first starts).")
        return
    header = ("VERSION", "WHEN", "ACTOR", "REASON", "RESTORES")
    rows = [header] + [
        (
            str(v.version),
            v.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            _one_line(v.actor),
            _one_line(v.reason),
            "-" if v.restores is None else str(v.restores),
        )
        for v in versions
    ]
    widths = [max(len(row[n]) for row in rows) for n in range(len(header))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _one_line(text: str) -> str:
    """Line breaks as spaces and other control characters escaped: a reason is free text and
    must neither break the table nor drive the terminal."""
    flat = " ".join(text.split("\n"))
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in {"Cc", "Cf"}
        else char
        for char in flat
    )
