"""Real-browser tests of the web page: Debian's Chromium driven by Playwright, real server.

The server runs as a subprocess on a free 127.0.0.1 port with the tiny test bundle. One browser
is shared by the module; every test gets a fresh context (empty localStorage). Screenshots go to
``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from qinggan.bundle import Bundle

CHROMIUM = os.environ.get("QINGGAN_CHROMIUM") or shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
API_KEY = "web-test-key-123"
BATCH_LIMIT = 2  # texts per /v1/analyze request, small so the page must chunk
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POSITIVE = "酒店服务很好，房间干净，非常满意"
NEGATIVE = "质量太差了，很失望，糟糕"

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


# ---------- the server ----------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _start_server(
    bundle: Bundle, log: Path, *extra: str, env_extra: dict[str, str] | None = None
) -> Server:
    """Run `qinggan serve` on a free port and wait until /ready answers 200.

    Its output goes to ``log`` (a file, so a chatty server can never block on a full pipe).
    """
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGGAN_")}
    env.update(
        QINGGAN_MAX_BATCH_TEXTS=str(BATCH_LIMIT), QINGGAN_THREADS="1", QINGGAN_LOG_LEVEL="warning"
    )
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "qinggan.cli", "serve", "--model", str(bundle.path)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"qinggan serve exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return Server(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    _stop(process)
    pytest.fail("qinggan serve did not become ready within 60 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def server(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = _start_server(tiny_bundle, tmp_path_factory.mktemp("web") / "server.log")
    yield srv
    _stop(srv.process)


@pytest.fixture(scope="module")
def keyed_server(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("web") / "keyed-server.log"
    # A non-default text limit shows that the page reads /info (with the key) for its counter.
    srv = _start_server(
        tiny_bundle, log, "--api-key", API_KEY, env_extra={"QINGGAN_MAX_TEXT_CHARS": "200"}
    )
    yield srv
    _stop(srv.process)


# ---------- the browser ----------


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Records CSP violations in the page, seen before any page script runs.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


@dataclass
class PageEvents:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def events() -> PageEvents:
    return PageEvents()


def _new_page(browser: sync_api.Browser, events: PageEvents, **context_args: object):
    context = browser.new_context(accept_downloads=True, locale="zh-CN", **context_args)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: m.type == "error" and events.console_errors.append(m.text))
    page.on("pageerror", lambda e: events.page_errors.append(str(e)))

    def on_dialog(dialog: sync_api.Dialog) -> None:
        events.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda r: events.requests.append(f"{r.method} {r.url}"))
    return context, page


@pytest.fixture
def page(browser: sync_api.Browser, events: PageEvents) -> Iterator[sync_api.Page]:
    context, pg = _new_page(browser, events, viewport={"width": 1100, "height": 900})
    yield pg
    context.close()


def _open(page: sync_api.Page, server: Server) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")


def _shot(page: sync_api.Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


def _analyze(page: sync_api.Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#analyze")


# ---------- tests ----------


def test_page_loads_without_errors_under_strict_csp(
    page: sync_api.Page, server: Server, events: PageEvents
) -> None:
    response = page.goto(server.url + "/")
    assert response is not None and response.ok
    assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")
    expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")
    expect(page.locator("#char-count")).to_have_text("0 / 512")
    expect(page.locator("h1")).to_contain_text("情感分析")
    assert page.evaluate("window.__cspViolations") == []
    assert events.console_errors == [] and events.page_errors == []
    assert all(server.url in request for request in events.requests), events.requests
    _shot(page, "empty")


def test_api_docs_render_offline(page: sync_api.Page, server: Server, events: PageEvents) -> None:
    """/docs shows the OpenAPI reference from local assets: no CDN, no CSP violation."""
    response = page.goto(server.url + "/docs")
    assert response is not None and response.ok
    assert "script-src 'self';" in (response.headers.get("content-security-policy") or "")
    expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible()
    expect(page.locator(".swagger-ui")).to_contain_text("/analyze")
    assert page.evaluate("window.__cspViolations") == []
    assert events.page_errors == []
    assert all(server.url in request for request in events.requests), events.requests
    _shot(page, "docs")


def test_analyze_positive_then_negative(page: sync_api.Page, server: Server) -> None:
    _open(page, server)
    _analyze(page, POSITIVE)
    expect(page.locator("#result-label")).to_contain_text("正面")
    expect(page.locator("#result-emoji")).to_have_text("😄")
    expect(page.locator("#result-text")).to_have_text(POSITIVE)
    bar = page.get_by_role("progressbar")
    value = float(bar.get_attribute("aria-valuenow") or 0)
    assert 50 < value <= 100
    fill_width = page.locator("#confidence-fill").evaluate("e => e.style.width")
    assert fill_width == f"{value:g}%"
    expect(page.locator("#char-count")).to_have_text(f"{len(POSITIVE)} / 512")
    _shot(page, "positive")

    page.fill("#text", NEGATIVE)
    page.press("#text", "Control+Enter")
    expect(page.locator("#result-label")).to_contain_text("负面")
    expect(page.locator("#result-emoji")).to_have_text("😠")
    assert float(bar.get_attribute("aria-valuenow") or 0) > 50
    _shot(page, "negative")


def test_history_survives_reload_and_clears(page: sync_api.Page, server: Server) -> None:
    _open(page, server)
    expect(page.locator("#history-empty")).to_be_visible()
    _analyze(page, POSITIVE)
    expect(page.locator("#history-list li")).to_have_count(1)
    _analyze(page, NEGATIVE)
    expect(page.locator("#history-list li")).to_have_count(2)

    page.reload()
    items = page.locator("#history-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text(NEGATIVE)  # newest first
    expect(items.nth(0)).to_contain_text("负面")
    expect(items.nth(1)).to_contain_text(POSITIVE)
    items.nth(1).locator("button").click()  # loads the text back into the box
    expect(page.locator("#text")).to_have_value(POSITIVE)

    page.click("#history-clear")
    expect(items).to_have_count(0)
    expect(page.locator("#history-empty")).to_be_visible()
    page.reload()
    expect(page.locator("#history-list li")).to_have_count(0)


def test_history_is_capped_and_tolerates_bad_storage(
    page: sync_api.Page, server: Server, events: PageEvents
) -> None:
    _open(page, server)
    page.evaluate("localStorage.setItem('qinggan.history.v1', '{not json')")
    page.reload()
    expect(page.locator("#history-empty")).to_be_visible()
    old = [{"text": f"旧记录 {i}", "label": "Positive", "confidence": 0.9} for i in range(60)]
    page.evaluate("items => localStorage.setItem('qinggan.history.v1', JSON.stringify(items))", old)
    page.reload()
    items = page.locator("#history-list li")
    expect(items).to_have_count(50)
    _analyze(page, NEGATIVE)
    expect(items.nth(0)).to_contain_text(NEGATIVE)
    expect(items).to_have_count(50)
    expect(items.nth(49)).to_contain_text("旧记录 48")
    stored = page.evaluate("JSON.parse(localStorage.getItem('qinggan.history.v1')).length")
    assert stored == 50
    assert events.page_errors == []


def test_batch_table_and_csv_download(
    page: sync_api.Page, server: Server, events: PageEvents, tmp_path: Path
) -> None:
    texts = [
        POSITIVE,
        NEGATIVE,
        '他说"好"，很棒, 推荐',
        "=1+2 东西不错很好",
        "物流太慢，包装很差",
    ]
    _open(page, server)
    page.click("#tab-batch")
    page.fill("#batch-text", "\n".join([texts[0], "", *texts[1:], "   "]))
    expect(page.locator("#batch-count")).to_contain_text("5 条")
    page.click("#batch-analyze")
    rows = page.locator("#batch-body tr")
    expect(rows).to_have_count(len(texts))
    expected = ["正面", "负面", "正面", "正面", "负面"]
    for i, (text, label) in enumerate(zip(texts, expected, strict=True)):
        expect(rows.nth(i).locator("td").nth(1)).to_have_text(text)
        expect(rows.nth(i).locator("td").nth(2)).to_contain_text(label)
    posts = [r for r in events.requests if r.startswith("POST") and r.endswith("/v1/analyze")]
    assert len(posts) == 3  # 5 texts in chunks of BATCH_LIMIT=2, from GET /info
    _shot(page, "batch")

    with page.expect_download() as download_info:
        page.click("#batch-download")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    path = tmp_path / "out.csv"
    download.save_as(path)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    assert b"\r\n" in raw
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert table[0] == ["text", "label", "label_zh", "confidence", "error"]
    body = table[1:]
    assert [row[0] for row in body] == [*texts[:3], "'" + texts[3], texts[4]]
    assert [row[2] for row in body] == expected
    assert [row[1] for row in body] == ["Positive" if x == "正面" else "Negative" for x in expected]
    assert all(0.5 < float(row[3]) <= 1 for row in body)


def test_xss_payloads_render_as_text(
    page: sync_api.Page, server: Server, events: PageEvents
) -> None:
    payloads = ["<img src=x onerror=alert(1)>", "<script>alert(1)</script>"]
    _open(page, server)
    images_before = page.locator("img").count()
    scripts_before = page.locator("script").count()
    for payload in payloads:
        _analyze(page, payload)
        expect(page.locator("#result-text")).to_have_text(payload)
    expect(page.locator("#history-list li").nth(0)).to_contain_text(payloads[1])
    expect(page.locator("#history-list li").nth(1)).to_contain_text(payloads[0])
    page.click("#tab-batch")
    page.fill("#batch-text", "\n".join(payloads))
    page.click("#batch-analyze")
    expect(page.locator("#batch-body tr")).to_have_count(2)
    expect(page.locator("#batch-body tr").nth(0).locator("td").nth(1)).to_have_text(payloads[0])
    page.reload()  # history is rendered again from localStorage
    expect(page.locator("#history-list li")).to_have_count(2)
    page.wait_for_timeout(300)  # give any injected handler a chance to fire
    assert page.locator("img").count() == images_before
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("script").count() == scripts_before
    assert events.dialogs == []
    assert events.page_errors == []


def test_text_over_limit_shows_413_message(page: sync_api.Page, server: Server) -> None:
    _open(page, server)
    page.fill("#text", "好" * 600)
    expect(page.locator("#char-count")).to_have_text("600 / 512")
    expect(page.locator("#char-count")).to_have_class("counter over")
    page.click("#analyze")
    alert = page.get_by_role("alert").first
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("文本过长")
    expect(alert).to_contain_text("512")
    expect(page.locator("#result")).to_be_hidden()
    _shot(page, "too-long")


def test_network_failure_and_overload_are_reported(page: sync_api.Page, server: Server) -> None:
    _open(page, server)
    page.route("**/analyze", lambda route: route.abort())
    _analyze(page, POSITIVE)
    expect(page.locator("#single-error")).to_contain_text("无法连接服务器")

    page.unroute("**/analyze")
    busy = '{"error": {"code": "overloaded", "message": "the queue is full"}}'
    page.route(
        "**/analyze",
        lambda route: route.fulfill(
            status=503, body=busy, content_type="application/json", headers={"Retry-After": "3"}
        ),
    )
    page.click("#analyze")
    error = page.locator("#single-error")
    expect(error).to_contain_text("服务器繁忙")
    expect(error).to_contain_text("Retry in 3 s")
    expect(error).to_contain_text("the queue is full")


def test_api_key_required_then_accepted(page: sync_api.Page, keyed_server: Server) -> None:
    page.goto(keyed_server.url + "/")
    expect(page.locator("#server-status")).to_have_attribute("data-state", "auth")
    _analyze(page, POSITIVE)
    expect(page.locator("#single-error")).to_contain_text("API 密钥")
    expect(page.locator("#result")).to_be_hidden()
    _shot(page, "unauthorized")

    page.fill("#api-key", API_KEY)
    page.click("#api-key-form button[type=submit]")
    expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")
    expect(page.locator("#char-count")).to_have_text(f"{len(POSITIVE)} / 200")
    page.click("#analyze")
    expect(page.locator("#result-label")).to_contain_text("正面")
    expect(page.locator("#single-error")).to_be_hidden()
    page.reload()  # the key is remembered
    expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")


def test_dark_mode_and_small_screen_screenshots(
    browser: sync_api.Browser, server: Server, events: PageEvents
) -> None:
    context, pg = _new_page(
        browser, events, color_scheme="dark", viewport={"width": 390, "height": 800}
    )
    try:
        _open(pg, server)
        _analyze(pg, NEGATIVE)
        expect(pg.locator("#result-label")).to_contain_text("负面")
        text_colour = pg.evaluate("getComputedStyle(document.body).color")
        assert text_colour != "rgb(29, 32, 48)"  # the light theme's text colour
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing overflows sideways on a phone
        _shot(pg, "dark-mobile")
    finally:
        context.close()
