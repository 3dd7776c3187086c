"""What a policy means, in the auditors' terms: the access matrix, why one request is allowed or
denied, and what changes between two policies.

Pure functions over a parsed Policy and the schema's Catalogue: no click, no printing, no
database. `gridhub policy` (hub.commands.policy) prints them; the auditors' web console can
show the same data. Decisions come from hub.authz.profile (the profiles every role's schema is
compiled from), so the matrix shows exactly what the roles' schemas show.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import casbin

from hub.authz.expectations import CLASS_ROLE, Expectation
from hub.authz.policy import (
    CALL,
    MASK_PREFIX,
    ON_BEHALF,
    READ,
    READ_MASKED,
    ROWS_PREFIX,
    SENSITIVE,
    SET,
    TYPE_ACTION_PREFIXES,
    WRITE_PREFIX,
    WRITE_SCOPES,
    Link,
    Policy,
    PolicyError,
    Rule,
)
from hub.authz.profile import (
    Catalogue,
    Level,
    Profile,
    _object_matches,
    compile_profiles,
    decide,
)

ALLOW = "allow"
DENY = "deny"
NO_ROWS = "none"


# --- the matrix --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRow:
    """One output field and its level for every role."""

    object: str  # "Resident.idNumber"
    levels: Mapping[str, Level]

    @property
    def type_name(self) -> str:
        return self.object.partition(".")[0]

    @property
    def field_name(self) -> str:
        return self.object.partition(".")[2]


@dataclass(frozen=True)
class ScopeRow:
    """One type with rows of its own and the scopes each role sees (empty: no rows)."""

    type_name: str
    scopes: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class PermissionRow:
    """One operation (`call`) or input field (`set`) and the roles allowed it."""

    object: str
    allowed: frozenset[str]


@dataclass(frozen=True)
class Matrix:
    roles: tuple[str, ...]
    fields: tuple[FieldRow, ...]
    scopes: tuple[ScopeRow, ...]
    operations: tuple[PermissionRow, ...]
    inputs: tuple[PermissionRow, ...]
    # The rows each role may change or create (write scopes), and the attribution inputs it
    # may set to someone else (on_behalf).
    writes: tuple[ScopeRow, ...] = ()
    on_behalf: tuple[PermissionRow, ...] = ()
    # The grid levels each role may open an emergency grant on (empty: none).
    grant_levels: Mapping[str, frozenset[str]] = field(default_factory=dict)


def matrix(policy: Policy, catalogue: Catalogue) -> Matrix:
    """Every role against every object of the catalogue. Raises PolicyError if a line names
    something the catalogue does not have (as loading the policy would)."""
    profiles = compile_profiles(policy, catalogue)
    roles = tuple(profiles)

    def scope_rows(of: Callable[[Profile], Mapping[str, frozenset[str]]]) -> tuple[ScopeRow, ...]:
        return tuple(
            ScopeRow(t, {role: of(profiles[role]).get(t, frozenset()) for role in roles})
            for t in catalogue.scoped
        )

    def permission_rows(
        names: Iterable[str], of: Callable[[Profile], frozenset[str]]
    ) -> tuple[PermissionRow, ...]:
        return tuple(
            PermissionRow(name, frozenset(r for r in roles if name in of(profiles[r])))
            for name in names
        )

    return Matrix(
        roles=roles,
        fields=tuple(
            FieldRow(name, {role: profiles[role].level(name) for role in roles})
            for name in catalogue.field_objects()
        ),
        scopes=scope_rows(lambda p: p.scopes),
        operations=permission_rows(catalogue.operations, lambda p: p.operations),
        inputs=permission_rows(catalogue.input_objects(), lambda p: p.inputs),
        writes=scope_rows(lambda p: p.write_scopes),
        on_behalf=permission_rows(sorted(catalogue.attributions), lambda p: p.on_behalf),
        grant_levels={role: profiles[role].grant_levels for role in roles},
    )


def scope_cell(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes)) or NO_ROWS


def _permission_cell(allowed: bool) -> str:
    return ALLOW if allowed else DENY


def matrix_rows(m: Matrix) -> list[list[str]]:
    """The matrix as one table: kind, object, then a cell per role. Kinds: `field` (full,
    masked, hidden), `rows` and `write` (the read and write scopes, space separated, or none),
    `grant` (the grid levels of emergency grants, or none), `call`, `set` and `on_behalf`
    (allow, deny)."""
    rows = [["kind", "object", *m.roles]]
    rows += [["field", r.object, *(r.levels[role].value for role in m.roles)] for r in m.fields]
    for kind, scopes in (("rows", m.scopes), ("write", m.writes)):
        rows += [
            [kind, r.type_name, *(scope_cell(r.scopes[role]) for role in m.roles)] for r in scopes
        ]
    if m.grant_levels:
        rows.append(
            ["grant", "EmergencyGrant", *(scope_cell(m.grant_levels[role]) for role in m.roles)]
        )
    for kind, permissions in ((CALL, m.operations), (SET, m.inputs), (ON_BEHALF, m.on_behalf)):
        rows += [
            [kind, p.object, *(_permission_cell(role in p.allowed) for role in m.roles)]
            for p in permissions
        ]
    return rows


def render_matrix_csv(m: Matrix) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(matrix_rows(m))
    return out.getvalue()


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    # Padded columns: the raw text reads as a table too, not only the rendered one.
    widths = [max(len(row[n]) for row in (header, *rows)) for n in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.replace("|", "\\|").ljust(width) for cell, width in zip(cells, widths, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def render_matrix_markdown(m: Matrix, *, source: str | None = None) -> str:
    lines = ["# Access matrix", ""]
    if source:
        lines += [f"Policy: `{source}`", ""]
    lines += [
        "Fields: **full** (read in full), **masked** (read masked), **hidden** (not in the "
        "role's schema). Rows: the scopes whose union the role sees (none: no rows). "
        "Operations and input fields: allow or deny.",
        "",
        "## Fields",
    ]
    by_type: dict[str, list[FieldRow]] = {}
    for row in m.fields:
        by_type.setdefault(row.type_name, []).append(row)
    for type_name, rows in by_type.items():
        lines += ["", f"### {type_name}", ""]
        lines += _markdown_table(
            [type_name, *m.roles],
            [[r.field_name, *(r.levels[role].value for role in m.roles)] for r in rows],
        )
    for title, scopes in (("Row scopes", m.scopes), ("Write scopes", m.writes)):
        lines += ["", f"## {title}", ""]
        lines += _markdown_table(
            ["Type", *m.roles],
            [[r.type_name, *(scope_cell(r.scopes[role]) for role in m.roles)] for r in scopes],
        )
    lines += ["", "## Emergency grants (grid levels)", ""]
    lines += _markdown_table(
        ["Grant", *m.roles],
        [["EmergencyGrant", *(scope_cell(m.grant_levels.get(role, ())) for role in m.roles)]],
    )
    for title, header, permissions in (
        ("Operations (call)", "Operation", m.operations),
        ("Input fields (set)", "Input field", m.inputs),
        ("Attributions (on_behalf)", "Input field", m.on_behalf),
    ):
        lines += ["", f"## {title}", ""]
        lines += _markdown_table(
            [header, *m.roles],
            [
                [p.object, *(_permission_cell(role in p.allowed) for role in m.roles)]
                for p in permissions
            ],
        )
    return "\n".join(lines) + "\n"


# --- explaining one decision -------------------------------------------------------------------


class UnknownRequest(ValueError):
    """A role, object or action that the policy or the schema does not know (a typo must be an
    error, never a silent deny)."""


@dataclass(frozen=True)
class MatchedLine:
    """A `p` line that matches the request, and how it reaches the role."""

    rule: Rule
    # The `g` lines from the asked role to the line's subject (empty: the role's own line).
    inherited_through: tuple[Link, ...]

    @property
    def effect(self) -> str:
        return self.rule.effect

    @property
    def line(self) -> int:
        return self.rule.line


@dataclass(frozen=True)
class Decision:
    """One (role, object, action) request: every matching line, the one that decides, and what
    hub (`decide`) and Casbin (`enforce`) answer."""

    role: str
    object: str
    action: str
    matched: tuple[MatchedLine, ...]
    allowed: bool
    casbin_says: bool

    @property
    def winner(self) -> MatchedLine | None:
        """Deny wins over allow; the first line of the winning effect; None: default deny."""
        for effect in (DENY, ALLOW):
            for matched in self.matched:
                if matched.effect == effect:
                    return matched
        return None

    @property
    def agrees(self) -> bool:
        return self.allowed == self.casbin_says


@dataclass(frozen=True)
class Explanation:
    """Why `role` gets what it gets for `object`: one decision, or for a field asked without an
    action its level (read, then read_masked)."""

    role: str
    object: str
    action: str | None
    decisions: tuple[Decision, ...]
    # For a field asked without an action: full, masked or hidden.
    level: Level | None
    # The field's g2 classes (sensitive, mask:<kind>), with their lines.
    classes: tuple[Link, ...] = field(default_factory=tuple)

    @property
    def agrees(self) -> bool:
        return all(d.agrees for d in self.decisions)


def inheritance(policy: Policy, role: str) -> dict[str, tuple[Link, ...]]:
    """Each role `role` inherits (itself included) and the `g` lines that lead there."""
    parents: dict[str, list[Link]] = {}
    for link in policy.links:
        if link.kind == "g":
            parents.setdefault(link.member, []).append(link)
    paths: dict[str, tuple[Link, ...]] = {role: ()}
    queue = [role]
    for name in queue:  # breadth first: the shortest chain to each ancestor
        for link in parents.get(name, ()):
            if link.group not in paths:
                paths[link.group] = (*paths[name], link)
                queue.append(link.group)
    return paths


def decision(
    policy: Policy, role: str, obj: str, action: str, *, enforcer: casbin.Enforcer | None = None
) -> Decision:
    paths = inheritance(policy, role)
    matched = tuple(
        MatchedLine(rule, paths[rule.subject])
        for rule in policy.rules
        if rule.subject in paths and rule.action == action and _object_matches(obj, rule.object)
    )
    casbin_enforcer = enforcer if enforcer is not None else policy.enforcer()
    return Decision(
        role=role,
        object=obj,
        action=action,
        matched=matched,
        allowed=decide(policy, role, obj, action),
        casbin_says=bool(casbin_enforcer.enforce(role, obj, action)),
    )


def object_kind(catalogue: Catalogue, obj: str) -> str | None:
    """`field`, `type` (rows), `operation` or `input` (an input field); None: unknown."""
    if obj in set(catalogue.field_objects()):
        return "field"
    if obj in catalogue.scoped:
        return "type"
    if obj in catalogue.operations:
        return "operation"
    if obj in set(catalogue.input_objects()):
        return "input"
    return None


def _known_objects(catalogue: Catalogue) -> list[str]:
    return [
        *catalogue.field_objects(),
        *catalogue.scoped,
        *catalogue.operations,
        *catalogue.input_objects(),
    ]


def default_actions(catalogue: Catalogue, obj: str) -> tuple[str, ...]:
    """The actions that make sense for `obj`, in the order they are explained."""
    kind = object_kind(catalogue, obj)
    if kind == "field":
        return (READ, READ_MASKED)
    if kind == "type":
        supported = catalogue.scoped[obj]
        return (
            *(ROWS_PREFIX + scope for scope in sorted(supported)),
            *(WRITE_PREFIX + scope for scope in sorted(supported & frozenset(WRITE_SCOPES))),
        )
    if kind == "operation":
        return (CALL,)
    if kind == "input":
        return (SET, ON_BEHALF) if obj in catalogue.attributions else (SET,)
    return ()


def check_request(
    policy: Policy, catalogue: Catalogue, role: str, obj: str, action: str | None
) -> None:
    """Raise UnknownRequest, with suggestions, for a role, object or action that names
    nothing the policy or the schema has."""
    if role not in policy.subjects:
        raise UnknownRequest(
            f"role {role!r} is not in the policy" + _did_you_mean(role, policy.subjects)
        )
    if object_kind(catalogue, obj) is None:
        raise UnknownRequest(
            f"{obj!r} is not a field, a type with rows, an operation or an input field of the "
            "schema" + _did_you_mean(obj, _known_objects(catalogue))
        )
    fitting = default_actions(catalogue, obj)
    if action is not None and action not in fitting:
        raise UnknownRequest(f"{obj} takes the actions {', '.join(fitting)}, not {action!r}")


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def explain(
    policy: Policy,
    role: str,
    obj: str,
    action: str | None = None,
    *,
    catalogue: Catalogue | None = None,
) -> Explanation:
    """Explain (role, obj, action). Without an action, `obj` is taken for a field and its
    level is explained (read, then read_masked). With a catalogue the request is checked first
    (UnknownRequest), and an action left out is the one the object takes: an operation's call,
    an input field's set, every scope of a type."""
    if catalogue is not None:
        check_request(policy, catalogue, role, obj, action)
        actions = (action,) if action else default_actions(catalogue, obj)
    else:
        actions = (action,) if action else (READ, READ_MASKED)
    enforcer = policy.enforcer()
    decisions = tuple(decision(policy, role, obj, a, enforcer=enforcer) for a in actions)
    level = None
    if action is None and actions == (READ, READ_MASKED):
        level = _level(decisions[0].allowed, decisions[1].allowed)
    classes = tuple(link for link in policy.links if link.kind == "g2" and link.member == obj)
    return Explanation(role, obj, action, decisions, level, classes)


