"""Turn a source record into GridHub fields, by a definition's [mapping] and [match].

Unknown source fields are ignored (sources add columns without telling anyone); a missing one
leaves its GridHub field unchanged, unless the mapping gives a default or marks it required.
A record that cannot be mapped raises MappingError and is quarantined with its payload.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from hub.connectors.definition import LIST_FIELDS, Definition, FieldMap

# The widths of the columns that keep them (resident_external_ids, sync_links).
MAX_EXTERNAL_ID = 64
MAX_VERSION = 64


class MappingError(ValueError):
    """A record the mapping cannot take, with a stable code for the quarantine."""

    def __init__(self, message: str, *, code: str = "MAPPING") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Mapped:
    """A source record in GridHub's terms."""

    external_id: str | None
    # The source's ordering of this record's updates (a time or a number, as text), if it has one.
    version: str | None
    values: dict[str, Any]  # GridHub input field -> value (str, or list[str] for tags)
    # Natural-key values to match by ({"idNumber": ...}); written only if also in `values`.
    keys: dict[str, Any] = field(default_factory=dict)
    # A hash of `values` (digest_of): equal digests mean nothing to write. Computed once, as
    # a re-sync compares it for every record.
    digest: str = ""


def digest_of(values: dict[str, Any]) -> str:
    canonical = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _transform(field: FieldMap, text: str) -> Any:
    value: Any
    match field.transform:
        case "strip":
            value = text.strip()
        case "upper":
            value = text.strip().upper()
        case "lower":
            value = text.strip().lower()
        case "digits":
            value = "".join(ch for ch in text if ch.isdigit() or ch in "Xx").upper()
        case "split":
            value = [part.strip() for part in text.split(field.separator) if part.strip()]
        case "date":
            assert field.date_format is not None
            try:
                value = datetime.strptime(text.strip(), field.date_format).date().isoformat()
            except ValueError:
                raise MappingError(
                    f"{field.source}: not a date in the format {field.date_format}",
                    code="INVALID_VALUE",
                ) from None
        case _:
            value = text
    if field.values:
        if isinstance(value, list):
            value = [field.values.get(item, item) for item in value]
        else:
            value = field.values.get(value, value)
    return value


def _map_fields(fields: tuple[FieldMap, ...], payload: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in fields:
        if spec.constant is not None:
            values[spec.target] = spec.constant
            continue
        assert spec.source is not None
        raw = payload.get(spec.source)
        if isinstance(raw, list) and spec.target in LIST_FIELDS:
            # A JSON source sends a list where a file sends "a;b": the same values.
            values[spec.target] = _transform(spec, spec.separator.join(map(str, raw)))
            continue
        if isinstance(raw, dict | list):
            raise MappingError(f"{spec.source}: a single value expected", code="INVALID_VALUE")
        text = _text(raw)
        if text is None or not text.strip():
            if spec.default is not None:
                values[spec.target] = _transform(spec, spec.default)
            elif spec.required:
                raise MappingError(f"missing field {spec.source}", code="MISSING_FIELD")
            continue
        values[spec.target] = _transform(spec, text)
    return values


def map_record(definition: Definition, payload: dict[str, Any]) -> Mapped:
    values = _map_fields(definition.mapping, payload)
    keys = {k: v for k, v in values.items() if k in definition.natural_key}
    keys.update(_map_fields(definition.key_maps, payload))
    external_id = None
    if definition.external_id is not None:
        external_id = (_text(payload.get(definition.external_id)) or "").strip() or None
        if external_id is None and not definition.natural_key:
            raise MappingError(
                f"missing external id field {definition.external_id}", code="MISSING_FIELD"
            )
        # Without its external id a record can still be matched by its natural key (a file
        # exported by GridHub itself, say); it is then compared value by value, not linked.
        if external_id is not None and len(external_id) > MAX_EXTERNAL_ID:
            raise MappingError(
                f"external id longer than {MAX_EXTERNAL_ID} characters", code="INVALID_VALUE"
            )
    for key in definition.natural_key:
        if not keys.get(key) and external_id is None:
            raise MappingError(f"missing natural key {key}", code="MISSING_FIELD")
    version = None
    if definition.version_field is not None:
        version = (_text(payload.get(definition.version_field)) or "").strip() or None
        if version is not None and len(version) > MAX_VERSION:
            raise MappingError(
                f"{definition.version_field} longer than {MAX_VERSION} characters",
                code="INVALID_VALUE",
            )
    return Mapped(
        external_id=external_id,
        version=version,
        values=values,
        keys=keys,
        digest=digest_of(values),
    )
