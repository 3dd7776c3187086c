"""The resident feedback form and the tracking-code lookup (no sign-in: the public role).

POST /feedback checks, in this order: the CSRF token and Origin (`site.checked_form`), the
honeypot, then runs SubmitFeedback. Success is a 303 to the tracking page (POST/redirect/GET),
so reloading that page submits nothing. The rate limit is the API's (hub.api.ratelimit: every
anonymous submitFeedback, invalid ones too, per client and across workers), so the form and
/graphql draw on one budget; RATE_LIMITED comes back as 429 with Retry-After and the text kept.
The honeypot's fake success asks the API nothing, so it is not counted (nor refused).

A filled honeypot gets the same 303 as a success, to the tracking page without a code, which
then only thanks the visitor. Nothing is stored and no code is shown: a made-up code would
answer "not found" when looked up, which is what a bot probing the form could test, and a real
person whose browser autofilled the hidden field would be handed a code that leads nowhere.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from hub.web.site import QueryFailed, Site
from hub.web.vocabulary import beijing_time

log = logging.getLogger(__name__)

KINDS = ("suggestion", "complaint")
# The feedback service's own limit (hub.feedback.service.submit); the pages may not import it,
# so the tests hold the two equal by submitting exactly this many characters and one more.
CONTENT_MAX_LENGTH = 5000
# Codes are 12 characters; the field leaves room for the blanks and hyphens typed between them.
# A longer code, once they are taken out, is "not found" without a query.
TRACKING_CODE_MAX_LENGTH = 32
# What a resident may type between a code's characters, copying it from paper in groups: blanks
# and hyphens or dashes (after NFKC, which makes full-width letters, digits and the full-width
# hyphen from a Chinese input method plain ones).
CODE_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]+")
HONEYPOT_FIELD = "website"
FIELDS = ("kind", "content", "grid")
# The form offers communities, and the grids inside each one.
COMMUNITY_LEVEL = "community"
GRID_LEVEL = "grid"
# 100 grids a page: past 1,000 choices a drop-down is of no use to anyone anyway.
MAX_GRID_PAGES = 10


@dataclass(frozen=True, slots=True)
class Message:
    """A catalogue key and its parameters, rendered by the template's t()."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the visitor typed, kept when the form comes back with an error."""

    kind: str = KINDS[0]
    content: str = ""
    grid: str = ""

    @classmethod
    def of(cls, form: FormData) -> Entry:
        # Browsers send a textarea's line breaks as CRLF but count them as one character for
        # maxlength; as LF, a text that fit the field also fits the limit.
        content = _text(form.get("content")).replace("\r\n", "\n")
        return cls(kind=_text(form.get("kind")), content=content, grid=_text(form.get("grid")))


@dataclass(frozen=True, slots=True)
class GridGroup:
    code: str
    name: str
    grids: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Stamp:
    iso: str
    shown: str