def _level(read: bool, read_masked: bool) -> Level:
    # As hub.authz.profile.field_level: read wins; read_masked only where read is not allowed.
    if read:
        return Level.FULL
    return Level.MASKED if read_masked else Level.HIDDEN


# --- the difference between two policies -------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    object: str
    old: Level
    new: Level
    # Mask kinds of masked levels (None when not masked).
    old_mask: str | None = None
    new_mask: str | None = None

    @property
    def kind(self) -> str:
        """gained (hidden before), lost (hidden now) or changed (full <-> masked, mask kind)."""
        if self.old is Level.HIDDEN:
            return "gained"
        if self.new is Level.HIDDEN:
            return "lost"
        return "changed"


@dataclass(frozen=True)
class ScopeChange:
    type_name: str
    gained: frozenset[str]
    lost: frozenset[str]


@dataclass(frozen=True)
class RoleDiff:
    role: str
    status: str  # "added" | "removed" | "changed"
    fields: tuple[FieldChange, ...] = ()
    scopes: tuple[ScopeChange, ...] = ()
    operations_gained: tuple[str, ...] = ()
    operations_lost: tuple[str, ...] = ()
    inputs_gained: tuple[str, ...] = ()
    inputs_lost: tuple[str, ...] = ()
    # Visible fields that become, or stop being, sensitive (purpose required, audited).
    sensitive_gained: tuple[str, ...] = ()
    sensitive_lost: tuple[str, ...] = ()

    def fields_of(self, kind: str) -> tuple[FieldChange, ...]:
        return tuple(change for change in self.fields if change.kind == kind)

    @property
    def empty(self) -> bool:
        return not (
            self.fields
            or self.scopes
            or self.operations_gained
            or self.operations_lost
            or self.inputs_gained
            or self.inputs_lost
            or self.sensitive_gained
            or self.sensitive_lost
        )


