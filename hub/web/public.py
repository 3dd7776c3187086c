"""The public site's home page, published notices and their Atom feeds (no sign-in).

Every read is a persisted operation run as the public role, whose policy shows published notices
only; the operations also ask for PUBLISHED themselves, so a page keeps its promise even for a
viewer who could see more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub.web.markdown import render as render_markdown
from hub.web.site import QueryFailed, Site
from hub.web.vocabulary import beijing_time

PAGE_SIZE = 20
# A district has a few dozen communities; the filter reads at most this many pages of 100.
MAX_COMMUNITY_PAGES = 10
ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
# RFC 4151 tag URIs name the feed and its entries, independent of the host name.
TAG_PREFIX = "tag:gridhub,2026:"
# Why a notices list could not be shown, by the input the API refused.
PROBLEMS = {
    "cursor": "notices.bad_cursor",
    "appliesTo": "notices.unknown_community",
    "search": "notices.bad_search",
}


def routes(site: Site) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        data = await site.query("PublicHome")
        language = site.language(request)
        return site.render(
            request, "home.html", notices=summaries(data["notices"]["nodes"], language)
        )

    async def notices(request: Request) -> Response:
        return await notices_page(site, request)

    async def notice(request: Request) -> Response:
        return await notice_page(site, request, request.path_params["notice_id"])

    async def feed(request: Request) -> Response:
        return await notices_feed(site, request, community=None)

    async def community_feed(request: Request) -> Response:
        return await notices_feed(site, request, community=request.path_params["code"])

    return [
        Route("/", home),
        Route("/notices", notices),
        # Before /notices/{notice_id}, which would take "feed.atom" for an id.
        Route("/notices/feed.atom", feed),
        Route("/notices/{notice_id}", notice),
        Route("/communities/{code}/feed.atom", community_feed),
    ]


# --- the list ---------------------------------------------------------------------------------


async def notices_page(site: Site, request: Request) -> Response:
    params = request.query_params
    search = (params.get("q") or "").strip()
    code = (params.get("community") or "").strip()
    communities = await community_list(site)
    names = {c["code"]: c["name"] for c in communities}
    connection: dict[str, Any] | None = None
    problem: str | None = None
    if code and code not in names:
        problem = "notices.unknown_community"
    else:
        try:
            data = await site.query(
                "PublicNotices",
                page_variables(
                    search=search,
                    community=code,
                    after=params.get("after") or None,
                    before=params.get("before") or None,
                ),
            )
            connection = data["notices"]
        except QueryFailed as failed:
            problem = problem_of(failed)
    return site.render(
        request,
        "notices.html",
        status_code=400 if problem else 200,
        q=search,
        community=code if code in names else "",
        community_name=names.get(code),
        communities=communities,
        problem=problem,
        notices=summaries(connection["nodes"] if connection else [], site.language(request)),
        total=connection["totalCount"] if connection else 0,
        page=connection["pageInfo"] if connection else None,
    )


def page_variables(
    *, search: str, community: str, after: str | None, before: str | None
) -> dict[str, Any]:
    """One page forwards from `after`, or backwards up to `before` (a "previous" link)."""
    variables: dict[str, Any] = {
        "search": search or None,
        # Every notice that applies in the community, those to its street and district too.
        "appliesTo": community or None,
        "after": after,
        "before": before,
    }
    if before is not None and after is None:
        variables["last"] = PAGE_SIZE
    else:
        variables["first"] = PAGE_SIZE
    return variables


def problem_of(failed: QueryFailed) -> str:
    """The message for a list the API refused: the visitor's input, never a 500."""
    if failed.code != "BAD_USER_INPUT":
        raise failed
    extensions = getattr(failed.errors[0], "extensions", None) or {}
    return PROBLEMS.get(str(extensions.get("field")), "error.bad_request")


async def community_list(site: Site) -> list[dict[str, Any]]:
    return await site.query_all(
        "PublicCommunities", {}, field="grids", max_pages=MAX_COMMUNITY_PAGES
    )


# --- one notice -------------------------------------------------------------------------------


async def notice_page(site: Site, request: Request, notice_id: str) -> Response:
    item = await published_notice(site, notice_id)
    if item is None:
        return site.error(request, 404, "notices.not_found")
    language = site.language(request)
    return site.render(
        request,
        "notice.html",
        notice=item,
        department=department_name(item.get("department"), language),
        published=display_time(item["publishedAt"]),
        body=render_markdown(item["body"]),
    )


