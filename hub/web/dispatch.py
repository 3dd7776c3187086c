"""The live dispatch board at /dispatch (dispatcher, community_admin).

The board lists the open events in the signed-in viewer's scope, newest first, through a
persisted query run as that viewer, so it shows exactly what the viewer's own GraphQL schema and
row scope show. Accept and dispatch are plain forms (CSRF token, same Origin) that run their
mutation as the viewer and come back to the board with a message in the query string: to the
same view (the overdue filter and the page, from the form's `return_to`, which can name nothing
but the board) and scrolled to the event's row, or to the row that followed it when the action
took the event out of that view.
Live updates come from hub/web/static/board.js, which subscribes to `eventChanged` over a
WebSocket authenticated by the session cookie (hub.api.http.GraphQLView.identify); everything it
needs (the subscription document, words, action URLs, the CSRF token) is in the page's data-
attributes and <template> elements, since no inline script may run.

Times show in Beijing time (UTC+8, no daylight saving); a dispatch deadline typed into the
form is read as Beijing time too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from hub.web.site import QueryFailed, SignedIn, Site
from hub.web.vocabulary import (
    BEIJING,
    CATEGORIES,
    OPEN_STATUSES,
    SEVERITIES,
    STATUSES,
    beijing_time,
)

log = logging.getLogger(__name__)

BOARD_ROLES = ("dispatcher", "community_admin")


@dataclass(frozen=True, slots=True)
class BoardAction:
    name: str
    # The mutation's field: the board offers the action only when the role's schema has it.
    mutation: str
    operation: str
    sources: frozenset[str]


ACTIONS: Mapping[str, BoardAction] = {
    "accept": BoardAction(
        "accept", "acceptEvent", "BoardAccept", frozenset({"REPORTED", "REOPENED"})
    ),
    "dispatch": BoardAction(
        "dispatch", "dispatchEvent", "BoardDispatch", frozenset({"ACCEPTED", "DISPATCHED"})
    ),
}

# API error codes a board action may meet, and the board's message for each (dispatch.toml).
ERROR_MESSAGES = {
    "INVALID_TRANSITION": "invalid_transition",
    "NOT_FOUND": "not_found",
    "CONFLICT": "conflict",
    "BAD_USER_INPUT": "bad_input",
}
# A BAD_USER_INPUT names the argument it refused (extensions.field): the message for each of
# the form's fields, so that a past deadline is not reported as a missing department.
FIELD_MESSAGES = {
    "departmentCode": "bad_department",
    "deadline": "bad_deadline",
    "note": "bad_note",
}
FAILED = "failed"
MESSAGES = frozenset({*ERROR_MESSAGES.values(), *FIELD_MESSAGES.values(), FAILED})
# Event codes are EVyyyymmdd + 6 letters; anything else in a URL or a message is refused.
EVENT_CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
# A page cursor is unpadded URL-safe base64 (hub.pagination); the API checks the rest.
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,512}")
NOTE_CHARS = 500
BOARD_PATH = "/dispatch"


class ActionRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class View:
    """What the board shows: all open events or the overdue ones, from a page cursor on."""

    overdue_only: bool = False
    after: str | None = None

    def params(self) -> dict[str, str]:
        params = {"overdue": "1"} if self.overdue_only else {}
        if self.after is not None:
            params["after"] = self.after
        return params

    def path(self) -> str:
        params = self.params()
        return f"{BOARD_PATH}?{urlencode(params)}" if params else BOARD_PATH

    def holds(self, event: Mapping[str, Any]) -> bool:
        """Whether an event as a mutation left it still belongs in this view."""
        return event.get("status") in OPEN_STATUSES and (
            not self.overdue_only or bool(event.get("overdue"))
        )


def routes(site: Site) -> list[BaseRoute]:
    async def board(request: Request) -> Response:
        signed_in = await site.require(request, BOARD_ROLES)
        if isinstance(signed_in, Response):
            return signed_in
        overdue_only = request.query_params.get("overdue") == "1"
        after = request.query_params.get("after") or None
        overdue_filter: dict[str, Any] = {"status": list(OPEN_STATUSES), "overdue": True}
        event_filter = overdue_filter if overdue_only else {"status": list(OPEN_STATUSES)}
        try:
            data = await site.query(
                "BoardEvents",
                {"filter": event_filter, "overdueFilter": overdue_filter, "after": after},
                viewer=signed_in.viewer,
            )
        except QueryFailed as exc:
            if after is not None and exc.code == "BAD_USER_INPUT":
                # A damaged or stale `after` cursor in the URL.
                return site.error(request, 400, "error.bad_request")
            raise
        return _render(site, request, data, View(overdue_only, after))

    def act(action: BoardAction) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            signed_in = await site.require(request, BOARD_ROLES)
            if isinstance(signed_in, RedirectResponse):
                # Signed out meanwhile: back to the board after signing in (this URL is POST).
                return RedirectResponse(
                    f"/signin?{urlencode({'next': '/dispatch'})}", status_code=303
                )
            if isinstance(signed_in, Response):
                return signed_in
            form = await site.checked_form(request)
            view = _view_of(_text(form, "return_to"))
            code = request.path_params["code"]
            if not EVENT_CODE.fullmatch(code):
                return _back(view, error=ERROR_MESSAGES["NOT_FOUND"])
            try:
                event = await _run(site, signed_in, action, code, form)
            except ActionRefused as refused:
                return _back(view, error=refused.message, code=code, anchor=code)
            anchor: str | None = code
            if not view.holds(event):
                # Gone from this view on reload: land on the row that followed it instead.
                following = _text(form, "next_code")
                anchor = following if EVENT_CODE.fullmatch(following) else None
            return _back(view, done=action.name, code=code, anchor=anchor)

        return endpoint

    return [
        Route("/dispatch", board, methods=["GET"]),
        *(
            Route(f"/dispatch/events/{{code}}/{name}", act(action), methods=["POST"])
            for name, action in ACTIONS.items()
        ),
    ]


async def _run(
    site: Site, signed_in: SignedIn, action: BoardAction, code: str, form: FormData
) -> dict[str, Any]:
    """Run `action` on the event `code` as the signed-in viewer and return the event as it
    left it; ActionRefused with the board's message when the API (or the form) refuses it."""
    viewer = signed_in.viewer
    try:
        found = (await site.query("BoardEventRef", {"code": code}, viewer=viewer))["event"]
        if found is None:
            raise ActionRefused(ERROR_MESSAGES["NOT_FOUND"])
        # The version the board showed: a form older than the event (someone else acted
        # meanwhile) is refused rather than applied to an event its user has not seen.
        version = _text(form, "version")
        if version and version != str(found["version"]):
            raise ActionRefused(ERROR_MESSAGES["CONFLICT"])
        variables: dict[str, Any] = {"id": found["id"], "note": _text(form, "note")[:NOTE_CHARS]}
        if action.name == "dispatch":
            variables.update(_dispatch_input(form))
        done = await site.query(action.operation, variables, viewer=viewer)
    except QueryFailed as exc:
        message = _message_of(exc)
        if message == FAILED:
            log.warning("board %s of %s refused: %s %s", action.name, code, exc.code, exc)
        raise ActionRefused(message) from exc
    return dict(done[action.mutation])


