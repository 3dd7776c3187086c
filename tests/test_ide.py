"""The GraphiQL IDE at /graphql: GridHub serves every file it needs, nothing comes from another host.

Static checks (in-process): the page and each file it references, transitively through CSS.
"Loaded from another host" means a URL the browser would fetch: an HTML src/href, a CSS url() or
@import, a source map, or a URL literal handed to a loading API in JS (fetch, import(),
importScripts, Worker, WebSocket, EventSource, sendBeacon, .src=/.href=, a <script>/<link>/<img>
tag in a string). URLs in license comments, error messages and XML namespaces load nothing and
are allowed. The dynamic check (node + jsdom against a live server) boots the page and records
every request it makes.

The IDE does not depend on the database backend, so these run on SQLite only.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from hub.api.http import IDE_ASSETS_PATH
from tests.http_audit.node import node_command
from tests.live import live_server
from tests.world import World

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ROOT = Path(__file__).parent.parent
STATIC = ROOT / "hub" / "api" / "static"
VENDOR = STATIC / "graphiql" / "vendor"
PAGE_URL = "http://testserver/graphql"
HTML = {"accept": "text/html"}
# A guard against vendoring a development build or a second copy of something by accident.
VENDOR_BUDGET_BYTES = 2_500_000

URL_ATTRIBUTES = {
    "src",
    "href",
    "srcset",
    "poster",
    "action",
    "formaction",
    "data",
    "manifest",
    "background",
    "ping",
    "xlink:href",
}
CDN_HOSTS = re.compile(
    r"//(?:unpkg\.com|cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com|esm\.sh|cdn\.skypack\.dev"
    r"|ga\.jspm\.io|fonts\.googleapis\.com|fonts\.gstatic\.com)\b"
)
ABSOLUTE = r"(?:(?:https?|wss?):)?//[^\"'`\s\\]+"
JS_LOADS = [
    re.compile(
        r"(?:\bfetch|\bimport|\bimportScripts|\bnew\s+(?:Shared)?Worker|\bnew\s+WebSocket"
        r"|\bnew\s+EventSource|\bsendBeacon)\s*\(\s*[\"'`](" + ABSOLUTE + ")"
    ),
    re.compile(r"\.(?:src|href)\s*=\s*[\"'`](" + ABSOLUTE + ")"),
    re.compile(
        r"<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)\s*=\s*\\?[\"']?("
        + ABSOLUTE
        + ")"
    ),
    re.compile(r"sourceMappingURL\s*=\s*(" + ABSOLUTE + ")"),
]
CSS_URL = re.compile(r"url\(\s*([\"']?)(.*?)\1\s*\)", re.DOTALL)
CSS_IMPORT = re.compile(r"@import\s+(?:url\(\s*)?[\"']?([^\"')\s;]+)")


class References(HTMLParser):
    """Every URL-bearing attribute of the page, plus inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.scripts: list[str] = []  # src of <script>, in order
        self.stylesheets: list[str] = []
        self.inline: list[str] = []  # text of inline <script> and <style>, style attributes
        self.lang: str | None = None
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "html":
            self.lang = values.get("lang")
        for name, value in values.items():
            if name in URL_ATTRIBUTES:
                self.urls.extend((tag, name, part.split()[0]) for part in value.split(",") if part)
            if name == "style":
                self.inline.append(value)
        if tag == "script" and "src" in values:
            self.scripts.append(values["src"])
        if tag == "link" and "stylesheet" in values.get("rel", "").split():
            self.stylesheets.append(values["href"])
        self._in = tag if tag in {"script", "style", "title"} else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in in {"script", "style"} and data.strip():
            self.inline.append(data)


def same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "" and parts.netloc == "" and not url.startswith("//")


def js_loads_from_elsewhere(source: str) -> list[str]:
    found = [match.group(1) for pattern in JS_LOADS for match in pattern.finditer(source)]
    return found + [match.group(0) for match in CDN_HOSTS.finditer(source)]


def css_references(source: str) -> list[str]:
    return [match.group(2).strip() for match in CSS_URL.finditer(source)] + [
        match.group(1) for match in CSS_IMPORT.finditer(source)
    ]


async def _page(client: httpx.AsyncClient) -> tuple[str, References]:
    response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = References()
    page.feed(response.text)
    return response.text, page


