"""The web page's "纠正 Correct" flow in Debian's Chromium (Playwright), against a real
server that stores corrections: one click stores the other label, the item says so, a
refused request (401) reads as a message, and nothing appears when corrections are off."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qinggan.bundle import Bundle
from qinggan.feedback import open_store
from serverproc import ServerProcess

CHROMIUM = os.environ.get("QINGGAN_CHROMIUM") or shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
API_KEY = "feedback-web-key"
NEGATIVE = "质量太差了，很失望，糟糕"
HOSTILE = '<img src=x onerror="window.__pwned=1">好极了，非常满意'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium not found: apt-get install -y chromium, or set QINGGAN_CHROMIUM",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1100, "height": 900})
    context.add_init_script(CSP_LISTENER)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    assert pg.evaluate("window.__cspViolations") == []
    assert pg.evaluate("window.__pwned") is None
    assert errors == []
    context.close()


def analyze(page: sync_api.Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#analyze")
    expect(page.locator("#result-text")).to_have_text(text)


def save_key(page: sync_api.Page, key: str) -> None:
    if page.locator("#settings").get_attribute("open") is None:
        page.click("#settings summary")
    page.fill("#api-key", key)
    page.click("#api-key-form button[type=submit]")


def test_correct_a_result_and_a_history_item(
    page: sync_api.Page, tiny_bundle: Bundle, tmp_path: Path
) -> None:
    db = tmp_path / "fb.db"
    args = ["--feedback-db", str(db)]
    with ServerProcess(tiny_bundle.path, args=args, env={"QINGGAN_API_KEY": API_KEY}) as server:
        page.goto(server.base_url + "/")
        expect(page.locator("#server-status")).to_have_attribute("data-state", "auth")
        save_key(page, API_KEY)
        expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")

        analyze(page, HOSTILE)
        result_button = page.locator("#result .feedback-correct")
        expect(result_button).to_have_text("纠正 Correct")
        analyze(page, NEGATIVE)
        history = page.locator("#history-list .history-item")
        expect(history).to_have_count(2)
        expect(history.locator(".feedback-correct")).to_have_count(2)

        # A wrong key: the correction is refused with a readable message, nothing stored.
        save_key(page, "wrong-key")
        expect(page.locator("#server-status")).to_have_attribute("data-state", "auth")
        page.locator("#result .feedback-correct").click()
        error = page.locator("#result .feedback-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("API 密钥")
        expect(error).to_contain_text("A valid API key is required")
        assert "{" not in error.inner_text()

        save_key(page, API_KEY)
        page.locator("#result .feedback-correct").click()  # the negative one: now Positive
        expect(page.locator("#result .feedback-done")).to_contain_text("Positive")
        expect(page.locator("#result .feedback-error")).to_be_hidden()
        first = history.nth(0)  # the same text, newest first: marked as corrected too
        expect(first.locator(".feedback-done")).to_contain_text("正面")

        second = history.nth(1)  # the hostile text, corrected from the history
        second.locator(".feedback-correct").click()
        expect(second.locator(".feedback-done")).to_contain_text("Negative")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-feedback.png"), full_page=True)

        page.reload()  # the marks outlive a reload
        expect(page.locator("#history-list .feedback-done")).to_have_count(2)
        headers = {"X-API-Key": API_KEY}
        stats = httpx.get(server.base_url + "/v1/feedback/stats", headers=headers).json()
    assert stats["count"] == 2
    with open_store(str(db), create=False) as store:
        stored = {c.text: (c.label, c.predicted) for c in store.corrections()}
    assert stored == {NEGATIVE: ("Positive", "Negative"), HOSTILE: ("Negative", "Positive")}


def test_no_correct_button_when_corrections_are_off(
    page: sync_api.Page, tiny_bundle: Bundle
) -> None:
    with ServerProcess(tiny_bundle.path) as server:
        page.goto(server.base_url + "/")
        expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")
        analyze(page, NEGATIVE)
        expect(page.locator("#history-list .history-item")).to_have_count(1)
        expect(page.locator(".feedback-correct")).to_have_count(0)


def test_with_more_labels_the_click_offers_the_others(
    page: sync_api.Page, tiny_bundle: Bundle, tmp_path: Path
) -> None:
    """A three-label model (its /info stubbed in the browser): 纠正 offers the two others."""
    sent: list[dict[str, object]] = []

    def three_labels(route: sync_api.Route) -> None:
        info = route.fetch().json()
        info["model"]["labels"] = ["Negative", "Neutral", "Positive"]
        info["model"]["display_labels"] = ["负面", "中性", "正面"]
        route.fulfill(json=info)

    def stored(route: sync_api.Route) -> None:
        sent.append(route.request.post_data_json)
        route.fulfill(status=201, json={"id": 1})

    with ServerProcess(tiny_bundle.path, args=["--feedback-db", str(tmp_path / "fb.db")]) as server:
        page.route("**/info", three_labels)
        page.route("**/v1/feedback", stored)
        page.goto(server.base_url + "/")
        expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")
        analyze(page, NEGATIVE)
        page.locator("#result .feedback-correct").click()
        choices = page.locator("#result .feedback-choice")
        expect(choices).to_have_count(2)
        expect(choices.nth(0)).to_contain_text("中性 Neutral")
        expect(choices.nth(1)).to_contain_text("正面 Positive")
        choices.nth(0).click()
        expect(page.locator("#result .feedback-done")).to_contain_text("Neutral")
    assert len(sent) == 1
    assert (sent[0]["text"], sent[0]["label"], sent[0]["predicted"]) == (
        NEGATIVE,
        "Neutral",
        "Negative",
    )