def _message_of(failed: QueryFailed) -> str:
    """The board's message for a refusal: for bad input, the one of the field it names."""
    if failed.code == "BAD_USER_INPUT":
        for error in failed.errors:
            field = (getattr(error, "extensions", None) or {}).get("field")
            if field in FIELD_MESSAGES:
                return FIELD_MESSAGES[field]
    return ERROR_MESSAGES.get(failed.code, FAILED)


def _dispatch_input(form: FormData) -> dict[str, Any]:
    department = _text(form, "departmentCode")
    if not department:
        raise ActionRefused(FIELD_MESSAGES["departmentCode"])
    values: dict[str, Any] = {"departmentCode": department}
    deadline = _text(form, "deadline")
    if deadline:
        # <input type="datetime-local"> sends "YYYY-MM-DDTHH:MM": Beijing time.
        try:
            moment = datetime.fromisoformat(deadline)
        except ValueError:
            raise ActionRefused(FIELD_MESSAGES["deadline"]) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=BEIJING)
        values["deadline"] = moment.isoformat()
    return values


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _view_of(return_to: str) -> View:
    """The board view a form was sent from, read from its `return_to`. Only the board's own
    path and its own query parameters count, and the answer is a View the redirect is built
    from anew, so the field can never send anyone to another page or site (no open redirect);
    anything else is the board's default view."""
    try:
        parts = urlsplit(return_to)
        params = dict(parse_qsl(parts.query, max_num_fields=10))
    except ValueError:
        return View()
    if parts.scheme or parts.netloc or parts.path != BOARD_PATH:
        return View()
    after = params.get("after")
    return View(
        overdue_only=params.get("overdue") == "1",
        after=after if after is not None and CURSOR.fullmatch(after) else None,
    )


def _back(
    view: View,
    *,
    done: str | None = None,
    error: str | None = None,
    code: str | None = None,
    anchor: str | None = None,
) -> Response:
    params = view.params()
    params.update(
        (key, value) for key, value in (("done", done), ("error", error), ("code", code)) if value
    )
    # Rows have id="event-{code}": the browser scrolls back to where the user was working.
    fragment = f"#event-{anchor}" if anchor else ""
    return RedirectResponse(f"{BOARD_PATH}?{urlencode(params)}{fragment}", status_code=303)


# --- the page ------------------------------------------------------------------------------


