"""The public notices pages: the list with keyword search, community filter and keyset pages, a
notice's page with its Markdown body sanitised, and the Atom feeds, all read as the public role
over real HTTP."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from hub.api.ids import to_global_id
from hub.db import Database
from hub.notices import service as notices
from hub.web.markdown import render, sanitise
from tests.world import World

ATOM = "{http://www.w3.org/2005/Atom}"
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
ITEM = re.compile(r'<li class="notice-item[^"]*">\s*<a href="/notices/([^"]+)">([^<]*)</a>')
HOME_ITEM = re.compile(r'<li class="card">\s*<a href="/notices/[^"]+">([^<]*)</a>(.*?)</li>', re.S)


@pytest.fixture
async def visitor(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    """A browser without credentials: the public role."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def add_notice(
    db: Database,
    title: str,
    *,
    body: str = "正文",
    grids: Sequence[str] = ("D1",),
    status: str = "published",
    department: str = "civil_affairs",
    minute: int = 0,
    published_minute: int | None = None,
) -> str:
    """A notice through the domain service, created `minute` minutes after START and published
    (unless it is a draft) `published_minute` minutes after START, by default the same; its page
    id."""
    async with db.transaction() as session:
        notice = await notices.create(
            session, title=title, body=body, department_code=department, grid_codes=list(grids)
        )
        notice.created_at = START + timedelta(minutes=minute)
        await session.flush()
        if status in ("published", "retracted"):
            published = await notices.publish(session, notice_id=notice.id)
            later = minute if published_minute is None else published_minute
            published.published_at = START + timedelta(minutes=later)
            await session.flush()
        if status == "retracted":
            await notices.retract(session, notice_id=notice.id)
        return str(to_global_id("Notice", notice.id))


def listed(page: httpx.Response) -> list[tuple[str, str]]:
    """The (id, title) of each notice in a list page, in page order."""
    return ITEM.findall(page.text)


def titles(page: httpx.Response) -> list[str]:
    return [title for _, title in listed(page)]


def link(page: httpx.Response, rel: str) -> str | None:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', page.text)
    return found.group(1).replace("&amp;", "&") if found else None


