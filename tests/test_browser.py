"""A generated report in real headless Chromium: plots drawn, no console error, no network."""

from __future__ import annotations

import time

import pytest

from tests import browser
from tests.conftest import require_service


@pytest.fixture
def chromium(confirmed_report):
    """Headless Chromium and the confirmed tiny study's report."""
    require_service(browser.available(), "Debian's chromium and chromium-driver are not installed")
    driver = browser.open_chromium()
    try:
        yield driver, confirmed_report[1]
    finally:
        driver.quit()


@pytest.mark.browser
def test_report_renders_offline_in_chromium(chromium, tmp_path):
    driver, report = chromium
    driver.get(report.as_uri())
    _wait_for_plots(driver)
    total = driver.execute_script("return document.querySelectorAll('div.plot').length")
    drawn = driver.execute_script(
        "return Array.from(document.querySelectorAll('div.plot')).filter(d => "
        "d.dataset.rendered === '1' && d.querySelector('svg.main-svg')).length")
    # Six figures every confirmed classification study has (ranking over seeds, history, by
    # family, importance, validation curves, per-class recall); more depend on the designs.
    assert total >= 6 and drawn == total
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    requests = browser.network_requests(driver)
    assert requests and all(u.startswith(("file:", "data:", "blob:")) for u in requests), \
        requests
    # The leaderboard sorts on click.
    header = driver.find_element("css selector", "#leaderboard th[data-col='1']")
    header.click()
    numbers = [int(td.text) for td in driver.find_elements(
        "css selector", "#leaderboard tbody td:nth-child(2)")]
    assert numbers == sorted(numbers)
    shot = browser.screenshot(driver, tmp_path / "report.png")
    assert shot.stat().st_size > 50_000


def _wait_for_plots(driver, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver.execute_script("return window.losstunePlotsPending") == 0:
            return
        time.sleep(0.2)


# Whatever sticks out: the page's scroll width against the window, and each plot's drawing
# against its container and its card (a figure spilling out of the bottom of its card overlaps
# the next one).
OVERFLOW = """
var doc = document.documentElement;
var plots = Array.from(document.querySelectorAll('div.plot')).map(function (div) {
  var svg = div.querySelector('svg.main-svg'), card = div.closest('.card').getBoundingClientRect();
  var box = svg ? svg.getBoundingClientRect() : {width: -1, bottom: 1e9};
  return {plot: div.id, svg: box.width, div: div.getBoundingClientRect().width,
          card: card.width, right: card.right, below: box.bottom - card.bottom};
});
return {scroll: doc.scrollWidth, client: doc.clientWidth, inner: window.innerWidth, plots: plots};
"""


def _fits(m) -> bool:
    return m["scroll"] <= m["client"] and bool(m["plots"]) and all(
        0 < p["svg"] <= p["div"] + 1 and p["svg"] >= p["div"] - 2 and p["svg"] <= p["card"]
        and p["right"] <= m["client"] and p["below"] <= 1 for p in m["plots"])


@pytest.mark.browser
def test_report_fits_a_narrow_window_and_plots_follow_resizes(chromium):
    driver, report = chromium
    driver.set_window_size(800, 1200)
    driver.get(report.as_uri())
    _wait_for_plots(driver)
    m = driver.execute_script(OVERFLOW)
    # No horizontal page scroll at 800 px: wide tables scroll inside their own box.
    assert m["scroll"] <= m["inner"] and m["scroll"] <= m["client"], m
    assert _fits(m), m
    table = driver.execute_script(
        "var t = document.getElementById('leaderboard'); var box = t.parentElement;"
        "return [t.offsetWidth, box.clientWidth, getComputedStyle(box).overflowX];")
    assert table[0] <= table[1] or table[2] in ("auto", "scroll"), table
    # Drawn wide, then narrowed to a phone's width: every figure follows the window.
    driver.set_window_size(1400, 1200)
    driver.get(report.as_uri())
    _wait_for_plots(driver)
    before = driver.execute_script(OVERFLOW)
    assert _fits(before), before
    driver.set_window_size(500, 1200)
    deadline = time.time() + 15
    after = driver.execute_script(OVERFLOW)
    while not _fits(after) and time.time() < deadline:
        time.sleep(0.25)
        after = driver.execute_script(OVERFLOW)
    assert _fits(after), after
    assert max(p["svg"] for p in after["plots"]) < min(p["svg"] for p in before["plots"])
