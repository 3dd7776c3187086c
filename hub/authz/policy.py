"""The policy as data: parse and check Casbin's CSV lines, and build a Casbin enforcer from them.

GridHub reads the same files any Casbin tool reads (policies/model.conf, policies/policy.csv) and
refuses, with the line number and the reason, anything whose meaning it has not tested:

- a `*` anywhere but a trailing `Type.*` in an object (Casbin's keyMatch treats `*` as "any
  suffix" wherever it stands, so `Res*.name` would match `ResidentTag.x` and much else);
- actions, effects and line kinds outside the small vocabulary below;
- subjects that are not role-like names (`health`, `connector:health`).

Which objects exist (types, fields, mutations) is checked later, against the schema
(hub.authz.profile.compile_profiles): a typo must be an error, never a silent deny.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import casbin
from casbin.model import Model
from casbin.persist.adapters.string_adapter import StringAdapter

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
EXPECTATIONS_FILE = "expectations.csv"

READ = "read"
READ_MASKED = "read_masked"
CALL = "call"
SET = "set"
ROWS_PREFIX = "rows:"
SCOPES = ("all", "own_grids", "own_department", "published", "own", "tracked")
# Which rows of a type a subject may change or create, in the read scopes' vocabulary (a row
# shown only because it is published or tracked is never writable through that).
WRITE_PREFIX = "write:"
WRITE_SCOPES = ("all", "own_grids", "own_department", "own")
# An attribution input (the department a notice is issued by, who reported an event) names
# someone other than the caller: without this, it may only name the caller's own.
ON_BEHALF = "on_behalf"
# The grid levels a subject may open an emergency grant on (`EmergencyGrant, grant:community`).
GRANT_PREFIX = "grant:"
GRANT_LEVEL = re.compile(r"^[a-z][a-z_]*$")
ACTIONS = frozenset(
    {
        READ,
        READ_MASKED,
        CALL,
        SET,
        ON_BEHALF,
        *(ROWS_PREFIX + s for s in SCOPES),
        *(WRITE_PREFIX + s for s in WRITE_SCOPES),
    }
)
# Actions whose object is a type (`Resident`), not a member (`Resident.name`).
TYPE_ACTION_PREFIXES = (ROWS_PREFIX, WRITE_PREFIX, GRANT_PREFIX)
EFFECTS = frozenset({"allow", "deny"})

SENSITIVE = "sensitive"
MASK_PREFIX = "mask:"

# Control characters and line separators other than \n (a trailing \r is also refused: save the
# file with Unix line endings).
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")

# Casbin's default role manager follows at most 10 inheritance links.
MAX_INHERITANCE = 10

SUBJECT = re.compile(r"^[a-z][a-z0-9_]*(:[a-z0-9_]+)?$")
# `Type`, `Type.field` or `Type.*`: the only wildcard is a whole type's fields.
OBJECT = re.compile(r"^[A-Z][A-Za-z0-9]*(\.([a-z][A-Za-z0-9]*|\*))?$")
FIELD_OBJECT = re.compile(r"^[A-Z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*$")


def read_policy_file(path: Path) -> str:
    """A policy file exactly as written: no newline translation, so a stray \r is seen (and
    refused) rather than silently turned into a line break."""
    with path.open(encoding="utf-8", newline="") as file:
        return file.read()


class PolicyError(ValueError):
    """A policy that GridHub refuses to load, with where and why."""

    def __init__(self, reason: str, *, line: int | None = None, source: str = "policy") -> None:
        self.reason = reason
        self.line = line
        self.source = source
        where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + reason)


@dataclass(frozen=True, slots=True)
class Rule:
    """One `p` line."""

    subject: str
    object: str
    action: str
    effect: str
    line: int

    def csv(self) -> str:
        return f"p, {self.subject}, {self.object}, {self.action}, {self.effect}"


@dataclass(frozen=True, slots=True)
class Link:
    """One `g` line (a role inherits another) or `g2` line (a field belongs to a class)."""

    kind: str  # "g" | "g2"
    member: str
    group: str
    line: int

    def csv(self) -> str:
        return f"{self.kind}, {self.member}, {self.group}"


@dataclass(frozen=True)
class Policy:
    model_text: str
    text: str
    rules: tuple[Rule, ...]
    links: tuple[Link, ...]

    @classmethod
    def parse(cls, model_text: str, text: str, *, source: str = POLICY_FILE) -> Policy:
        rules: list[Rule] = []
        links: list[Link] = []
        seen: dict[str, int] = {}
        # Lines end at \n only, as in Casbin's own adapters; any other line separator or control
        # character could make a line a comment here and a rule there (or the reverse).
        for number, raw in enumerate(text.split("\n"), start=1):
            if found := FORBIDDEN_CHARACTERS.search(raw):
                raise PolicyError(
                    f"character U+{ord(found.group()):04X} is not allowed in a policy line",
                    line=number,
                    source=source,
                )
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            tokens = [token.strip() for token in line.split(",")]
            kind = tokens[0]
            canonical = ", ".join(tokens)
            if canonical in seen:
                raise PolicyError(
                    f"repeats line {seen[canonical]}: {canonical}", line=number, source=source
                )
            seen[canonical] = number
            if kind == "p":
                rules.append(_rule(tokens, number, source))
            elif kind in ("g", "g2"):
                links.append(_link(tokens, number, source))
            else:
                raise PolicyError(
                    f"unknown line kind {kind!r} (p, g or g2)", line=number, source=source
                )
        policy = cls(model_text=model_text, text=text, rules=tuple(rules), links=tuple(links))
        policy._check_inheritance(source)
        return policy

    @classmethod
    def from_directory(cls, directory: Path) -> Policy:
        model_text = read_policy_file(directory / MODEL_FILE)
        text = read_policy_file(directory / POLICY_FILE)
        return cls.parse(model_text, text, source=str(directory / POLICY_FILE))

    def with_text(self, text: str, *, source: str = "policy") -> Policy:
        return Policy.parse(self.model_text, text, source=source)

    @cached_property
    def subjects(self) -> tuple[str, ...]:
        """Every subject the policy names, in order of first appearance."""
        names = [rule.subject for rule in self.rules]
        names += [link.member for link in self.links if link.kind == "g"]
        names += [link.group for link in self.links if link.kind == "g"]
        return tuple(dict.fromkeys(names))

    @cached_property
    def ancestors(self) -> dict[str, tuple[str, ...]]:
        """Each subject and every role it inherits, itself first."""
        parents: dict[str, list[str]] = {}
        for link in self.links:
            if link.kind == "g":
                parents.setdefault(link.member, []).append(link.group)
        result: dict[str, tuple[str, ...]] = {}
        for subject in self.subjects:
            order = [subject]
            for name in order:
                order.extend(p for p in parents.get(name, ()) if p not in order)
            result[subject] = tuple(order)
        return result

    @cached_property
    def classes(self) -> dict[str, frozenset[str]]:
        """Each field named in a g2 line and its classes (`sensitive`, `mask:phone`...)."""
        found: dict[str, set[str]] = {}
        for link in self.links:
            if link.kind == "g2":
                found.setdefault(link.member, set()).add(link.group)
        return {name: frozenset(groups) for name, groups in found.items()}

    def enforcer(self) -> casbin.Enforcer:
        """A Casbin enforcer over exactly this policy: the reference the compiled profiles are
        tested against, and what `gridhub policy explain` asks."""
        model = Model()
        model.load_model_from_text(self.model_text)
        lines = "\n".join([*(r.csv() for r in self.rules), *(link.csv() for link in self.links)])
        return casbin.Enforcer(model, StringAdapter(lines))

    def _check_inheritance(self, source: str) -> None:
        for link in self.links:
            if link.kind != "g":
                continue
            if len(self.ancestors.get(link.member, ())) - 1 >= MAX_INHERITANCE:
                # Casbin's role manager follows at most 10 links; a longer chain would make
                # the compiled profiles grant what Casbin itself denies.
                raise PolicyError(
                    f"{link.member} inherits through {MAX_INHERITANCE} or more roles",
                    line=link.line,
                    source=source,
                )
            if link.member in self.ancestors.get(link.group, ())[1:]:
                raise PolicyError(
                    f"{link.member} and {link.group} inherit each other",
                    line=link.line,
                    source=source,
                )


def _rule(tokens: list[str], number: int, source: str) -> Rule:
    if len(tokens) != 5:
        raise PolicyError(
            "a p line has 4 values: subject, object, action, allow|deny", line=number, source=source
        )
    _, subject, obj, action, effect = tokens
    _check_subject(subject, number, source)
    if not OBJECT.match(obj):
        raise PolicyError(
            f"object {obj!r} is not Type, Type.field or Type.* "
            "(a * stands only for a whole type's fields)",
            line=number,
            source=source,
        )
    if action not in ACTIONS and not _is_grant_level(action):
        raise PolicyError(
            f"unknown action {action!r} (one of {', '.join(sorted(ACTIONS))}, "
            f"or {GRANT_PREFIX}<grid level>)",
            line=number,
            source=source,
        )
    if effect not in EFFECTS:
        raise PolicyError(
            f"effect must be allow or deny, not {effect!r}", line=number, source=source
        )
    is_type = "." not in obj
    if action.startswith(TYPE_ACTION_PREFIXES) != is_type:
        raise PolicyError(
            "row scopes (rows:..., write:...) and grant levels (grant:...) take a type "
            "(Resident); other actions take Type.field",
            line=number,
            source=source,
        )
    return Rule(subject, obj, action, effect, number)


def _is_grant_level(action: str) -> bool:
    return action.startswith(GRANT_PREFIX) and bool(GRANT_LEVEL.match(action[len(GRANT_PREFIX) :]))


def _link(tokens: list[str], number: int, source: str) -> Link:
    kind = tokens[0]
    if len(tokens) != 3:
        raise PolicyError(f"a {kind} line has 2 values", line=number, source=source)
    _, member, group = tokens
    if kind == "g":
        _check_subject(member, number, source)
        _check_subject(group, number, source)
    else:
        if not FIELD_OBJECT.match(member):
            raise PolicyError(
                f"g2 classes a field (Type.field), not {member!r}", line=number, source=source
            )
        if group != SENSITIVE and not group.startswith(MASK_PREFIX):
            raise PolicyError(
                f"g2 class must be {SENSITIVE} or {MASK_PREFIX}<kind>, not {group!r}",
                line=number,
                source=source,
            )
    return Link(kind, member, group, number)


def _check_subject(subject: str, number: int, source: str) -> None:
    if not SUBJECT.match(subject):
        raise PolicyError(
            f"subject {subject!r} is not a role name (lower case, e.g. health or connector:health)",
            line=number,
            source=source,
        )
