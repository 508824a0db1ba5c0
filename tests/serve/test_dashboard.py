"""The dashboard in a real headless Chromium: candles, symbol switch, live updates under zoom."""

import os
import shutil
from datetime import timedelta

import pytest

from tests.serve.conftest import START, market_ticks, read_warehouse, sample_alerts, serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHART = "document.getElementById('chart')"


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        message = f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def minute_bar_count(symbol: str) -> int:
    """Minute bars in the dashboard's 1D range: the day up to the symbol's last tick."""
    (count,) = read_warehouse(
        """
        select count(*) from minute_bars
        where symbol = $symbol and minute_ts >= (
            select max(ts) - interval 1 day from stg_lake__ticks where symbol = $symbol
        )
        """,
        {"symbol": symbol},
    ).iloc[0]
    return int(count)


def test_dashboard_draws_switches_and_updates_live_under_zoom(market, browser, tmp_path):
    ticks = market_ticks(START, 150)
    first = START + timedelta(minutes=120)
    market.add_ticks([t for t in ticks if t["ts"] < first.isoformat()])
    assert market.alerts.publish(sample_alerts()).error is None

    with serving() as url:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)

        def candles() -> int:
            return page.evaluate(f"{CHART}.data[0].x.length")

        page.wait_for_function(f"{CHART}.dataset.symbol === 'AAPL' && {CHART}.data")
        assert candles() == minute_bar_count("AAPL") == 120
        assert page.locator("#quotes tr").count() == 3
        assert page.locator("#alerts li").count() == 3
        markers = page.evaluate(f"{CHART}.data.find(t => t.name === 'Alerts').x.length")
        assert markers == 2  # AAPL's two anomalies, at their minutes

        page.select_option("#symbol", "MSFT")
        page.wait_for_function(f"{CHART}.dataset.symbol === 'MSFT'")
        closes = page.evaluate(f"{CHART}.data[0].close")
        (expected,) = read_warehouse(
            "select list(close order by minute_ts) from minute_bars where symbol = 'MSFT'"
        ).iloc[0]
        assert closes == list(expected)
        assert page.evaluate(f"{CHART}.data.find(t => t.name === 'Alerts').x.length") == 0

        # The user zooms in on the price chart with the mouse, as Plotly's zoom tool does.
        box = page.locator("#chart .draglayer .xy .nsewdrag").bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, y + 5, steps=8)
        page.mouse.up()
        zoomed = page.evaluate(f"{CHART}.layout.xaxis.range")
        assert page.evaluate(f"{CHART}.layout.xaxis.autorange") is False
        snapshot = page.evaluate(f"{CHART}.dataset.snapshot")

        market.add_ticks([t for t in ticks if t["ts"] >= first.isoformat()])  # a micro-batch
        page.wait_for_function(f"{CHART}.dataset.snapshot !== '{snapshot}'", timeout=60_000)
        assert candles() == minute_bar_count("MSFT") == 150  # the new bars arrived...
        assert page.evaluate(f"{CHART}.layout.xaxis.range") == zoomed  # ...under the same zoom
        assert page.evaluate(f"{CHART}.layout.xaxis.autorange") is False

        page.mouse.move(0, 0)  # no hover label in the picture
        page.screenshot(path=tmp_path / "dashboard.png")
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
        page.close()
    assert errors == []
