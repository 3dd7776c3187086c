"""Every line of the default policy is exercised, and the matcher does what the policy means.

For each `p` line this finds, from the policy alone:

- a decisive case: a request the line matches whose decision is the line's effect, and which
  the decision would change without the line (so the line is neither dead nor redundant);
- a near miss: the same request changed minimally (the object a character off, a type sharing
  the prefix, the bare type, another action, a role that does not inherit the line) that the
  line does not match and that nothing else allows.

Both are computed by `reference` below, a plain reading of README's rules (equal objects, or
`Type.*` for any one field of `Type`), and then asked of Casbin's own `enforce()`: if Casbin's
keyMatch ever matched more or less than the documented rule, the two would disagree here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import casbin
import pytest

from hub.api.roles import catalogue_of
from hub.api.schema import build_schema
from hub.authz.policy import ACTIONS, MODEL_FILE, POLICY_FILE, Policy, PolicyError, Rule
from hub.authz.profile import decide
from hub.config import DEFAULT_POLICY_DIR

POLICY = Policy.from_directory(DEFAULT_POLICY_DIR)
ENFORCER = POLICY.enforcer()
CATALOGUE = catalogue_of(build_schema()._schema)
NOBODY = "nobody"
GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


# --- the documented rule, written independently of hub.authz ---------------------------------


def inherited(subject: str) -> set[str]:
    """The subject and every role it inherits through `g` lines."""
    parents: dict[str, set[str]] = {}
    for link in POLICY.links:
        if link.kind == "g":
            parents.setdefault(link.member, set()).add(link.group)
    found, todo = {subject}, [subject]
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found


def matches(pattern: str, obj: str) -> bool:
    """README: an object is the line's object, or the line says `Type.*` and the object is one
    field of `Type` (a GraphQL name: no dot, not empty)."""
    if pattern.endswith(".*"):
        type_name, dot, field = obj.partition(".")
        return (
            type_name == pattern[:-2] and dot == "." and GRAPHQL_NAME.fullmatch(field) is not None
        )
    return obj == pattern


def lines_matching(subject: str, obj: str, action: str) -> list[Rule]:
    roles = inherited(subject)
    return [
        r
        for r in POLICY.rules
        if r.subject in roles and r.action == action and matches(r.object, obj)
    ]


def reference(subject: str, obj: str, action: str, *, without: Rule | None = None) -> bool:
    matched = [r for r in lines_matching(subject, obj, action) if r is not without]
    effects = {r.effect for r in matched}
    return "allow" in effects and "deny" not in effects


@cache
def enforcer_without(rule: Rule) -> casbin.Enforcer:
    kept = [line for n, line in enumerate(POLICY.text.splitlines(), start=1) if n != rule.line]
    return POLICY.with_text("\n".join(kept)).enforcer()


# --- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    subject: str
    object: str
    action: str
    kind: str = "decisive"

    def enforce(self, enforcer: casbin.Enforcer = ENFORCER) -> bool:
        return bool(enforcer.enforce(self.subject, self.object, self.action))


def concrete_objects(rule: Rule) -> list[str]:
    """The real objects a line speaks of: every field of the type for `Type.*`."""
    if not rule.object.endswith(".*"):
        return [rule.object]
    type_name = rule.object[:-2]
    names = (
        CATALOGUE.inputs.get(type_name, ()) if rule.action == "set" else CATALOGUE.types[type_name]
    )
    return [f"{type_name}.{name}" for name in names]


def decisive_case(rule: Rule) -> Case | None:
    subjects = [s for s in POLICY.subjects if rule.subject in inherited(s)]
    subjects.sort(key=lambda s: s != rule.subject)  # the line's own subject first
    for subject in subjects:
        for obj in concrete_objects(rule):
            decision = reference(subject, obj, rule.action)
            if decision == (rule.effect == "allow") and decision != reference(
                subject, obj, rule.action, without=rule
            ):
                return Case(subject, obj, rule.action)
    return None


def object_variants(obj: str) -> Iterator[tuple[str, str]]:
    type_name, dot, field = obj.partition(".")
    if dot:
        yield "field one character longer", f"{obj}x"
        if len(field) > 1:
            yield "field one character shorter", obj[:-1]
        yield "type sharing the prefix", f"{type_name}X.{field}"
        yield "type one character shorter", f"{type_name[:-1]}.{field}"
        yield "type in lower case", f"{type_name[0].lower()}{type_name[1:]}.{field}"
        yield "the bare type", type_name
    else:
        yield "type sharing the prefix", f"{obj}X"
        yield "type one character shorter", obj[:-1]
        yield "type in lower case", obj.lower()
        yield "a field of the type", f"{obj}.id"


def near_misses(rule: Rule, case: Case) -> Iterator[Case]:
    """Minimal changes of `case` that `rule` does not match, object changes first."""
    for kind, obj in object_variants(case.object):
        yield Case(case.subject, obj, case.action, kind)
    for action in sorted(ACTIONS - {case.action}):
        yield Case(case.subject, case.object, action, "another action")
    for subject in [*POLICY.subjects, NOBODY]:
        if rule.subject not in inherited(subject):
            yield Case(subject, case.object, case.action, "a role not inheriting the line")


def near_miss_deny(rule: Rule, case: Case) -> Case | None:
    for candidate in near_misses(rule, case):
        matched = lines_matching(candidate.subject, candidate.object, candidate.action)
        if rule not in matched and not reference(
            candidate.subject, candidate.object, candidate.action
        ):
            return candidate
    return None


RULES = POLICY.rules


def rule_id(rule: Rule) -> str:
    return f"{rule.line}:{rule.subject},{rule.object},{rule.action},{rule.effect}"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_every_line_decides_some_request(rule: Rule) -> None:
    case = decisive_case(rule)
    assert case is not None, f"line {rule.line} never decides anything (dead or redundant)"
    expected = rule.effect == "allow"
    assert case.enforce() is expected, case
    assert case.enforce(enforcer_without(rule)) is not expected, case
    assert decide(POLICY, case.subject, case.object, case.action) is expected


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_every_line_has_a_near_miss_that_is_denied(rule: Rule) -> None:
    case = decisive_case(rule)
    assert case is not None
    miss = near_miss_deny(rule, case)
    assert miss is not None, f"no near miss of line {rule.line} is denied"
    assert miss.enforce() is False, miss
    assert decide(POLICY, miss.subject, miss.object, miss.action) is False, miss


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_casbin_agrees_with_the_documented_rule_on_every_near_miss(rule: Rule) -> None:
    """Not only the chosen near miss: every variant of the object, and every other action,
    is decided by Casbin exactly as README's rule decides it."""
    case = decisive_case(rule)
    assert case is not None
    for candidate in near_misses(rule, case):
        if candidate.kind == "a role not inheriting the line":
            continue  # many roles: the chosen near miss covers them
        assert candidate.enforce() is reference(
            candidate.subject, candidate.object, candidate.action
        ), candidate