class Tags(HTMLParser):
    """Every start tag of a document with its attributes, as a browser would parse them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_inert(html: str) -> None:
    """Nothing in `html` can run: no script-bearing element, no event handler, no script URL."""
    assert "<script" not in html.lower()
    for tag, attrs in Tags(html).tags:
        assert tag not in {"script", "iframe", "svg", "object", "embed", "style", "math"}, tag
        for name, value in attrs.items():
            assert not name.lower().startswith("on"), (tag, name)
            if name in ("href", "src", "action", "formaction", "xlink:href"):
                target = re.sub(r"[\s\x00-\x1f]", "", value or "").lower()
                assert not target.startswith(("javascript:", "vbscript:", "data:")), (tag, value)


# --- the list ---------------------------------------------------------------------------------


async def test_the_list_shows_published_notices_only_newest_first(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    await add_notice(db, "草稿通知", status="draft", minute=1)
    older = await add_notice(db, "较早的通知", minute=2)
    await add_notice(db, "已撤回的通知", status="retracted", minute=3)
    newer = await add_notice(db, "较新的通知", minute=4)
    page = await visitor.get("/notices")
    assert page.status_code == 200
    assert listed(page) == [(newer, "较新的通知"), (older, "较早的通知")]
    assert "草稿通知" not in page.text and "已撤回的通知" not in page.text
    assert '<form id="notice-search" method="get"' in page.text
    assert '<input id="q" name="q"' in page.text
    assert '<select id="community" name="community">' in page.text
    assert 'id="no-results"' not in page.text
    # The home page lists the same published notices.
    home = await visitor.get("/")
    assert home.status_code == 200 and "较新的通知" in home.text and "草稿通知" not in home.text


async def test_an_empty_list_says_so(visitor: httpx.AsyncClient, db: Database) -> None:
    await add_notice(db, "草稿", status="draft")
    page = await visitor.get("/notices")
    assert page.status_code == 200
    assert '<p id="no-results">' in page.text and listed(page) == []


async def test_search_finds_titles_and_bodies(visitor: httpx.AsyncClient, db: Database) -> None:
    await add_notice(db, "停水通知", body="明日检修管道。", minute=1)
    await add_notice(db, "社区活动", body="因检修停水，活动改期。", minute=2)
    await add_notice(db, "Water supply works", body="Pipes.", minute=3)
    await add_notice(db, "垃圾分类", body="请按时投放。", minute=4)
    await add_notice(db, "停水草稿", status="draft", minute=5)
    assert titles(await visitor.get("/notices", params={"q": "停水"})) == ["社区活动", "停水通知"]
    assert titles(await visitor.get("/notices", params={"q": "检修"})) == ["社区活动", "停水通知"]
    # Latin letters in any case; the search words stay in the box.
    page = await visitor.get("/notices", params={"q": "WATER"})
    assert titles(page) == ["Water supply works"]
    assert 'value="WATER"' in page.text
    empty = await visitor.get("/notices", params={"q": "没有这个词"})
    assert empty.status_code == 200 and 'id="no-results"' in empty.text


async def test_search_takes_like_wildcards_literally(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    await add_notice(db, "完成率100%", minute=1)
    await add_notice(db, "完成率1000", minute=2)
    await add_notice(db, "编号a_b", minute=3)
    await add_notice(db, "编号axb", minute=4)
    await add_notice(db, "路径a\\b", minute=5)
    assert titles(await visitor.get("/notices", params={"q": "100%"})) == ["完成率100%"]
    assert titles(await visitor.get("/notices", params={"q": "%"})) == ["完成率100%"]
    assert titles(await visitor.get("/notices", params={"q": "a_b"})) == ["编号a_b"]
    assert titles(await visitor.get("/notices", params={"q": "_"})) == ["编号a_b"]
    assert titles(await visitor.get("/notices", params={"q": "a\\b"})) == ["路径a\\b"]
    # A blank search is no search.
    assert len(listed(await visitor.get("/notices", params={"q": "   "}))) == 5


async def test_a_search_the_api_refuses_is_a_message(visitor: httpx.AsyncClient) -> None:
    for words in ("长" * 101, "a\x01b"):
        page = await visitor.get("/notices", params={"q": words})
        assert page.status_code == 400
        assert 'id="notice-error"' in page.text and "关键词过长" in page.text


async def test_the_community_filter_shows_every_notice_that_applies_there(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    """A community's notices are those to it and its grids, and those to the street and the
    district it is in: a district-wide notice is for every resident. Not its neighbours'."""
    await add_notice(db, "花家地社区通知", grids=["C1"], minute=1)
    await add_notice(db, "第1网格通知", grids=["G1"], minute=2)
    await add_notice(db, "南湖社区通知", grids=["C2"], minute=3)
    await add_notice(db, "全区通知", grids=["D1"], minute=4)
    await add_notice(db, "花家地草稿", grids=["C1"], status="draft", minute=5)
    await add_notice(db, "望京街道通知", grids=["S1"], minute=6)
    await add_notice(db, "三里屯街道通知", grids=["S2"], minute=7)
    await add_notice(db, "第3网格通知", grids=["G3"], minute=8)
    page = await visitor.get("/notices", params={"community": "C1"})
    assert page.status_code == 200
    assert titles(page) == ["望京街道通知", "全区通知", "第1网格通知", "花家地社区通知"]
    # The select offers exactly the communities, the chosen one selected.
    options = re.findall(r'<option value="([^"]*)"( selected)?>', page.text)
    assert options == [("", ""), ("C1", " selected"), ("C2", ""), ("C3", "")]
    assert '<link rel="alternate" type="application/atom+xml" href="/communities/C1/feed.atom"' in (
        page.text
    )
    both = await visitor.get("/notices", params={"community": "C2", "q": "南湖"})
    assert titles(both) == ["南湖社区通知"]
    in_c2 = await visitor.get("/notices", params={"community": "C2"})
    assert titles(in_c2) == ["第3网格通知", "望京街道通知", "全区通知", "南湖社区通知"]
    # Another street's community: the district's notice and its own street's only.
    in_c3 = await visitor.get("/notices", params={"community": "C3"})
    assert titles(in_c3) == ["三里屯街道通知", "全区通知"]


