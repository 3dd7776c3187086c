"""What a stored policy version means, for the auditors' console: the matrix, each role's SDL,
the changes between two versions, and whether a version could still be restored.

The console reads the policy texts through GraphQL as the signed-in auditor (policyVersions);
this module only interprets them, with the functions `gridhub policy` uses (hub.authz.report
for the matrix and the role changes, hub.api.roles for a role's schema), against the worker's
own full schema. The console and the CLI therefore cannot disagree. Results are cached by the
policy text: a stored version never changes.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache

from strawberry import Schema

from hub.api.registry import SchemaRegistry, catalogue_for
from hub.api.roles import role_schema
from hub.authz import expectations, report
from hub.authz.policy import EXPECTATIONS_FILE, SENSITIVE, Policy, PolicyError, read_policy_file
from hub.authz.profile import Catalogue, Profile, compile_profiles


@dataclass(frozen=True)
class Analysis:
    """One policy text, parsed and compiled into every role's profile."""

    policy: Policy
    profiles: dict[str, Profile]

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.profiles)

    def sensitive(self, name: str) -> bool:
        return SENSITIVE in self.policy.classes.get(name, frozenset())


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff; `kind` is added, removed, hunk, header or context. A hunk
    line names the SDL definitions its changed lines are in, e.g. ("type Resident",)."""

    kind: str
    text: str
    where: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaView:
    """What /audit/schema shows: the roles of either version, what changed between them (None
    without an older version), and for a chosen role its SDL and its diff."""

    roles: tuple[str, ...]
    changes: report.PolicyDiff | None
    sdl: str | None
    diff: list[DiffLine] | None


class PolicyTextError(ValueError):
    """A stored policy text that no longer loads against this worker's schema."""


class PolicyLens:
    """Interprets policy texts against one worker's full schema and model."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._full = registry.full
        self._catalogue = registry.catalogue
        self._model_text = registry.model_text
        self._expectations_path = registry.settings.policy_dir / EXPECTATIONS_FILE

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def analyse(self, text: str) -> Analysis:
        return _analyse(self._full, self._model_text, text)

    def matrix(self, text: str) -> report.Matrix:
        return _matrix(self._full, self._model_text, text)

    def sdl(self, text: str, role: str) -> str:
        """The role's SDL under `text`; empty when the policy does not name the role."""
        return _sdl(self._full, self._model_text, text, role)

    def sdl_diff(
        self, old_text: str, new_text: str, role: str, *, old_label: str, new_label: str
    ) -> list[DiffLine]:
        old = self.sdl(old_text, role)
        new = self.sdl(new_text, role)
        return sdl_diff(old.splitlines(), new.splitlines(), old_label, new_label)

    def changes(self, old_text: str, new_text: str) -> report.PolicyDiff:
        old = self.analyse(old_text)
        new = self.analyse(new_text)
        return report.diff_profiles(
            old.policy, new.policy, old.profiles, new.profiles, self._catalogue
        )

    def schema_view(
        self,
        new_text: str,
        old_text: str | None,
        role: str | None,
        *,
        labels: tuple[str, str] = ("old", "new"),
    ) -> SchemaView:
        """Everything /audit/schema needs; `role` is None for the summary of all roles."""
        new_roles = self.analyse(new_text).roles
        old_roles = self.analyse(old_text).roles if old_text is not None else ()
        roles = (*new_roles, *(r for r in old_roles if r not in new_roles))
        changes = self.changes(old_text, new_text) if old_text is not None else None
        if role is None or role not in roles:
            return SchemaView(roles, changes, None, None)
        diff = None
        if old_text is not None:
            diff = self.sdl_diff(old_text, new_text, role, old_label=labels[0], new_label=labels[1])
        return SchemaView(roles, changes, self.sdl(new_text, role), diff)

    def restore_refusals(self, texts: list[str | None]) -> list[str | None]:
        """`restore_refusal` of each text; None stands for a version not to check."""
        return [None if text is None else self.restore_refusal(text) for text in texts]

    def restore_refusal(self, text: str) -> str | None:
        """Why rolling back to `text` would be refused now (it no longer loads against the
        schema, or breaks the auditors' current expectations), or None when it would pass.
        The same checks as rollbackPolicy, short of building every role's schema."""
        try:
            expected = read_policy_file(self._expectations_path)
        except OSError as exc:
            return f"expectations not readable: {exc}"
        return _restore_refusal(self._full, self._model_text, text, expected)


