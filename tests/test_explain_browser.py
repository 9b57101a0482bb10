"""The page's explanations in Chromium: highlights after astral characters, the mixed badge,
scores on hover and focus, the strongest phrase per batch row, user text never as HTML.

The server, browser and page fixtures are test_web_browser's, imported by name.
"""

# ruff: noqa: F811

from __future__ import annotations

import re

import pytest

from test_web_browser import (  # noqa: F401  (fixtures used by name)
    CHROMIUM,
    PageEvents,
    Server,
    _analyze,
    _open,
    _shot,
    browser,
    events,
    expect,
    page,
    server,
    sync_api,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found"),
]

ASTRAL_FIRST = "😀𠀀！服务很好，但是房间太差了"


def test_highlights_land_on_the_right_characters_after_emoji(
    page: sync_api.Page, server: Server, events: PageEvents
) -> None:
    _open(page, server)
    _analyze(page, ASTRAL_FIRST)
    box = page.locator("#result-text")
    expect(box).to_have_text(ASTRAL_FIRST)  # every character shown, once
    positive = box.locator(".xp-clause.xp-pos")
    negative = box.locator(".xp-clause.xp-neg")
    expect(positive).to_have_text("服务很好")  # 😀 and 𠀀 are two UTF-16 units each
    expect(negative.last).to_have_text("房间太差了")
    strength = positive.evaluate("e => e.style.getPropertyValue('--xp-strength')")
    assert 0.5 < float(strength) <= 1
    expect(positive.locator("mark.xp-phrase")).to_have_count(1)
    expect(negative.last.locator("mark.xp-phrase")).to_contain_text("差")
    expect(page.locator("#result-label .xp-badge")).to_have_text("混合 mixed")
    _shot(page, "explain-mixed")
    # the score: a tooltip on hover (title) and, for keyboards, on focus (::after)
    assert re.fullmatch(r"分句 clause \+[01]\.\d\d", positive.get_attribute("title") or "")
    positive.focus()
    shown = positive.evaluate("e => getComputedStyle(e, '::after').content")
    assert re.fullmatch(r'"\+[01]\.\d\d"', shown)
    assert page.evaluate("window.__cspViolations") == []
    assert events.page_errors == [] and events.console_errors == []


def test_user_text_is_never_html(page: sync_api.Page, server: Server, events: PageEvents) -> None:
    _open(page, server)
    payload = '<img src=x onerror="alert(1)">很好，<b>太差</b>'
    _analyze(page, payload)
    box = page.locator("#result-text")
    expect(box).to_have_text(payload)
    expect(box.locator("img")).to_have_count(0)
    expect(box.locator("b")).to_have_count(0)
    expect(box.locator(".xp-clause").first).to_be_visible()
    assert events.dialogs == []


def test_one_sided_review_has_no_badge(page: sync_api.Page, server: Server) -> None:
    _open(page, server)
    _analyze(page, "服务很好，房间干净，非常满意")
    expect(page.locator("#result-text .xp-clause.xp-pos").first).to_be_visible()
    expect(page.locator("#result-label .xp-badge")).to_have_count(0)


def test_batch_rows_show_their_strongest_phrase(page: sync_api.Page, server: Server) -> None:
    _open(page, server)
    page.click("#tab-batch")
    page.fill("#batch-text", "😀𠀀服务很好\n质量太差了，很失望\n" + ASTRAL_FIRST)
    page.click("#batch-analyze")
    rows = page.locator("#batch-body tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator(".xp-row mark.xp-pos")).to_contain_text("好")
    expect(rows.nth(1).locator(".xp-row mark.xp-neg")).to_be_visible()
    expect(rows.nth(2).locator(".xp-row .xp-badge")).to_have_text("混合 mixed")
    _shot(page, "explain-batch")