@sqlite_only
async def test_ide_page_is_served_for_browsers(client: httpx.AsyncClient) -> None:
    _, page = await _page(client)
    assert page.lang == "en"
    assert page.title.strip()
    # The vendored UMD builds, in dependency order, then the page's own boot script.
    names = [Path(urlsplit(src).path).name for src in page.scripts]
    assert names == [
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "ide.js",
    ]
    assert "graphiql.min.css" in {Path(href).name for href in page.stylesheets}
    # JSON clients still get JSON from the same URL.
    api = await client.get("/graphql", params={"query": "{ __typename }"})
    assert api.json() == {"data": {"__typename": "Query"}}


@sqlite_only
async def test_ide_references_only_same_origin_files_that_exist(client: httpx.AsyncClient) -> None:
    text, page = await _page(client)
    # The page is ours: not even a link to another host.
    assert not re.search(r"(?:https?|wss?)://", text), "absolute URL in the IDE page"
    assert not page.inline, "inline script/style: keep the page CSP-friendly, use files"
    assert page.urls, "the page references nothing?"
    checked: set[str] = set()
    stylesheets: list[str] = []
    for tag, attribute, value in page.urls:
        assert same_origin(value), f"<{tag} {attribute}={value!r}> is not same-origin"
        url = urljoin(PAGE_URL, value)
        assert urlsplit(url).path.startswith(IDE_ASSETS_PATH + "/")
        response = await client.get(url)
        assert response.status_code == 200, url
        checked.add(url)
        if tag == "script":
            assert "javascript" in response.headers["content-type"], url
            assert not js_loads_from_elsewhere(response.text), url
        if tag == "link":
            assert response.headers["content-type"].startswith("text/css"), url
            stylesheets.append(url)
    for url in stylesheets:
        css = (await client.get(url)).text
        for reference in css_references(css):
            if reference.startswith("data:"):
                continue
            assert same_origin(reference), f"{url} loads {reference[:80]!r}"
            target = urljoin(url, reference)
            assert (await client.get(target)).status_code == 200, target
            checked.add(target)
    assert len(checked) >= 6


def test_no_vendored_file_loads_from_another_host() -> None:
    # Also the files the page does not reference (yet): everything that ships.
    files = sorted(p for p in (STATIC / "graphiql").rglob("*") if p.suffix in {".js", ".css"})
    assert len(files) >= 6
    for path in files:
        source = path.read_text(encoding="utf-8")
        if path.suffix == ".js":
            assert not js_loads_from_elsewhere(source), path
        else:
            assert all(
                ref.startswith("data:") or same_origin(ref) for ref in css_references(source)
            ), path


@pytest.mark.parametrize(
    "source",
    [
        'fetch("https://unpkg.com/x.js")',
        "import('//esm.sh/react')",
        "importScripts('http://example.org/w.js')",
        'new Worker("https://example.org/w.js")',
        'new WebSocket("wss://example.org/graphql")',
        's.src="//cdn.example.org/x.js"',
        'el.innerHTML="<script src=\\"https://example.org/x.js\\"></script>"',
        "//# sourceMappingURL=https://example.org/x.js.map",
        "/* see https://cdn.jsdelivr.net/npm/graphiql */",
    ],
)
def test_the_js_check_catches_loads(source: str) -> None:
    assert js_loads_from_elsewhere(source)


@pytest.mark.parametrize(
    "source",
    [
        'throw new Error("see https://github.com/graphql/graphql-js/issues/2203")',
        'createElementNS("http://www.w3.org/2000/svg", "svg")',
        "/*! @license MIT https://github.com/facebook/react */",
        'fetch("/graphql")',
    ],
)
def test_the_js_check_allows_mentions(source: str) -> None:
    assert not js_loads_from_elsewhere(source)


def test_css_check_sees_urls_and_imports() -> None:
    css = "a{background:url( 'https://x.org/a.png' )}@import url(//x.org/b.css);b{src:url(data:x)}"
    assert css_references(css) == [
        "https://x.org/a.png",
        "//x.org/b.css",
        "data:x",
        "//x.org/b.css",
    ]