async def published_notice(site: Site, notice_id: str) -> dict[str, Any] | None:
    """The notice when the public may read it; None for a draft, a retracted notice, or an id
    that names no notice (the API answers NOT_FOUND or BAD_USER_INPUT)."""
    try:
        item = (await site.query("PublicNotice", {"id": notice_id}))["notice"]
    except QueryFailed as failed:
        if failed.code in ("NOT_FOUND", "BAD_USER_INPUT"):
            return None
        raise
    if item is None or item["status"] != "PUBLISHED":
        return None
    return dict(item)


def summaries(nodes: list[dict[str, Any]], language: str) -> list[dict[str, Any]]:
    """Notices as a list shows them (home page and notices page alike): the publication date in
    Beijing time and the department's name in the reader's language."""
    return [
        {
            **node,
            "publishedDate": display_time(node["publishedAt"], date_only=True),
            "departmentName": department_name(node.get("department"), language),
        }
        for node in nodes
    ]


def department_name(department: dict[str, str] | None, language: str) -> str:
    if department is None:
        return ""
    return department["nameEn"] if language == "en" else department["name"]


def display_time(value: str | None, *, date_only: bool = False) -> str:
    """An API time (ISO 8601 with its offset) as a resident reads it: Beijing time."""
    if not value:
        return ""
    return beijing_time(value).strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M")


# --- Atom feeds (RFC 4287) --------------------------------------------------------------------


async def notices_feed(site: Site, request: Request, *, community: str | None) -> Response:
    language = site.language(request)
    t = site.catalogue.translator(language)
    if community is None:
        title, alternate = t("notices.feed_title"), "/notices"
    else:
        names = {c["code"]: c["name"] for c in await community_list(site)}
        if community not in names:
            return site.error(request, 404, "notices.unknown_community")
        title = t("notices.community_feed_title", name=names[community])
        alternate = f"/notices?community={community}"
    data = await site.query("PublicNoticesFeed", {"appliesTo": community})
    feed = atom_feed(
        # Never the request's Host header: a forged one would poison a cached feed. Without a
        # configured public address the links are relative to the feed's own URL.
        base=(site.settings.public_url or "").rstrip("/"),
        self_path=request.url.path,
        alternate_path=alternate,
        title=title,
        author=t("site.name"),
        language=language,
        notices=data["notices"]["nodes"],
    )
    return Response(feed, media_type=ATOM_TYPE)


def atom_feed(
    *,
    base: str,
    self_path: str,
    alternate_path: str,
    title: str,
    author: str,
    language: str,
    notices: list[dict[str, Any]],
) -> bytes:
    """The feed document. ElementTree escapes every text and attribute: titles and bodies are
    the departments' words and never pass through string formatting."""
    # Plain names under an xmlns attribute: the Atom namespace becomes the default one, with no
    # ns0: prefixes for feed readers to stumble on.
    attributes = {"xmlns": ATOM, XML_LANG: language}
    if base:
        attributes[XML_BASE] = base + "/"
    feed = ElementTree.Element("feed", attributes)
    # Ids are tag URIs: they stay the same whichever address the hub is reached by.
    _text(feed, "id", TAG_PREFIX + self_path)
    _text(feed, "title", title)
    updated = max((entry_time(n) for n in notices), default=datetime.now(UTC))
    _text(feed, "updated", rfc3339(updated))
    _link(feed, "self", base + self_path, ATOM_TYPE.split(";")[0])
    _link(feed, "alternate", base + alternate_path, "text/html")
    _text(ElementTree.SubElement(feed, "author"), "name", author)
    for notice in notices:
        feed.append(atom_entry(notice, base=base, language=language, fallback_author=author))
    return bytes(ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True))


def atom_entry(
    notice: dict[str, Any], *, base: str, language: str, fallback_author: str
) -> ElementTree.Element:
    url = f"{base}/notices/{notice['id']}"
    entry = ElementTree.Element("entry")
    _text(entry, "id", f"{TAG_PREFIX}/notices/{notice['id']}")
    _text(entry, "title", notice["title"])
    _text(entry, "updated", rfc3339(entry_time(notice)))
    if notice.get("publishedAt"):
        _text(entry, "published", rfc3339(datetime.fromisoformat(notice["publishedAt"])))
    author = ElementTree.SubElement(entry, "author")
    _text(author, "name", department_name(notice.get("department"), language) or fallback_author)
    _link(entry, "alternate", url, "text/html")
    content = _text(entry, "content", str(render_markdown(notice["body"])))
    content.set("type", "html")
    return entry


def entry_time(notice: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(notice.get("publishedAt") or notice["createdAt"])


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(parent: ElementTree.Element, name: str, text: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, name)
    element.text = text
    return element


def _link(parent: ElementTree.Element, rel: str, href: str, media_type: str) -> None:
    ElementTree.SubElement(parent, "link", {"rel": rel, "href": href, "type": media_type})