def routes(site: Site) -> list[BaseRoute]:
    async def form_page(
        request: Request,
        entry: Entry | None = None,
        errors: dict[str, Message] | None = None,
        *,
        alert: Message | None = None,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return site.render(
            request,
            "feedback.html",
            status_code=status_code,
            headers=headers,
            entry=entry or Entry(),
            # Every field named (the templates' undefined is strict), None when it is fine.
            errors={name: None for name in FIELDS} | (errors or {}),
            alert=alert,
            kinds=KINDS,
            groups=await _grid_groups(site),
            max_length=CONTENT_MAX_LENGTH,
        )

    async def show_form(request: Request) -> Response:
        return await form_page(request)

    async def submit(request: Request) -> Response:
        form = await site.checked_form(request)
        entry = Entry.of(form)
        if _text(form.get(HONEYPOT_FIELD)).strip():
            return RedirectResponse("/feedback/track?new=1", status_code=303)
        if entry.kind not in KINDS:
            return await form_page(
                request, entry, {"kind": Message("feedback.error.kind")}, status_code=400
            )
        variables = {
            "input": {
                "kind": entry.kind.upper(),
                "content": entry.content,
                "gridCode": entry.grid or None,
            }
        }
        try:
            data = await site.query("SubmitFeedback", variables, request=request)
        except QueryFailed as failed:
            if failed.code == "RATE_LIMITED":
                return await _too_many(form_page, request, entry, failed)
            if failed.code != "BAD_USER_INPUT":
                log.warning("feedback not submitted: %s", failed.code)
                return await form_page(
                    request, entry, alert=Message("feedback.error.failed"), status_code=503
                )
            errors = _field_errors(failed, entry)
            alert = None if errors else Message("feedback.error.summary")
            return await form_page(request, entry, errors, alert=alert, status_code=400)
        code = data["submitFeedback"]["trackingCode"]
        query = urlencode({"code": code, "new": "1"})
        return RedirectResponse(f"/feedback/track?{query}", status_code=303)

    async def track(request: Request) -> Response:
        code = normalise_code(request.query_params.get("code", ""))
        new = request.query_params.get("new") == "1"
        item = await _look_up(site, code) if code else None
        not_found = bool(code) and item is None
        return site.render(
            request,
            "feedback_track.html",
            # 404: the code names nothing. The page says only that, whatever the reason.
            status_code=404 if not_found else 200,
            code=code[:TRACKING_CODE_MAX_LENGTH],
            item=item,
            new=new,
            not_found=not_found,
            code_max_length=TRACKING_CODE_MAX_LENGTH,
        )

    return [
        Route("/feedback", show_form, methods=["GET"]),
        Route("/feedback", submit, methods=["POST"]),
        Route("/feedback/track", track, methods=["GET"]),
    ]


def normalise_code(typed: str) -> str:
    """A tracking code as typed or pasted, as it is stored: "fb7k-2m9q xr4t" is FB7K2M9QXR4T."""
    if len(typed) > TRACKING_CODE_MAX_LENGTH * 4:
        # Names no code however it is read: left as it is, too long to look up.
        return typed
    return CODE_SEPARATORS.sub("", unicodedata.normalize("NFKC", typed)).upper()


async def _too_many(
    form_page: Any, request: Request, entry: Entry, failed: QueryFailed
) -> Response:
    extensions = getattr(failed.errors[0], "extensions", None) or {}
    seconds = max(1, int(extensions.get("retryAfter") or 1))
    return await form_page(
        request,
        entry,
        alert=Message("feedback.error.too_many", {"minutes": max(1, math.ceil(seconds / 60))}),
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


def _text(value: Any) -> str:
    # A file upload in place of a text field is no text at all.
    return value if isinstance(value, str) else ""


def _field_errors(failed: QueryFailed, entry: Entry) -> dict[str, Message]:
    """The API's BAD_USER_INPUT errors as messages beside the form's fields. The API's own
    messages are English and written for developers; the form words them for residents."""
    errors: dict[str, Message] = {}
    for error in failed.errors:
        extensions = getattr(error, "extensions", None) or {}
        name = extensions.get("field")
        if name == "content":
            if "maxLength" in extensions:
                errors["content"] = Message(
                    "feedback.error.content_too_long", {"max": extensions["maxLength"]}
                )
            elif not entry.content.strip():
                errors["content"] = Message("feedback.error.content_empty")
            else:
                errors["content"] = Message("feedback.error.content_invalid")
        elif name == "gridCode":
            errors["grid"] = Message("feedback.error.grid")
        elif name == "kind":
            errors["kind"] = Message("feedback.error.kind")
    return errors


async def _grid_groups(site: Site) -> list[GridGroup]:
    """Each community with the grids below it, in tree order. A grid outside every community
    (a tree with other level names) is left out rather than shown without its context."""
    groups = {
        node["code"]: GridGroup(node["code"], node["name"], [])
        for node in await _grids_of_level(site, COMMUNITY_LEVEL)
    }
    for node in await _grids_of_level(site, GRID_LEVEL):
        community = next((code for code in reversed(node["path"][:-1]) if code in groups), None)
        if community is not None:
            groups[community].grids.append((node["code"], node["name"]))
    return list(groups.values())


async def _grids_of_level(site: Site, level: str) -> list[dict[str, Any]]:
    return await site.query_all(
        "PublicGrids", {"level": level}, field="grids", max_pages=MAX_GRID_PAGES
    )


async def _look_up(site: Site, code: str) -> dict[str, Any] | None:
    """The feedback a tracking code names, ready to show; None when it names none."""
    if len(code) > TRACKING_CODE_MAX_LENGTH:
        return None
    try:
        found = (await site.query("PublicFeedback", {"trackingCode": code}))["feedback"]
    except QueryFailed as failed:
        if failed.code in ("NOT_FOUND", "BAD_USER_INPUT"):
            return None
        raise
    if found is None:
        return None
    return {
        "tracking_code": found["trackingCode"],
        "kind": str(found["kind"]).lower(),
        "status": str(found["status"]).lower(),
        "created_at": _stamp(found["createdAt"]),
        "response": found["response"],
        "responded_at": _stamp(found["respondedAt"]),
    }


def _stamp(value: str | None) -> Stamp | None:
    if not value:
        return None
    return Stamp(iso=value, shown=beijing_time(value).strftime("%Y-%m-%d %H:%M"))
