"""A generated report in real headless Chromium: plots drawn, no console error, no network."""

from __future__ import annotations

import time

import pytest

from tests import browser
from tests.conftest import require_service


@pytest.mark.browser
def test_report_renders_offline_in_chromium(confirmed_report, tmp_path):
    require_service(browser.available(), "Debian's chromium and chromium-driver are not installed")
    _, report = confirmed_report
    driver = browser.open_chromium()
    try:
        driver.get(report.as_uri())
        deadline = time.time() + 60
        while time.time() < deadline:
            if driver.execute_script("return window.losstunePlotsPending") == 0:
                break
            time.sleep(0.2)
        total = driver.execute_script("return document.querySelectorAll('div.plot').length")
        drawn = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.plot')).filter(d => "
            "d.dataset.rendered === '1' && d.querySelector('svg.main-svg')).length")
        assert total >= 7 and drawn == total
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
    finally:
        driver.quit()