async def test_the_latest_published_comes_first_everywhere(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    """A notice drafted early and published late is the news: it heads the home page, the list
    and both feeds, which all show and order by the publication time."""
    await add_notice(db, "早写晚发", grids=["C1"], minute=1, published_minute=50)
    await add_notice(db, "晚写早发", grids=["C1"], minute=2, published_minute=10)
    await add_notice(db, "最晚写的草稿", grids=["C1"], status="draft", minute=3)
    order = ["早写晚发", "晚写早发"]
    assert titles(await visitor.get("/notices")) == order
    assert titles(await visitor.get("/notices", params={"community": "C1"})) == order
    home = await visitor.get("/")
    assert [title for title, _ in HOME_ITEM.findall(home.text)] == order
    for url in ("/notices/feed.atom", "/communities/C1/feed.atom"):
        assert [e["title"] for e in entries(atom(await visitor.get(url)))] == order


async def test_the_home_page_shows_dates_and_departments_as_the_list_does(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    # 16:30 on 1 March in UTC is 00:30 on 2 March in Beijing.
    await add_notice(db, "深夜发布的通知", department="health", published_minute=8 * 60 + 30)
    for url, department in (("/", "卫健"), ("/?lang=en", "Health")):
        home = await visitor.get(url)
        assert home.status_code == 200
        [(title, meta)] = HOME_ITEM.findall(home.text)
        assert title == "深夜发布的通知"
        assert ">2025-03-02</time>" in meta and ">2025-03-01" not in meta
        assert f"{department} · " in meta
    for url, department in (("/notices", "卫健"), ("/notices?lang=en", "Health")):
        page = await visitor.get(url)
        assert ">2025-03-02</time>" in page.text and f"{department} · " in page.text


async def test_a_search_says_what_it_looked_for_and_how_much_it_found(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    await add_notice(db, "停水通知", grids=["C1"], minute=1)
    await add_notice(db, "停水预告", grids=["C2"], minute=2)
    await add_notice(db, "停电通知", grids=["C1"], minute=3)
    clear = re.compile(r'<a id="clear-search" href="([^"]*)">([^<]*)</a>')

    everything = await visitor.get("/notices")
    assert "共 3 条通知" in everything.text and not clear.search(everything.text)

    page = await visitor.get("/notices", params={"q": "停水"})
    assert "“停水” 的搜索结果：2 条" in page.text
    assert "<title>“停水” 的搜索结果 · 通知公告 · " in page.text
    found = clear.search(page.text)
    assert found and found.groups() == ("/notices", "清除搜索")
    assert len(listed(await visitor.get(found.group(1)))) == 3

    # Clearing the search keeps the community.
    narrowed = await visitor.get("/notices", params={"q": "停水", "community": "C1"})
    assert "“停水” 的搜索结果：1 条" in narrowed.text
    found = clear.search(narrowed.text)
    assert found and found.group(1) == "/notices?community=C1"

    # Nothing found is said too, with the words escaped.
    nothing = await visitor.get("/notices", params={"q": "<b>无</b>"})
    assert "“&lt;b&gt;无&lt;/b&gt;” 的搜索结果：0 条" in nothing.text
    assert 'id="no-results"' in nothing.text and "<b>无" not in nothing.text

    english = await visitor.get("/notices", params={"q": "停水", "lang": "en"})
    assert "2 result(s) for “停水”" in english.text
    found = clear.search(english.text)
    assert found and found.groups() == ("/notices?lang=en", "Clear the search")


@pytest.mark.parametrize("code", ["NOPE", "G1", "S1", "<script>"])
async def test_an_unknown_community_is_a_message(visitor: httpx.AsyncClient, code: str) -> None:
    page = await visitor.get("/notices", params={"community": code})
    assert page.status_code == 400
    assert 'id="notice-error"' in page.text and "没有这个社区" in page.text
    assert "<script>" not in page.text


async def test_pages_follow_the_cursors_without_repeats(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    made = [await add_notice(db, f"分页通知{n:02d}", minute=n) for n in range(45)]
    await add_notice(db, "其他通知", minute=100)
    newest_first = list(reversed(made))
    seen: list[str] = []
    pages: list[list[str]] = []
    url: str | None = "/notices?q=分页"
    while url is not None:
        page = await visitor.get(url)
        assert page.status_code == 200
        ids = [notice_id for notice_id, _ in listed(page)]
        # The links keep the search.
        for rel in ("next", "prev"):
            assert "q=%E5%88%86%E9%A1%B5" in (link(page, rel) or "q=%E5%88%86%E9%A1%B5")
        pages.append(ids)
        seen.extend(ids)
        if len(pages) == 1:
            assert link(page, "prev") is None
        url = link(page, "next")
    assert [len(ids) for ids in pages] == [20, 20, 5]
    assert seen == newest_first
    # And back again from the last page, by the "previous" links.
    url = link(page, "prev")
    back: list[list[str]] = []
    while url is not None:
        page = await visitor.get(url)
        back.append([notice_id for notice_id, _ in listed(page)])
        url = link(page, "prev")
    assert back == [pages[1], pages[0]]


@pytest.mark.parametrize(
    "query",
    [
        {"after": "garbage"},
        {"before": "!!!"},
        # A well-formed cursor of another list.
        {"after": base64.urlsafe_b64encode(b'["Event.ID",1,1]').decode().rstrip("=")},
    ],
)
async def test_a_bad_cursor_is_a_message(
    visitor: httpx.AsyncClient, db: Database, query: dict[str, str]
) -> None:
    await add_notice(db, "通知")
    page = await visitor.get("/notices", params=query)
    assert page.status_code == 400
    assert 'id="notice-error"' in page.text and "翻页链接无效" in page.text


# --- one notice -------------------------------------------------------------------------------

HOSTILE_BODY = """# 停电通知

**重要**：周六 *上午* 停电，详见 [供电公司](https://example.org/power) 或 [本站](/notices)。

- 第一项
- 第二项

`code` 与 <script>alert("raw")</script> 和 <img src=x onerror="alert(1)">

<svg onload="alert(2)"><circle r="1"/></svg>
<iframe src="https://evil.example/frame"></iframe>
<a href="javascript:alert(3)">raw link</a>

[点我](javascript:alert(4)) [再点](JaVaScRiPt:alert(5)) [数据](data:text/html;base64,PHNjcmlwdD4=)
<javascript:alert(6)>

![外站图片](https://evil.example/track.png) ![本站地图](/static/map.png) ![内嵌](data:image/png;base64,AAAA)
![协议相对](//evil.example/x.png)

<div onclick="alert(7)" style="color:red">div</div>
"""


async def test_a_notice_page_renders_its_markdown_inert(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    notice_id = await add_notice(
        db, "停电通知 <b>&</b>", body=HOSTILE_BODY, grids=["C1", "G3"], department="environment"
    )
    page = await visitor.get(f"/notices/{notice_id}")
    assert page.status_code == 200
    html = page.text
    assert_inert(html)
    body = html.split('<div class="notice-body">', 1)[1].split("</div>\n</article>", 1)[0]
    # The formatting survives, headings one level down under the title's h1.
    assert "<h2>停电通知</h2>" in body
    assert "<strong>重要</strong>" in body and "<em>上午</em>" in body
    assert "<li>第一项</li>" in body and "<code>code</code>" in body
    assert '<a href="https://example.org/power" rel="noopener noreferrer nofollow">' in body
    assert '<a href="/notices" rel="noopener noreferrer nofollow">' in body
    assert '<img src="/static/map.png" alt="本站地图">' in body
    # Raw HTML is dropped: neither markup nor text (a script's code goes with its tags);
    # other sites' and data: images are their alt text.
    for gone in ("&lt;script", 'alert("raw")', "alert(1)", "alert(2)", "&lt;iframe", "alert(7)"):
        assert gone not in body, gone
    assert "raw link" not in body and "onclick" not in body and ">div<" not in body
    assert "<code>code</code> 与  和 </p>" in body
    assert "evil.example/track.png" not in body and "外站图片" in body
    assert "data:image" not in body and "//evil.example/x.png" not in body
    assert [tag for tag, _ in Tags(body).tags if tag == "a"] == ["a", "a"]
    # The frame: title escaped, department, scope, time.
    assert "<h1>停电通知 &lt;b&gt;&amp;&lt;/b&gt;</h1>" in html
    assert '<article id="notice">' in html
    assert "生态环境" in html and "花家地社区" in html and "第3网格" in html
    assert '<a href="/notices?community=C1">花家地社区</a>' in html
    assert "</time>（北京时间）</dd>" in html
    assert '<link rel="alternate" type="application/atom+xml" href="/notices/feed.atom"' in html


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)><a xlink:href='javascript:alert(1)'>x</a></svg>",
        "<iframe src='https://evil.example' srcdoc='<script>alert(1)</script>'></iframe>",
        "<a href='javascript:alert(1)'>x</a>",
        "<a href=' jav&#x09;ascript:alert(1)'>x</a>",
        "<a href='data:text/html,<script>alert(1)</script>'>x</a>",
        "<img src='data:image/svg+xml,<svg onload=alert(1)>'>",
        "<object data='x.swf'></object><embed src='x.swf'>",
        "<style>body{background:url(javascript:alert(1))}</style>",
        "<p style='background:url(javascript:alert(1))' onmouseover='alert(1)'>p</p>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "<form action='javascript:alert(1)'><button formaction='javascript:alert(1)'>b</button>",
        "<!--<script>alert(1)</script>-->",
        "<details open ontoggle=alert(1)>",
        "<img src='https://evil.example/pixel.png'>",
    ],
)
def test_the_sanitiser_alone_leaves_no_script(hostile: str) -> None:
    """The second layer on its own: raw HTML that Markdown never emits (raw HTML is off) still
    comes out inert, should the first layer ever let some through."""
    cleaned = sanitise(hostile)
    assert_inert(cleaned)
    assert "evil.example" not in cleaned


def test_safe_markdown_keeps_its_shape() -> None:
    html = str(render("## 标题\n\n1. 一\n2. 二\n\n> 引用\n\n[邮件](mailto:a@example.org)"))
    assert "<h3>标题</h3>" in html and "<ol>" in html and "<blockquote>" in html
    assert '<a href="mailto:a@example.org" rel="noopener noreferrer nofollow">' in html


def test_tables_keep_their_cells_but_not_their_alignment() -> None:
    html = str(render("| 项目 | 时间 |\n|:--|--:|\n| 停水 | **周六** |\n| 停电 | 周日 |"))
    assert html.startswith('<div class="table-scroll" tabindex="0">\n<table>\n<thead>')
    assert "<th>项目</th>" in html and "<th>时间</th>" in html
    assert "<td>停水</td>" in html and "<td><strong>周六</strong></td>" in html
    assert html.rstrip().endswith("</table>\n</div>")
    # markdown-it writes alignment as style="", which the CSP refuses; it is not kept.
    assert "style" not in html and "align" not in html


def test_raw_html_is_dropped_not_shown() -> None:
    source = (
        "前 <script>alert(1)</script> 中 <b>粗</b>体 <br> 后\n\n"
        "<div>\n整块 HTML\n</div>\n\n"
        "<!-- 注释 -->\n\n"
        "<svg onload=alert(2)><text>图</text></svg>\n\n"
        "a < b 与 <通知> 与 <5分钟> 都是文字；<https://example.org> 是链接"
    )
    html = str(render(source))
    assert_inert(html)
    for gone in ("alert", "script", "整块", "注释", "div", "svg", "图", "<b>"):
        assert gone not in html, gone
    assert "<p>前  中 粗体  后</p>" in html
    # Nothing is left of a paragraph that held only tags.
    assert "<p></p>" not in html
    # Text that only looks like a tag stays, escaped; an autolink is still a link.
    assert "a &lt; b 与 &lt;通知&gt; 与 &lt;5分钟&gt; 都是文字" in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">' in html


def test_the_sanitiser_keeps_only_the_table_wrapper_of_divs() -> None:
    assert sanitise('<div class="table-scroll" tabindex="0">t</div>') == (
        '<div class="table-scroll" tabindex="0">t</div>'
    )
    assert sanitise('<div class="x" tabindex="-1" onclick="a()" style="b">t</div>') == (
        "<div>t</div>"
    )
    cell = sanitise('<table><tr><td style="text-align:right" align="right">1</td></tr></table>')
    assert "<td>1</td>" in cell and "style" not in cell and "align" not in cell


async def test_drafts_retracted_and_unknown_ids_are_not_found(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    draft = await add_notice(db, "草稿标题", status="draft")
    retracted = await add_notice(db, "撤回标题", status="retracted")
    missing = str(to_global_id("Notice", 999_999))
    other_type = str(to_global_id("Event", 1))
    for notice_id in (draft, retracted, missing, other_type, "garbage", "%00", "feed"):
        page = await visitor.get(f"/notices/{notice_id}")
        assert page.status_code == 404, notice_id
        assert "草稿标题" not in page.text and "撤回标题" not in page.text
        assert "没有这条通知" in page.text


# --- Atom feeds -------------------------------------------------------------------------------


def atom(response: httpx.Response) -> ElementTree.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{ATOM}feed"
    return root


def entries(feed: ElementTree.Element) -> list[dict[str, Any]]:
    found = []
    for entry in feed.findall(f"{ATOM}entry"):
        content = entry.find(f"{ATOM}content")
        assert content is not None
        link = entry.find(f"{ATOM}link[@rel='alternate']")
        assert link is not None
        found.append(
            {
                "id": entry.findtext(f"{ATOM}id"),
                "title": entry.findtext(f"{ATOM}title"),
                "updated": entry.findtext(f"{ATOM}updated"),
                "author": entry.findtext(f"{ATOM}author/{ATOM}name"),
                "href": link.get("href"),
                "content_type": content.get("type"),
                "content": content.text or "",
            }
        )
    return found


async def test_the_feed_carries_published_notices_sanitised(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    hostile = await add_notice(
        db, "标题 <b>&amp;</b> ]]>", body=HOSTILE_BODY, department="health", minute=1
    )
    plain = await add_notice(db, "普通通知", body="**加粗**", minute=2)
    await add_notice(db, "草稿", status="draft", minute=3)
    await add_notice(db, "撤回", status="retracted", minute=4)
    feed = atom(await visitor.get("/notices/feed.atom"))
    assert feed.findtext(f"{ATOM}id") == "tag:gridhub,2026:/notices/feed.atom"
    assert feed.findtext(f"{ATOM}title") == "通知公告"
    assert feed.find(f"{ATOM}link[@rel='self']") is not None
    found = entries(feed)
    assert [e["title"] for e in found] == ["普通通知", "标题 <b>&amp;</b> ]]>"]
    first, second = found
    # Relative links (no public address is configured) and host-independent tag ids.
    assert first["href"] == f"/notices/{plain}"
    assert first["id"] == f"tag:gridhub,2026:/notices/{plain}"
    assert second["href"] == f"/notices/{hostile}"
    assert first["content_type"] == "html" and "<strong>加粗</strong>" in first["content"]
    assert second["author"] == "卫健" and first["author"] == "民政"
    assert_inert(second["content"])
    assert "<h2>停电通知</h2>" in second["content"]
    # RFC 3339 times; the feed's own is its newest entry's.
    for entry in found:
        assert datetime.fromisoformat(entry["updated"]).tzinfo is not None
    assert feed.findtext(f"{ATOM}updated") == max(e["updated"] for e in found)
    english = atom(await visitor.get("/notices/feed.atom?lang=en"))
    assert english.findtext(f"{ATOM}title") == "Notices"
    assert entries(english)[1]["author"] == "Health"


async def test_a_community_feed_holds_every_notice_that_applies_there(
    visitor: httpx.AsyncClient, db: Database
) -> None:
    empty = atom(await visitor.get("/communities/C3/feed.atom"))
    assert entries(empty) == [] and empty.findtext(f"{ATOM}updated")
    await add_notice(db, "花家地社区通知", grids=["C1"], minute=1)
    await add_notice(db, "第2网格通知", grids=["G2"], minute=2)
    await add_notice(db, "南湖社区通知", grids=["C2"], minute=3)
    await add_notice(db, "全区通知", grids=["D1"], minute=4)
    await add_notice(db, "花家地草稿", grids=["C1"], status="draft", minute=5)
    await add_notice(db, "望京街道通知", grids=["S1"], minute=6)
    await add_notice(db, "三里屯街道通知", grids=["S2"], minute=7)
    feed = atom(await visitor.get("/communities/C1/feed.atom"))
    assert [e["title"] for e in entries(feed)] == [
        "望京街道通知",
        "全区通知",
        "第2网格通知",
        "花家地社区通知",
    ]
    assert feed.findtext(f"{ATOM}title") == "花家地社区的通知公告"
    alternate = feed.find(f"{ATOM}link[@rel='alternate']")
    assert alternate is not None
    assert alternate.get("href") == "/notices?community=C1"
    other_street = atom(await visitor.get("/communities/C3/feed.atom"))
    assert [e["title"] for e in entries(other_street)] == ["三里屯街道通知", "全区通知"]
    for code in ("NOPE", "G1", "S1"):
        assert (await visitor.get(f"/communities/{code}/feed.atom")).status_code == 404


# --- both languages ---------------------------------------------------------------------------


async def test_the_pages_speak_both_languages(visitor: httpx.AsyncClient, db: Database) -> None:
    notice_id = await add_notice(db, "双语通知", grids=["C1"], department="health")
    chinese = await visitor.get("/notices")
    assert '<html lang="zh-CN">' in chinese.text and "全部社区" in chinese.text
    english = await visitor.get("/notices?lang=en")
    assert '<html lang="en">' in english.text
    assert "All communities" in english.text and "Keywords" in english.text
    assert "Health" in english.text and "双语通知" in english.text
    detail = await visitor.get(f"/notices/{notice_id}?lang=en")
    assert detail.status_code == 200
    assert "Department" in detail.text and "Health" in detail.text
    assert "</time> (Beijing time)</dd>" in detail.text
    missing = await visitor.get("/notices/garbage?lang=en")
    assert missing.status_code == 404 and "There is no such notice" in missing.text