@dataclass(frozen=True)
class PolicyDiff:
    # Only roles whose access changes, added and removed roles always.
    roles: tuple[RoleDiff, ...]
    lines_removed: tuple[str, ...]
    lines_added: tuple[str, ...]

    @property
    def added_roles(self) -> tuple[str, ...]:
        return tuple(r.role for r in self.roles if r.status == "added")

    @property
    def removed_roles(self) -> tuple[str, ...]:
        return tuple(r.role for r in self.roles if r.status == "removed")

    @property
    def empty(self) -> bool:
        return not self.roles


def _empty_profile(role: str) -> Profile:
    return Profile(
        role=role,
        version=0,
        fields={},
        scopes={},
        operations=frozenset(),
        inputs=frozenset(),
        sensitive=frozenset(),
    )


def diff(old_policy: Policy, new_policy: Policy, catalogue: Catalogue) -> PolicyDiff:
    """What changes for each role between two policies, in schema terms. Raises PolicyError
    (saying which side, naming the line) if either side does not load against the catalogue."""
    return diff_profiles(
        old_policy,
        new_policy,
        compile_side("old", old_policy, catalogue),
        compile_side("new", new_policy, catalogue),
        catalogue,
    )


def compile_side(side: str, policy: Policy, catalogue: Catalogue) -> dict[str, Profile]:
    try:
        return compile_profiles(policy, catalogue)
    except PolicyError as exc:
        raise PolicyError(exc.reason, line=exc.line, source=f"{side} policy") from exc


