"""The access log as the auditors' console filters and lists it: the filter read from the
page's query string, and each record's detail worded for the table.

The since/until inputs are Beijing wall-clock time (datetime-local inputs carry no offset);
since is inclusive and until exclusive, as AuditFilter reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.web.vocabulary import BEIJING

# How many of a log record's fields and records the table lists before "and N more".
FIELDS_SHOWN = 5
RECORDS_SHOWN = 5
# The access log's kinds (hub.authz.audit), offered as a filter.
LOG_KINDS = ("read", "mutation", "policy", "auth_failure", "emergency", "sync", "delivery")
# The log's filters: query parameters named as AuditFilter's fields.
TEXT_FILTERS = ("actor", "role", "record", "field", "purpose", "kind")
TIME_FILTERS = ("since", "until")
# A record's detail, as its writers name the keys (hub.api.audit, hub.api.http, hub.authz.audit,
# the connectors): what the console calls each, in the order it lists them. Other keys show as
# they are named; policy_version shows as a link to that version's matrix.
DETAIL_LABELS = {
    "codes": "audit.detail.codes",
    "reason": "audit.detail.reason",
    "path": "audit.detail.path",
    "suppressed": "audit.detail.suppressed",
    "emergency": "audit.detail.emergency",
    "records_truncated": "audit.detail.records_truncated",
    "clipped": "audit.detail.clipped",
    "run": "audit.detail.run",
    "policy_version": "audit.detail.policy_version",
}


@dataclass(frozen=True)
class DetailItem:
    """One entry of a log record's detail, ready to show: `label` is a message key (None:
    show `key` itself); `flag` is set for a yes/no value, else `text` holds the value."""

    key: str
    label: str | None
    text: str
    flag: bool | None = None


def filter_values(params: Mapping[str, str]) -> dict[str, str]:
    """Every filter as typed, '' for one left empty: the form shows them back."""
    return {name: (params.get(name) or "").strip() for name in (*TEXT_FILTERS, *TIME_FILTERS)}


def audit_filter(values: Mapping[str, str]) -> dict[str, str]:
    """The AuditFilter of the filters typed; ValueError when since or until is not a time."""
    wanted = {name: values[name] for name in TEXT_FILTERS if values[name]}
    for name in TIME_FILTERS:
        if values[name]:
            wanted[name] = beijing_input(values[name])
    return wanted


def empty_range(audit_filter: Mapping[str, str]) -> bool:
    """Whether until is at or before since, which finds nothing: worth saying rather than
    leaving the auditor with an empty table."""
    if "since" not in audit_filter or "until" not in audit_filter:
        return False
    since = datetime.fromisoformat(audit_filter["since"])
    return datetime.fromisoformat(audit_filter["until"]) <= since


def beijing_input(value: str) -> str:
    """A datetime-local input's value (Beijing wall-clock time) as an ISO time with its
    offset, as AuditFilter wants it. ValueError when it is not a time."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        raise ValueError("a datetime-local value has no offset")
    return moment.replace(tzinfo=BEIJING).isoformat()


def detail_items(detail: Mapping[str, Any] | None) -> list[DetailItem]:
    """A log record's detail as the table shows it: the known keys first, in DETAIL_LABELS'
    order, named in the page's language; lists joined; anything else as compact JSON."""
    if not detail:
        return []
    order = list(DETAIL_LABELS)
    keys = sorted(detail, key=lambda key: (order.index(key) if key in order else len(order), key))
    items = []
    for key in keys:
        value = detail[key]
        label = DETAIL_LABELS.get(key)
        if isinstance(value, bool):
            items.append(DetailItem(key, label, "", flag=value))
        elif isinstance(value, list):
            items.append(DetailItem(key, label, ", ".join(_compact(item) for item in value)))
        else:
            items.append(DetailItem(key, label, _compact(value)))
    return items


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)
