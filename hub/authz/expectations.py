"""The auditors' expectations (policies/expectations.csv), checked against a policy.

Each line: role, object, action, expected. For a field read (`read`) the expectation is the
level: `allow` (full), `masked` or `deny` (hidden). For everything else (`call`, `set`,
`rows:<scope>`) it is `allow` or `deny`. A line whose role is `g2` pins a field's class:
`g2, Resident.idNumber, sensitive, allow` holds while the policy classes the field sensitive.
The check runs in the test suite, in `gridhub policy check`, and before any runtime policy
change takes effect.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from hub.authz.policy import READ, Policy, PolicyError, read_policy_file
from hub.authz.profile import Level, decide, field_level

EXPECTED = frozenset({"allow", "masked", "deny"})
# The "role" of expectations about the policy's g2 classes (sensitive, mask:<kind>).
CLASS_ROLE = "g2"
LEVEL_WORDS = {Level.FULL: "allow", Level.MASKED: "masked", Level.HIDDEN: "deny"}


@dataclass(frozen=True, slots=True)
class Expectation:
    role: str
    object: str
    action: str
    expected: str
    line: int


@dataclass(frozen=True, slots=True)
class Failure:
    expectation: Expectation
    actual: str

    def describe(self) -> str:
        e = self.expectation
        return (
            f"line {e.line}: {e.role} {e.action} {e.object}: expected {e.expected}, "
            f"the policy gives {self.actual}"
        )


def parse(text: str, *, source: str = "expectations.csv") -> list[Expectation]:
    found = []
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    for number, row in enumerate(rows, start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        values = [value.strip() for value in row]
        if len(values) != 4:
            raise PolicyError("an expectation has 4 values", line=number, source=source)
        role, obj, action, expected = values
        if role == CLASS_ROLE and expected == "masked":
            raise PolicyError("a g2 expectation is allow or deny", line=number, source=source)
        if expected not in EXPECTED or (expected == "masked" and action != READ):
            raise PolicyError(
                f"expected must be allow, deny or (for read) masked, not {expected!r}",
                line=number,
                source=source,
            )
        found.append(Expectation(role, obj, action, expected, number))
    return found


def load(path: Path) -> list[Expectation]:
    return parse(read_policy_file(path), source=str(path))


def actual(policy: Policy, expectation: Expectation) -> str:
    if expectation.role == CLASS_ROLE:
        classes = policy.classes.get(expectation.object, frozenset())
        return "allow" if expectation.action in classes else "deny"
    if expectation.action == READ:
        return LEVEL_WORDS[field_level(policy, expectation.role, expectation.object)]
    allowed = decide(policy, expectation.role, expectation.object, expectation.action)
    return "allow" if allowed else "deny"


def check(policy: Policy, expectations: list[Expectation]) -> list[Failure]:
    failures = []
    for expectation in expectations:
        result = actual(policy, expectation)
        if result != expectation.expected:
            failures.append(Failure(expectation, result))
    return failures
