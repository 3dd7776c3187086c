"""Open311 GeoReport v2 documents as JSON or XML.

Every GeoReport resource comes in both formats, chosen by the suffix of the URL (`.json`,
`.xml`). A document is built once as plain data (dicts, lists, strings, numbers, booleans, None)
and rendered here: JSON as is, XML with the element names the spec uses. A list at the top is
`<root><item>...</item></root>` (`<service_requests><request>`, `<services><service>`,
`<errors><error>`); a list inside an object takes its item name from ITEM_TAGS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree

from starlette.responses import JSONResponse, Response

FORMATS = ("json", "xml")
JSON_MEDIA_TYPE = "application/json"
XML_MEDIA_TYPE = "text/xml"

# The element name of one item of each list the spec nests inside an object.
ITEM_TAGS: Mapping[str, str] = {
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
    "values": "value",
}

# Characters XML 1.0 cannot carry at all (ElementTree would write them and break the document):
# a description typed into a hotline form may hold any of them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: Any) -> str | None:
    """An element's text: None is an empty element, booleans are `true`/`false`."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(element: ElementTree.Element, value: Any, *, item: str | None = None) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _fill(ElementTree.SubElement(element, key), child, item=ITEM_TAGS.get(key))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if item is None:
            raise ValueError(f"no item element name for the list in <{element.tag}>")
        for child in value:
            _fill(ElementTree.SubElement(element, item), child)
    else:
        element.text = xml_text(value)


def xml_document(root: str, value: Any, *, item: str | None = None) -> bytes:
    """`value` as a UTF-8 XML document with the declaration the spec asks for."""
    element = ElementTree.Element(root)
    _fill(element, value, item=item)
    body = ElementTree.tostring(element, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode("utf-8")


def respond(
    fmt: str, value: Any, *, root: str, item: str | None = None, status: int = 200
) -> Response:
    """The document in `fmt`; `root` and `item` name its XML elements."""
    if fmt == "xml":
        return Response(
            xml_document(root, value, item=item),
            status_code=status,
            media_type=f"{XML_MEDIA_TYPE}; charset=utf-8",
        )
    return JSONResponse(value, status_code=status)


def error_response(fmt: str, status: int, description: str) -> Response:
    """The spec's error list: `[{"code": <HTTP status>, "description": ...}]`."""
    errors = [{"code": status, "description": description}]
    return respond(
        fmt if fmt in FORMATS else "json", errors, root="errors", item="error", status=status
    )