def test_every_kind_of_near_miss_is_exercised() -> None:
    kinds: Counter[str] = Counter()
    for rule in RULES:
        case = decisive_case(rule)
        assert case is not None
        miss = near_miss_deny(rule, case)
        assert miss is not None
        kinds[miss.kind] += 1
    # Most lines miss on the object itself: the matcher is what these tests are about.
    assert kinds["field one character longer"] + kinds["type sharing the prefix"] > len(RULES) / 2
    assert set(kinds) >= {"field one character longer", "type sharing the prefix"}


def test_the_policy_has_lines_of_every_kind() -> None:
    """The coverage above means something only if the policy uses every construct."""
    assert any(r.object.endswith(".*") for r in RULES)
    assert any(r.effect == "deny" for r in RULES)
    assert any(r.action.startswith("rows:") for r in RULES)
    assert {r.action for r in RULES} >= {"read", "read_masked", "call", "set"}
    assert any(link.kind == "g" for link in POLICY.links)


# --- keyMatch with `Type.*`, the only pattern GridHub uses -----------------------------------


def test_the_model_uses_key_match_only() -> None:
    text = (DEFAULT_POLICY_DIR / MODEL_FILE).read_text(encoding="utf-8")
    (matcher,) = [line for line in text.splitlines() if line.startswith("m = ")]
    assert matcher == "m = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && r.act == p.act"
    effect = [line for line in text.splitlines() if line.startswith("e = ")]
    assert effect == ["e = some(where (p.eft == allow)) && !some(where (p.eft == deny))"]


