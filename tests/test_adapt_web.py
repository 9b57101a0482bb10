"""The page with a model adapted to a third label: 😐 中性, its tone, bar, history and the
batch summary's count per label (in a real Chromium, as in test_web_browser)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qinggan.bundle import Bundle, load_bundle
from test_adapt import labelled_rows, run_adapt, write_csv
from test_web_browser import (  # noqa: F401  (fixtures)
    Server,
    _analyze,
    _open,
    _shot,
    _start_server,
    _stop,
    browser,
    events,
    expect,
    page,
    pytestmark,
    sync_api,
)

NEUTRAL = "一般还行"


@pytest.fixture(scope="module")
def three_label_server(
    tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("adapt-web")
    data = write_csv(root / "three.csv", labelled_rows(180, classes=3, seed=3))
    res = run_adapt(str(data), "--out", str(root / "three"), "--base", str(tiny_bundle.path))
    assert res.returncode == 0, res.stderr
    srv = _start_server(load_bundle(root / "three"), root / "server.log")
    yield srv
    _stop(srv.process)


def test_neutral_result_history_and_batch_summary(
    page: sync_api.Page,  # noqa: F811  (the fixture imported above)
    three_label_server: Server,
) -> None:
    _open(page, three_label_server)
    _analyze(page, NEUTRAL)
    expect(page.locator("#result-label")).to_contain_text("中性")
    expect(page.locator("#result-emoji")).to_have_text("😐")
    expect(page.locator("#result")).to_have_attribute("data-tone", "neutral")
    assert float(page.get_by_role("progressbar").get_attribute("aria-valuenow") or 0) > 33
    expect(page.locator(".history-item.tone-neutral")).to_have_count(1)
    _shot(page, "neutral")

    page.click("#tab-batch")
    page.fill("#batch-text", "\n".join(["服务很好很满意", "太差了很失望", NEUTRAL, "还行一般"]))
    page.click("#batch-analyze")
    expect(page.locator("#batch-body tr")).to_have_count(4)
    expect(page.locator("#batch-summary")).to_have_text("😄 1 · 😠 1 · 😐 2")
    expect(page.locator("#batch-body .label-cell.tone-neutral")).to_have_count(2)