def diff_profiles(
    old_policy: Policy,
    new_policy: Policy,
    old_profiles: Mapping[str, Profile],
    new_profiles: Mapping[str, Profile],
    catalogue: Catalogue,
) -> PolicyDiff:
    """`diff` over profiles compiled already (the caller may need them for the roles'
    schemas)."""
    roles = [*old_profiles, *(r for r in new_profiles if r not in old_profiles)]
    diffs = []
    for role in roles:
        if role not in old_profiles:
            status = "added"
        elif role not in new_profiles:
            status = "removed"
        else:
            status = "changed"
        role_diff = role_changes(
            old_profiles.get(role) or _empty_profile(role),
            new_profiles.get(role) or _empty_profile(role),
            catalogue,
            status=status,
        )
        if status != "changed" or not role_diff.empty:
            diffs.append(role_diff)
    old_lines, new_lines = _lines(old_policy), _lines(new_policy)
    return PolicyDiff(
        roles=tuple(diffs),
        lines_removed=tuple(sorted(old_lines - new_lines)),
        lines_added=tuple(sorted(new_lines - old_lines)),
    )


def _lines(policy: Policy) -> set[str]:
    return {rule.csv() for rule in policy.rules} | {link.csv() for link in policy.links}


def role_changes(
    old: Profile, new: Profile, catalogue: Catalogue, *, status: str = "changed"
) -> RoleDiff:
    fields = tuple(
        FieldChange(
            name, old.level(name), new.level(name), old.masks.get(name), new.masks.get(name)
        )
        for name in catalogue.field_objects()
        if (old.level(name), old.masks.get(name)) != (new.level(name), new.masks.get(name))
    )
    scopes = []
    for type_name in catalogue.scoped:
        before = old.scopes.get(type_name, frozenset())
        after = new.scopes.get(type_name, frozenset())
        if before != after:
            scopes.append(ScopeChange(type_name, after - before, before - after))
    # Only fields visible on both sides: a field gained or lost says so already.
    both = set(old.fields) & set(new.fields)
    return RoleDiff(
        role=new.role,
        status=status,
        fields=fields,
        scopes=tuple(scopes),
        operations_gained=_ordered(new.operations - old.operations, catalogue.operations),
        operations_lost=_ordered(old.operations - new.operations, catalogue.operations),
        inputs_gained=_ordered(new.inputs - old.inputs, catalogue.input_objects()),
        inputs_lost=_ordered(old.inputs - new.inputs, catalogue.input_objects()),
        sensitive_gained=_ordered(
            (new.sensitive - old.sensitive) & both, catalogue.field_objects()
        ),
        sensitive_lost=_ordered((old.sensitive - new.sensitive) & both, catalogue.field_objects()),
    )


