"""The stats page in a real browser: Debian's headless chromium, driven by selenium through Debian's
chromedriver, opens the page with the ``stats auth`` credentials, and what it renders is checked
against the stats socket's ``show stat``: every server with its state, an admin action taken with the
page's own checkboxes, select and button, and the live chart drawn by the page's script from
``;history`` under traffic.  A screenshot of each run is kept in ``test-artifacts/`` at the root of
the repository.

Skipped only where chromium or chromedriver is not installed (CI installs both).  Selenium's calls
block, so they run in a thread while the engine serves the page on the test's event loop.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from fastproxy.config import load

from ..support import echo, free_port, running, serving
from .test_stats_page import write_config
from .test_stats_socket import ask, table

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT = 20.0  # seconds any one thing the browser is waited for may take (page load, script, redirect)

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium and chromedriver not installed (apt-get install chromium "
                                       "chromium-driver)")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless chromium for the module (starting one takes seconds); cookies and cached
    credentials are cleared between tests by ``fresh``."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1200", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("fe", "other", "stats", "s1", "s2", "s3")}


def fresh(driver: webdriver.Chrome) -> webdriver.Chrome:
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.delete_all_cookies()
    return driver


def rendered_servers(driver: webdriver.Chrome) -> dict[tuple[str, str], dict[str, str]]:
    """The server rows as the browser laid them out: (proxy, server) -> the row's class and the status
    text shown in its status cell."""
    rows: Any = driver.execute_script("""
        return Array.from(document.querySelectorAll('tr[data-server]')).map(function (tr) {
            var cell = tr.querySelector('td[data-status]');
            return [tr.getAttribute('data-server'), tr.className, cell.getAttribute('data-status'),
                    cell.innerText];
        });""")
    return {tuple(key.split("/", 1)): {"class": cls, "status": status, "text": text}  # type: ignore[misc]
            for key, cls, status, text in rows}


def chart_points(driver: webdriver.Chrome) -> dict[str, list[list[tuple[float, float]]]]:
    """The charts' lines as drawn: chart key -> each SVG path's points."""
    paths: Any = driver.execute_script("""
        return Array.from(document.querySelectorAll('div.chart')).map(function (div) {
            return [div.getAttribute('data-key'),
                    Array.from(div.querySelectorAll('svg path')).map(function (p) {
                        return p.getAttribute('d'); })];
        });""")
    return {key: [[(float(x), float(y)) for x, y in re.findall(r"[ML]([\d.]+) ([\d.]+)", d)] for d in ds]
            for key, ds in paths}


def until(driver: webdriver.Chrome, condition: Any, what: str) -> Any:
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(condition)
    except TimeoutException:
        raise AssertionError(f"the browser never showed {what}") from None


async def keep_busy(port: int, seconds: float) -> int:
    """Connections through the proxy for ``seconds`` (at most a few hundred): the bytes moved."""
    loop = asyncio.get_running_loop()
    deadline, moved = loop.time() + seconds, 0
    for _ in range(400):
        if loop.time() > deadline:
            break
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * 20000)
        writer.write_eof()
        while data := await asyncio.wait_for(reader.read(1 << 16), 5):
            moved += len(data)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.02)
    return moved


@pytest.mark.timeout(90)
async def test_chromium_renders_every_server_with_its_state_and_draws_the_charts(tmp_path, ports, pump_class,
                                                                                 browser, implementation):
    async with serving(echo) as s1, serving(echo) as s2:
        ports.update(s1=s1, s2=s2)
        async with running(load([str(write_config(tmp_path, ports))]), pump_class):
            driver = fresh(browser)
            url = f"http://admin:secret@127.0.0.1:{ports['stats']}/stats"
            before = table(await ask(str(tmp_path / "admin.sock"), "show stat"))
            await asyncio.to_thread(driver.get, url)
            assert driver.title == "Statistics Report for HAProxy"
            after = table(await ask(str(tmp_path / "admin.sock"), "show stat"))
            servers = {row for row in after if row[1] not in ("FRONTEND", "BACKEND")}
            rendered = rendered_servers(driver)
            assert set(rendered) == servers
            for row in servers:  # s2's checks run meanwhile: its state when the page was written
                states = {before[row]["status"], after[row]["status"]}
                assert rendered[row]["status"] in states, row
                assert rendered[row]["status"] in rendered[row]["text"], row
            assert rendered[("be", "s3")]["class"] == "backup_no_check"
            assert rendered[("be", "s1")]["class"] == "active_no_check"
            assert rendered[("be", "s2")]["class"] in ("active_up", "active_going_down", "active_going_up")

            moved = await keep_busy(ports["fe"], 4.0)
            assert moved > 0

            def drawn(d: webdriver.Chrome) -> bool:
                lines = chart_points(d).get("fe/fe", [])
                # Two lines (sessions, throughput), several points each, the throughput off its floor.
                return len(lines) == 2 and all(len(line) >= 3 for line in lines) and \
                    min(y for _, y in lines[1]) < max(y for _, y in lines[1])
            await asyncio.to_thread(until, driver, drawn, "the frontend's chart under traffic")
            charts = chart_points(driver)
            assert {"fe/fe", "be/be", "fe/other", "be/other", "fe/stats", "be/stats"} <= set(charts)
            caption = driver.find_element(By.CSS_SELECTOR, 'div.chart[data-key="fe/fe"] span').text
            assert caption.startswith("sessions (max ") and "throughput" in caption
            # Reloaded, the table shows the traffic's counters as show stat does.
            await asyncio.to_thread(driver.get, f"{url};norefresh")
            await asyncio.to_thread(until, driver, drawn, "the frontend's chart after a reload")
            stot = table(await ask(str(tmp_path / "admin.sock"), "show stat"))[("fe", "FRONTEND")]["stot"]
            total = driver.execute_script("""  // the Sessions Total cell (the Queue cells are one colspan)
                return document.querySelector('a[name="fe/Frontend"]').closest('tr').cells[9].innerText;""")
            assert int(stot) > 0 and total == stot
            ARTIFACTS.mkdir(exist_ok=True)
            assert driver.save_screenshot(str(ARTIFACTS / f"stats-page-{implementation.name}.png"))


@pytest.mark.timeout(90)
async def test_an_admin_action_taken_in_chromium_changes_the_servers_state(tmp_path, ports, pump_class,
                                                                           browser, implementation):
    async with serving(echo) as s1, serving(echo) as s2:
        ports.update(s1=s1, s2=s2)
        async with running(load([str(write_config(tmp_path, ports))]), pump_class):
            sock = str(tmp_path / "admin.sock")
            driver = fresh(browser)
            base = f"http://admin:secret@127.0.0.1:{ports['stats']}/stats"

            def act(servers: list[str], label: str) -> str:
                """Tick the servers of backend ``be``, choose the action, press Apply: the page's message."""
                driver.get(f"{base};norefresh")
                for server in servers:
                    driver.find_element(By.CSS_SELECTOR, f"input.be-checkbox[value='{server}']").click()
                form = driver.find_element(By.CSS_SELECTOR, "input.be-checkbox").find_element(By.XPATH,
                                                                                              "ancestor::form")
                Select(form.find_element(By.NAME, "action")).select_by_visible_text(label)
                form.find_element(By.CSS_SELECTOR, "input[type=submit][value=Apply]").click()
                until(driver, lambda d: ";st=" in d.current_url, "the redirect after Apply")
                return driver.find_element(By.CSS_SELECTOR, "div.active_up, div.active_going_down, "
                                                            "div.active_down").text

            message = await asyncio.to_thread(act, ["s1", "s3"], "Set state to DRAIN")
            assert "Action processed successfully." in message
            rows = table(await ask(sock, "show stat"))
            assert rows[("be", "s1")]["status"] == rows[("be", "s3")]["status"] == "DRAIN"
            assert rows[("be", "s2")]["status"] != "DRAIN"
            rendered = rendered_servers(driver)  # the page after the redirect shows the new state
            assert rendered[("be", "s1")]["class"] == "active_draining"
            assert rendered[("be", "s1")]["status"] == "DRAIN"

            message = await asyncio.to_thread(act, ["s2"], "Set state to MAINT")
            assert "Action processed successfully." in message
            rows = table(await ask(sock, "show stat"))
            assert rows[("be", "s2")]["status"] == "MAINT"
            assert rendered_servers(driver)[("be", "s2")]["class"] == "maintain"
            ARTIFACTS.mkdir(exist_ok=True)
            assert driver.save_screenshot(str(ARTIFACTS / f"stats-page-admin-{implementation.name}.png"))

            await asyncio.to_thread(act, ["s1", "s2", "s3"], "Set state to READY")
            rows = table(await ask(sock, "show stat"))
            assert rows[("be", "s1")]["status"] == "no check" and rows[("be", "s2")]["status"] != "MAINT"