def sdl_diff(old: list[str], new: list[str], old_label: str, new_label: str) -> list[DiffLine]:
    """A unified diff of two SDL texts (as difflib.unified_diff writes it, three lines of
    context), each hunk naming the definitions it changes: a hunk of field lines alone does not
    say which type they belong to."""
    groups = list(difflib.SequenceMatcher(None, old, new, autojunk=False).get_grouped_opcodes(3))
    if not groups:
        return []
    old_owners, new_owners = definitions(old), definitions(new)
    lines = [DiffLine("header", f"--- {old_label}"), DiffLine("header", f"+++ {new_label}")]
    for group in groups:
        body: list[DiffLine] = []
        owners: list[str | None] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                body += [DiffLine("context", f" {line}") for line in old[i1:i2]]
                continue
            body += [DiffLine("removed", f"-{line}") for line in old[i1:i2]]
            body += [DiffLine("added", f"+{line}") for line in new[j1:j2]]
            owners += [*old_owners[i1:i2], *new_owners[j1:j2]]
        first, last = group[0], group[-1]
        ranges = f"-{_range(first[1], last[2])} +{_range(first[3], last[4])}"
        where = tuple(dict.fromkeys(owner for owner in owners if owner))  # ordered, unique
        lines.append(DiffLine("hunk", f"@@ {ranges} @@", where))
        lines += body
    return lines


def _range(start: int, stop: int) -> str:
    # difflib's own notation: "start,length", 1-based; an empty range names the line before.
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


# A definition at the start of a line of SDL, as graphql-core prints it.
_DEFINITION = re.compile(
    r"^(?:extend\s+)?(schema|type|input|enum|interface|union|scalar|directive)\b\s*@?(\w*)"
)


def definitions(lines: list[str]) -> list[str | None]:
    """The definition each SDL line belongs to ("type Resident", "enum NoticeStatus"): a
    block's header, members and closing brace; a top-level description, the definition it
    describes. None for blank lines between definitions."""
    owners: list[str | None] = [None] * len(lines)
    current: str | None = None
    waiting: list[int] = []  # description lines before their definition
    for index, line in enumerate(lines):
        if current is not None:
            owners[index] = current
            if line.startswith("}"):
                current = None
            continue
        found = _DEFINITION.match(line)
        if found is None:
            if line.strip():
                waiting.append(index)
            continue
        name = f"{found[1]} {found[2]}".strip()
        for earlier in [*waiting, index]:
            owners[earlier] = name
        waiting = []
        if line.rstrip().endswith("{"):
            current = name
    return owners


# Module-level caches keyed by everything the answer depends on: the full schema (one object
# per worker, hashed by identity; its catalogue is cached by hub.api.registry), the model and
# the policy text.


@lru_cache(maxsize=8)
def _analyse(full: Schema, model_text: str, text: str) -> Analysis:
    try:
        policy = Policy.parse(model_text, text, source="policy version")
        return Analysis(policy, compile_profiles(policy, catalogue_for(full)))
    except PolicyError as exc:
        raise PolicyTextError(str(exc)) from exc


@lru_cache(maxsize=8)
def _matrix(full: Schema, model_text: str, text: str) -> report.Matrix:
    try:
        return report.matrix(_analyse(full, model_text, text).policy, catalogue_for(full))
    except PolicyError as exc:
        raise PolicyTextError(str(exc)) from exc


@lru_cache(maxsize=64)
def _sdl(full: Schema, model_text: str, text: str, role: str) -> str:
    profiles = _analyse(full, model_text, text).profiles
    if role not in profiles:
        return ""
    try:
        return role_schema(full, profiles[role]).as_str() + "\n"
    except ValueError as exc:  # a role whose schema cannot be built
        raise PolicyTextError(str(exc)) from exc


@lru_cache(maxsize=256)
def _restore_refusal(full: Schema, model_text: str, text: str, expected: str) -> str | None:
    try:
        policy = _analyse(full, model_text, text).policy
        failures = expectations.check(policy, expectations.parse(expected))
    except (PolicyTextError, PolicyError) as exc:
        return str(exc)
    if failures:
        return "; ".join(failure.describe() for failure in failures[:3])
    return None