@pytest.mark.parametrize(
    ("subject", "obj", "action", "allowed"),
    [
        # `p, grid_worker, Resident.*, read, allow`
        ("grid_worker", "Resident.name", "read", True),
        ("grid_worker", "ResidentTag.tag", "read", False),  # a prefix, but not `Resident.`
        ("grid_worker", "ResidentX.name", "read", False),
        ("grid_worker", "Residents.name", "read", False),
        ("grid_worker", "resident.name", "read", False),  # case matters
        ("grid_worker", "RESIDENT.name", "read", False),
        ("grid_worker", "Resident", "read", False),  # the bare type is not a field of it
        ("grid_worker", "Residen.name", "read", False),
        ("grid_worker", "XResident.name", "read", False),  # keyMatch is anchored at the start
        # `p, grid_worker, Resident.idNumber, read, deny`: exact, no prefix
        ("grid_worker", "Resident.idNumber", "read", False),
        ("grid_worker", "Resident.idNumberX", "read", True),  # Resident.* allows; no such field
        ("grid_worker", "Resident.idNumber", "read_masked", True),
        # `p, public, Notice.*, read, allow` and `p, public, Notice, rows:published, allow`
        ("public", "Notice.title", "read", True),
        ("public", "NoticeX.title", "read", False),
        ("public", "Notice", "rows:published", True),
        ("public", "Notice", "rows:all", False),
        ("public", "NoticeX", "rows:published", False),
        ("public", "Notice.title", "rows:published", False),
        # `p, grid_worker, ResidentInput.*, set, allow` is no `read` of anything
        ("grid_worker", "ResidentInput.name", "read", False),
        ("grid_worker", "ResidentInputX.name", "set", False),
        # Operations are exact.
        ("grid_worker", "Mutation.acceptEvent", "call", True),
        ("grid_worker", "Mutation.acceptEventX", "call", False),
        ("grid_worker", "Mutation.acceptEven", "call", False),
        ("grid_worker", "Mutation.*", "call", False),
        ("grid_worker", "Mutation", "call", False),
        # Inheritance goes one way.
        ("community_admin", "Resident.name", "read", True),
        ("grid_worker", "Mutation.dispatchEvent", "call", False),
        ("nobody", "Grid.name", "read", False),
    ],
)
def test_key_match_near_misses(subject: str, obj: str, action: str, allowed: bool) -> None:
    assert bool(ENFORCER.enforce(subject, obj, action)) is allowed
    assert decide(POLICY, subject, obj, action) is allowed
    assert reference(subject, obj, action) is allowed


@pytest.mark.parametrize("obj", ["Resident.", "Resident.name.x", "Resident.*"])
def test_key_match_quirks_never_meet_a_real_object(obj: str) -> None:
    """keyMatch matches `Resident.*` against an empty field or a dotted one too (Casbin only
    compares the prefix), and so does hub.authz.profile.decide. Harmless only because no
    object GridHub ever asks about looks like that: every name in the catalogue is one GraphQL
    name after one dot."""
    assert ENFORCER.enforce("grid_worker", obj, "read")
    assert decide(POLICY, "grid_worker", obj, "read")
    assert not reference("grid_worker", obj, "read")
    name = re.compile(r"^[A-Z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*$")
    every = [*CATALOGUE.field_objects(), *CATALOGUE.input_objects(), *CATALOGUE.operations]
    assert all(name.match(o) for o in every)
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]*", t) for t in CATALOGUE.scoped)


# --- what the parser refuses -----------------------------------------------------------------


def parse(*lines: str) -> Policy:
    model = (DEFAULT_POLICY_DIR / MODEL_FILE).read_text(encoding="utf-8")
    return Policy.parse(model, "\n".join(lines), source=POLICY_FILE)


@pytest.mark.parametrize(
    "line",
    [
        "p, health, Res*.name, read, allow",
        "p, health, *.idNumber, read, allow",
        "p, health, *, read, allow",
        "p, health, Resident.*.x, read, allow",
        "p, health, Resident.id*, read, allow",
        "p, health, Resident*, rows:all, allow",
        "p, health, Resident.*name, read, allow",
        "p, health, Resident.**, read, allow",
        # regexMatch and keyMatch2..5 shapes
        r"p, health, Resident\..*, read, allow",
        "p, health, Resident.(name|phone), read, allow",
        "p, health, ^Resident.name$, read, allow",
        "p, health, Resident.[a-z]+, read, allow",
        "p, health, Resident.name|Resident.phone, read, allow",
        "p, health, Resident.:field, read, allow",
        "p, health, Resident.{field}, read, allow",
        "p, health, /Resident/*, read, allow",
        "p, health, Resident/name, read, allow",
        "p, health, Resident.name , read, allow x",
        # `*` or patterns in a subject, an action or an effect
        "p, *, Resident.name, read, allow",
        "p, health*, Resident.name, read, allow",
        "p, he.*, Resident.name, read, allow",
        "p, health, Resident.name, *, allow",
        "p, health, Resident.name, read*, allow",
        "p, health, Resident, rows:*, allow",
        "p, health, Resident.name, read, *",
        "g, *, health",
        "g, grid_worker, *",
        "g2, Resident.*, sensitive",
        "g2, *.phone, mask:phone",
        # shapes that do not fit the action
        "p, health, Resident, read, allow",
        "p, health, Resident.name, rows:all, allow",
    ],
)
def test_the_parser_refuses_patterns_it_has_not_tested(line: str) -> None:
    with pytest.raises(PolicyError):
        parse(line)


def test_the_parser_accepts_the_shapes_it_knows() -> None:
    accepted = parse(
        "p, health, Resident.*, read, allow",
        "p, health, Resident.name, read_masked, allow",
        "p, health, Resident, rows:own_grids, allow",
        "p, connector:health, Resident.id, read, allow",
        "g, community_admin, grid_worker",
        "g2, Resident.phone, mask:phone",
    )
    assert len(accepted.rules) == 4