def _ordered(names: Iterable[str], order: Iterable[str]) -> tuple[str, ...]:
    wanted = set(names)
    return tuple(name for name in order if name in wanted)


# --- expectations that name nothing ----------------------------------------------------------

_KIND_OF_ACTION = {READ: "field", CALL: "operation", SET: "input", ON_BEHALF: "input"}


def expectation_problems(
    expectations: Iterable[Expectation], catalogue: Catalogue
) -> list[tuple[Expectation, str]]:
    """Expectations whose object is not in the schema, or does not take the action, and why.
    Checked against a policy, such a line says nothing reliable: nothing names the object
    (a typo then passes as deny), or a `Type.*` line covers the typo too."""
    problems = []
    for e in expectations:
        kind = object_kind(catalogue, e.object)
        if e.role == CLASS_ROLE:
            # g2 lines pin a field's class: the object must be a field, the action a class.
            if kind != "field":
                problems.append((e, f"{e.object} is not a field of the schema"))
            elif e.action != SENSITIVE and not e.action.startswith(MASK_PREFIX):
                problems.append((e, "a g2 expectation names sensitive or mask:<kind>"))
            continue
        wanted = (
            "type" if e.action.startswith(TYPE_ACTION_PREFIXES) else _KIND_OF_ACTION.get(e.action)
        )
        if kind is None:
            problems.append(
                (
                    e,
                    f"{e.object} is not in the schema"
                    + _did_you_mean(e.object, _known_objects(catalogue)),
                )
            )
        elif kind != wanted or e.action not in default_actions(catalogue, e.object):
            fitting = ", ".join(default_actions(catalogue, e.object))
            problems.append((e, f"{e.object} takes {fitting}, not {e.action}"))
    return problems