def test_vendored_files_match_versions_md() -> None:
    notes = (VENDOR / "VERSIONS.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+\.(?:js|css)) \| (\d+) \| ([0-9a-f]{64}) \|$", notes, re.M)
    assert {name for name, _, _ in rows} == {
        p.name for p in VENDOR.iterdir() if p.suffix in {".js", ".css"}
    }
    for name, size, sha256 in rows:
        data = (VENDOR / name).read_bytes()
        assert len(data) == int(size), name
        assert hashlib.sha256(data).hexdigest() == sha256, f"{name} changed by hand?"
    for package in ("graphiql", "react", "react-dom"):
        license_text = (VENDOR / f"LICENSE.{package}.txt").read_text(encoding="utf-8")
        assert "MIT License" in license_text
        assert re.search(rf"^\| {re.escape(package)} \| \d+\.\d+\.\d+ \|", notes, re.M), package
    total = sum(p.stat().st_size for p in VENDOR.iterdir())
    assert total < VENDOR_BUDGET_BYTES, f"vendored IDE is {total} bytes"


def test_ide_files_ship_in_the_package() -> None:
    # pyproject's package-data patterns cover every file under hub/api/static...
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["hub"]
    covered = {
        Path(match).resolve()
        for pattern in patterns
        for match in glob.glob(str(ROOT / "hub" / pattern), recursive=True)
    }
    shipped = {p.resolve() for p in STATIC.rglob("*") if p.is_file()}
    assert shipped and shipped <= covered, sorted(map(str, shipped - covered))
    # ...and the running package finds them through importlib.resources, as the server does.
    static = resources.files("hub.api") / "static" / "graphiql"
    assert (static / "index.html").is_file()
    assert (static / "vendor" / "graphiql.min.js").is_file()


@sqlite_only
async def test_ide_assets_are_compressed(client: httpx.AsyncClient) -> None:
    response = await client.get(
        IDE_ASSETS_PATH + "/vendor/graphiql.min.js", headers={"accept-encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.num_bytes_downloaded < len(response.content) / 2


def _default_query() -> str:
    source = (STATIC / "graphiql" / "ide.js").read_text(encoding="utf-8")
    match = re.search(r"const DEFAULT_QUERY = `(.*?)`;", source, re.DOTALL)
    assert match, "ide.js has no DEFAULT_QUERY"
    return match.group(1)


@sqlite_only
async def test_default_query_runs(app: Any, world: World) -> None:
    """A first visitor has no token: the IDE's default query must work as the public role."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as visitor:
        body = (await visitor.post("/graphql", json={"query": _default_query()})).json()
    assert "errors" not in body, body
    assert body["data"]["me"]["role"] == "public"
    assert body["data"]["notices"]["totalCount"] == 0


@sqlite_only
@pytest.mark.node
def test_ide_boots_in_jsdom(database_url: str, policy_dir: Path, world: World) -> None:
    command = node_command("ide_boot.mjs")
    with live_server(database_url, policy_dir) as server:
        # What the Run button must show: the default query's answer before the boot's mutation.
        expected = httpx.post(
            server.graphql_url, json={"query": _default_query()}, headers=server.headers
        ).json()
        # The page's requests carry superuser's headers (as behind an authenticating proxy):
        # the default query and the subscription read fields public does not see.
        run = subprocess.run(
            [*command, server.graphql_url, "G1"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "GRIDHUB_TEST_HEADERS": json.dumps(dict(server.headers))},
        )
        report: dict[str, Any] = json.loads(run.stdout) if run.stdout.strip() else {}
        assert run.returncode == 0, (report.get("errors"), run.stderr[-2000:])
    assert report["errors"] == []
    assert report["foreign"] == []
    origin = server.url + "/"
    assert all(url.startswith(origin) for url in report["loaded"] + report["fetched"])
    assert {urlsplit(url).path for url in report["loaded"]} >= {
        f"{IDE_ASSETS_PATH}/vendor/graphiql.min.js",
        f"{IDE_ASSETS_PATH}/ide.js",
    }
    # Introspection and the Run button both went to /graphql over HTTP...
    assert len(report["fetched"]) >= 2
    assert {urlsplit(url).path for url in report["fetched"]} == {"/graphql"}
    assert [(a["status"], a["errors"]) for a in report["answers"]] == [(200, None)] * len(
        report["fetched"]
    ), "the IDE's introspection or query was refused"
    # ...the default query's result is what the API answers...
    assert report["queryResult"] == expected
    # ...and the subscription ran over graphql-transport-ws on the same URL.
    assert report["sockets"] == [{"url": server.ws_url, "protocols": "graphql-transport-ws"}]
    assert report["subscriptionResult"] == {
        "data": {
            "eventChanged": {
                "action": "report",
                "event": {"title": report["subscriptionTitle"], "grid": {"code": "G1"}},
            }
        }
    }
