"""Compile the policy into one profile per role: what the role's schema shows, masks and scopes.

Profiles are compiled when a policy loads or changes, never per request: `enforce()` runs the
matcher against every line (about 0.4 ms a call here), which per field per row would cost more
than the request. `decide` below evaluates the model's matcher and effect directly over the
parsed lines; tests/test_policy_compile.py checks it against Casbin's own `enforce()` for every
(subject, object, action) the schema has, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from hub.authz import masking
from hub.authz.policy import (
    CALL,
    GRANT_PREFIX,
    MASK_PREFIX,
    ON_BEHALF,
    READ,
    READ_MASKED,
    ROWS_PREFIX,
    SCOPES,
    SENSITIVE,
    SET,
    WRITE_PREFIX,
    WRITE_SCOPES,
    Policy,
    PolicyError,
)

# What a masked value hides that another field shows in full: a policy whose role reads the
# first masked and any of the others in full would give the masked part away.
MASKED_TOGETHER: dict[str, tuple[str, ...]] = {
    # 110105********1234: the eight hidden digits are the birth date (YYYYMMDD).
    "Resident.idNumber": ("Resident.birthDate",),
}


# Fields that tell what a masked field hides: readable only by a role that reads the other in
# full. A pending registration (Resident.duplicateOf) says that its ID number is registered to
# someone else, which is exactly the probe the mask must defeat.
NEEDS_FULL: dict[str, tuple[str, ...]] = {
    "Resident.duplicateOf": ("Resident.idNumber",),
}


class Level(StrEnum):
    FULL = "full"
    MASKED = "masked"
    HIDDEN = "hidden"


@dataclass(frozen=True)
class Catalogue:
    """Every object the policy can speak of, read off the full schema (hub.api.roles)."""

    # Output types the policy governs, with their fields (GraphQL names).
    types: Mapping[str, tuple[str, ...]]
    # Fields whose values are scalars (strings, dates...): the only ones that can be masked.
    scalars: frozenset[str]
    # Input types and their fields.
    inputs: Mapping[str, tuple[str, ...]]
    # "Mutation.acceptEvent", "Subscription.eventChanged".
    operations: tuple[str, ...]
    # Types that have rows of their own, and the scopes each supports.
    scoped: Mapping[str, frozenset[str]]
    # "Mutation.acceptEvent" -> "Event": the type whose rows each mutation changes or creates,
    # declared next to the mutation (hub.api.scope.writes).
    writes: Mapping[str, str] = field(default_factory=dict)
    # Input fields that attribute a row to someone (a notice's issuing department, an
    # event's reporter): the caller's own, unless the policy grants `on_behalf`.
    attributions: frozenset[str] = frozenset()

    def field_objects(self) -> Iterable[str]:
        for type_name, names in self.types.items():
            for name in names:
                yield f"{type_name}.{name}"

    def input_objects(self) -> Iterable[str]:
        for type_name, names in self.inputs.items():
            for name in names:
                yield f"{type_name}.{name}"


@dataclass(frozen=True)
class Profile:
    """What one role may see and do, under one policy version."""

    role: str
    version: int
    # Every visible field and its level; a field not here is hidden.
    fields: Mapping[str, Level]
    # Types with rows of their own -> the scopes whose union the role sees (empty: no rows).
    scopes: Mapping[str, frozenset[str]]
    operations: frozenset[str]
    inputs: frozenset[str]
    # Visible fields that need a stated purpose and are audited when read.
    sensitive: frozenset[str]
    # Masked fields -> their mask kind.
    masks: Mapping[str, str] = field(default_factory=dict)
    # Types -> the scopes whose union the role may change or create rows in (`write:<scope>`).
    write_scopes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Attribution inputs the role may set to someone other than itself (`on_behalf`).
    on_behalf: frozenset[str] = frozenset()
    # Grid levels the role may open an emergency grant on (`EmergencyGrant, grant:<level>`).
    grant_levels: frozenset[str] = frozenset()

    def level(self, name: str) -> Level:
        return self.fields.get(name, Level.HIDDEN)

    @cached_property
    def visible_types(self) -> frozenset[str]:
        """The types with at least one visible field (computed once: Access.rows asks per
        statement)."""
        return frozenset(name.partition(".")[0] for name in self.fields)

    def sees_type(self, type_name: str) -> bool:
        return type_name in self.visible_types


def decide(policy: Policy, subject: str, obj: str, action: str) -> bool:
    """Casbin's answer for (subject, obj, action) under GridHub's model: some line of the
    subject or a role it inherits matches and allows, and none matches and denies."""
    allowed = False
    roles = policy.ancestors.get(subject, (subject,))
    for rule in policy.rules:
        if rule.action != action or rule.subject not in roles:
            continue
        if not _object_matches(obj, rule.object):
            continue
        if rule.effect == "deny":
            return False
        allowed = True
    return allowed


def _object_matches(obj: str, pattern: str) -> bool:
    # keyMatch as hub.authz.policy allows it: exact, or `Type.*` for every `Type.<field>`.
    if pattern.endswith(".*"):
        return obj.startswith(pattern[:-1])
    return obj == pattern


def field_level(policy: Policy, subject: str, name: str) -> Level:
    if decide(policy, subject, name, READ):
        return Level.FULL
    if decide(policy, subject, name, READ_MASKED):
        return Level.MASKED
    return Level.HIDDEN


def compile_profiles(
    policy: Policy, catalogue: Catalogue, *, version: int = 0
) -> dict[str, Profile]:
    """One profile per subject the policy names, after checking every line against the
    catalogue. Raises PolicyError (with the line) for anything that names nothing."""
    check_objects(policy, catalogue)
    return {
        subject: compile_profile(policy, catalogue, subject, version=version)
        for subject in policy.subjects
    }


def compile_profile(
    policy: Policy, catalogue: Catalogue, subject: str, *, version: int = 0
) -> Profile:
    fields: dict[str, Level] = {}
    masks: dict[str, str] = {}
    for name in catalogue.field_objects():
        level = field_level(policy, subject, name)
        if level is Level.HIDDEN:
            continue
        fields[name] = level
        if level is Level.MASKED:
            masks[name] = _mask_kind(policy, catalogue, name)
    for masked, revealing in MASKED_TOGETHER.items():
        if fields.get(masked) is not Level.MASKED:
            continue
        for other in revealing:
            if fields.get(other) is Level.FULL:
                raise PolicyError(
                    f"{subject} reads {masked} masked but {other} in full, which shows what the "
                    f"mask hides: mask or hide {other} for {subject} too"
                )
    for telling, needed in NEEDS_FULL.items():
        if telling in fields and any(fields.get(n) is not Level.FULL for n in needed):
            raise PolicyError(
                f"{subject} reads {telling}, which gives away what {', '.join(needed)} "
                f"holds, without reading that in full: deny {telling} for {subject}"
            )
    scopes = _scopes(policy, catalogue, subject, ROWS_PREFIX, SCOPES)
    write_scopes = _scopes(policy, catalogue, subject, WRITE_PREFIX, WRITE_SCOPES)
    operations = frozenset(o for o in catalogue.operations if decide(policy, subject, o, CALL))
    for operation in sorted(operations):
        written = catalogue.writes.get(operation)
        if written is not None and not write_scopes.get(written):
            raise PolicyError(
                f"{subject} may call {operation}, which changes {written} rows, but has no "
                f"write scope for them (add `p, {subject}, {written}, write:<scope>, allow`)"
            )
    inputs = frozenset(i for i in catalogue.input_objects() if decide(policy, subject, i, SET))
    return Profile(
        role=subject,
        version=version,
        fields=fields,
        scopes=scopes,
        operations=operations,
        inputs=inputs,
        sensitive=frozenset(n for n in fields if SENSITIVE in policy.classes.get(n, ())),
        masks=masks,
        write_scopes=write_scopes,
        on_behalf=frozenset(
            a for a in catalogue.attributions if decide(policy, subject, a, ON_BEHALF)
        ),
        grant_levels=frozenset(
            rule.action[len(GRANT_PREFIX) :]
            for rule in policy.rules
            if rule.action.startswith(GRANT_PREFIX)
            and decide(policy, subject, "EmergencyGrant", rule.action)
        ),
    )


def _scopes(
    policy: Policy, catalogue: Catalogue, subject: str, prefix: str, known: Iterable[str]
) -> dict[str, frozenset[str]]:
    """Per type with rows of its own, the scopes (of `known`, under `prefix`) the subject has."""
    return {
        type_name: frozenset(
            scope
            for scope in known
            if scope in supported and decide(policy, subject, type_name, prefix + scope)
        )
        for type_name, supported in catalogue.scoped.items()
    }


def _mask_kind(policy: Policy, catalogue: Catalogue, name: str) -> str:
    kinds = [
        c[len(MASK_PREFIX) :] for c in policy.classes.get(name, ()) if c.startswith(MASK_PREFIX)
    ]
    if name not in catalogue.scalars:
        raise PolicyError(f"{name} is not a scalar value and cannot be masked")
    if len(kinds) != 1 or kinds[0] not in masking.KINDS:
        raise PolicyError(
            f"{name} is read masked but has no single known mask kind "
            f"(add `g2, {name}, mask:<{'|'.join(masking.KINDS)}>`)"
        )
    return kinds[0]


def check_objects(policy: Policy, catalogue: Catalogue) -> None:
    """Every line must name something that exists, with an action that fits it."""
    fields = set(catalogue.field_objects())
    inputs = set(catalogue.input_objects())
    operations = set(catalogue.operations)
    for rule in policy.rules:
        obj, action = rule.object, rule.action
        if action.startswith(GRANT_PREFIX):
            if obj != "EmergencyGrant":
                raise PolicyError(
                    f"grant levels bound emergency grants: {action} takes EmergencyGrant",
                    line=rule.line,
                )
            continue
        for prefix, vocabulary in ((ROWS_PREFIX, SCOPES), (WRITE_PREFIX, WRITE_SCOPES)):
            if action.startswith(prefix):
                _check_scope(catalogue, obj, action[len(prefix) :], vocabulary, rule.line)
                break
        else:
            _check_member(catalogue, obj, action, rule.line, fields, inputs, operations)
    for link in policy.links:
        if link.kind == "g2" and link.member not in fields:
            raise PolicyError(f"g2 classes {link.member}, which does not exist", line=link.line)


def _check_scope(
    catalogue: Catalogue, obj: str, scope: str, vocabulary: Iterable[str], line: int
) -> None:
    supported = catalogue.scoped.get(obj)
    if supported is None:
        raise PolicyError(f"{obj} has no rows of its own to scope", line=line)
    usable = supported & frozenset(vocabulary)
    if scope not in usable:
        raise PolicyError(
            f"{obj} supports the scopes {', '.join(sorted(usable))}, not {scope}", line=line
        )


def _check_member(
    catalogue: Catalogue,
    obj: str,
    action: str,
    line: int,
    fields: set[str],
    inputs: set[str],
    operations: set[str],
) -> None:
    type_name, _, member = obj.partition(".")
    if action == ON_BEHALF:
        if obj not in catalogue.attributions:
            raise PolicyError(
                f"on_behalf names {obj}, which is not an attribution input "
                f"(one of {', '.join(sorted(catalogue.attributions))})",
                line=line,
            )
        return
    names: Mapping[str, tuple[str, ...]]
    if action in (READ, READ_MASKED):
        known, names = fields, catalogue.types
    elif action == SET:
        known, names = inputs, catalogue.inputs
    else:  # CALL
        known, names = operations, {}
    if member == "*" and action != CALL:
        if type_name not in names:
            raise PolicyError(f"{action} names an unknown type {type_name}", line=line)
    elif obj not in known:
        raise PolicyError(f"{action} names {obj}, which does not exist", line=line)


ALL_SCOPES = frozenset(SCOPES)