def _render(site: Site, request: Request, data: Mapping[str, Any], view: View) -> Response:
    language = site.language(request)
    labels = _labels(site, language)
    mutation_type = data.get("mutationType") or {}
    callable_fields = {field["name"] for field in mutation_type.get("fields") or ()}
    actions = {name: a for name, a in ACTIONS.items() if a.mutation in callable_fields}
    english = language == "en"
    departments = [
        {"code": d["code"], "name": _department_name(d, english=english)}
        for d in data["departments"]["nodes"]
    ]
    events = data["events"]
    rows = [_row(event, labels, actions, english=english) for event in events["nodes"]]
    # Each row's form names the row below it (above it, for the last), where the board comes
    # back to when the action takes the event out of this view.
    codes = [row["code"] for row in rows]
    for index, row in enumerate(rows):
        neighbours = codes[index + 1 : index + 2] or codes[max(0, index - 1) : index]
        row["next_code"] = neighbours[0] if neighbours else ""
    overdue_total = data["overdueEvents"]["totalCount"]
    return site.render(
        request,
        "dispatch.html",
        rows=rows,
        total=events["totalCount"],
        overdue_total=overdue_total,
        overdue_text=_overdue_text(labels, overdue_total),
        next_cursor=events["pageInfo"]["endCursor"] if events["pageInfo"]["hasNextPage"] else None,
        first_page=view.after is None,
        overdue_only=view.overdue_only,
        return_to=view.path(),
        departments=departments,
        actions=actions,
        labels=labels,
        open_statuses=" ".join(OPEN_STATUSES),
        action_statuses={name: sorted(a.sources) for name, a in actions.items()},
        subscription=site.operations["BoardLive"].document,
        flash=_flash(site, language, request),
    )


def _row(
    event: Mapping[str, Any],
    labels: Mapping[str, Any],
    actions: Mapping[str, BoardAction],
    *,
    english: bool,
) -> dict[str, Any]:
    department = event.get("department")
    return {
        "code": event["code"],
        "title": event["title"],
        "description": event.get("description") or "",
        "status": event["status"],
        "status_label": labels["status"].get(event["status"], event["status"]),
        "severity": event["severity"],
        "severity_label": labels["severity"].get(event["severity"], event["severity"]),
        "category_label": labels["category"].get(event["category"], event["category"]),
        "version": event["version"],
        "grid": (event.get("grid") or {}).get("name", ""),
        "department": _department_name(department, english=english) if department else "",
        "reported": _moment(event["reportedAt"]),
        "deadline": _moment(event.get("deadline")),
        "overdue": bool(event.get("overdue")),
        "actions": [name for name, a in actions.items() if event["status"] in a.sources],
    }


def _department_name(department: Mapping[str, Any], *, english: bool) -> str:
    # A department without an English name shows its Chinese one rather than nothing.
    return str(department["nameEn"] if english and department["nameEn"] else department["name"])


def _moment(value: str | None) -> dict[str, str] | None:
    """An API time as the page shows it: the exact instant for <time datetime> and the
    minute in Beijing time for people."""
    if not value:
        return None
    return {"iso": value, "text": beijing_time(value).strftime("%Y-%m-%d %H:%M")}


def _labels(site: Site, language: str) -> dict[str, Any]:
    """The board's words for the page and for board.js (which gets them as JSON)."""
    t = site.catalogue.translator(language)
    return {
        "status": {s: t(f"dispatch.status.{s}") for s in STATUSES},
        "severity": {s: t(f"dispatch.severity.{s}") for s in SEVERITIES},
        "category": {c: t(f"dispatch.category.{c}") for c in CATEGORIES},
        "overdue": t("dispatch.overdue"),
        "no_deadline": t("dispatch.no_deadline"),
        "not_dispatched": t("dispatch.not_dispatched"),
        "no_actions": t("dispatch.no_actions"),
        "live": {
            key: t(f"dispatch.live.{key}")
            for key in ("connecting", "on", "retrying", "unavailable", "signed_out")
        },
        "announce": {key: t(f"dispatch.announce.{key}") for key in ("new", "changed", "left")},
        # {count} is filled in by the page and by board.js as rows become overdue or leave.
        "overdue_banner": {key: t(f"dispatch.overdue_banner.{key}") for key in ("one", "other")},
        "filter_overdue_count": t("dispatch.filter_overdue_count"),
    }


def _overdue_text(labels: Mapping[str, Any], count: int) -> str:
    template = labels["overdue_banner"]["one" if count == 1 else "other"]
    return str(template).replace("{count}", str(count))


def _flash(site: Site, language: str, request: Request) -> dict[str, str] | None:
    """The message of the action that just ran (?done= or ?error=, with ?code=): only known
    messages, and only a code shaped like an event code, so a crafted link cannot put words of
    its own on the board."""
    params = request.query_params
    code = params.get("code") or ""
    if code and not EVENT_CODE.fullmatch(code):
        code = ""
    done, error = params.get("done"), params.get("error")
    if done in ACTIONS and code:
        return {
            "kind": "done",
            "text": site.catalogue.text(language, f"dispatch.done.{done}", code=code),
        }
    if error in MESSAGES:
        text = site.catalogue.text(language, f"dispatch.error.{error}")
        if code:
            text = site.catalogue.text(language, "dispatch.error.about", code=code, message=text)
        return {"kind": "error", "text": text}
    return None
