"""The real-browser tests' fixtures, as a pytest plugin: test modules name it in
`pytest_plugins`, so the session-scoped browser is launched once for the whole run.

- `browser`: one headless Debian chromium per session (tests/browser.py).
- `hub`: per test module and backend, a fresh `gridhub serve` over the emptied test database
  with the small world and some public content. Tests add what they need with unique titles,
  so one server serves a whole module.
- `browsing`: a fresh browser context per test; a failed test leaves a screenshot of every page
  it had open under the artefacts folder ($GRIDHUB_ARTIFACTS/failures/).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.browser import (
    Browsing,
    Hub,
    artifacts_dir,
    browsing_in,
    keep_screenshots,
    launched_chromium,
    running_hub,
)


@pytest.fixture(scope="session")
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    # Failure screenshots are this run's only: an old one would point at a fixed problem. Under
    # pytest-xdist the controller clears them before the workers start (tests/conftest.py): a
    # worker's browser starting late must not remove what the other worker kept.
    if not hasattr(request.config, "workerinput"):
        shutil.rmtree(artifacts_dir() / "failures", ignore_errors=True)
    async with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
async def hub(database_url: str, policy_dir: Path) -> AsyncIterator[Hub]:
    async with running_hub(database_url, policy_dir) as running:
        yield running


@pytest.fixture
async def browsing(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Browsing]:
    async with browsing_in(browser) as session:
        yield session
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            await keep_screenshots(session.context, request.node.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # The outcome of the test's call, for `browsing` to keep screenshots of a failure.
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
