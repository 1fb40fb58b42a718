"""The web UI in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium; no browser download), against a real collector and a real agent process.

A duty engineer logs in, watches the board: the EMR's tcp check probes a loopback port the
test holds open; the test closes it, the probe fails, and the board (auto-refreshing, no page
reload) turns the EMR red and lists the level-1 incident with a running countdown. The
engineer opens the incident, acknowledges it, and sees the response time recorded; the
collector's API shows the same. A screenshot of each stage goes to test-artifacts/.

Sync on purpose: Selenium blocks, so the test drives processes and the browser from one thread.
Every wait is bounded (WebDriverWait or a deadline); none sleeps for time to pass.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import free_port, needs, start_module, stop_group, wait_for_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("WARDWATCH_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[3] / "test-artifacts"))
PASSWORD = "duty password 1"
REFRESH_S = 1.0
WAIT_S = 40.0
"""Upper bound of any one wait (a loaded CI machine); normally each takes a second or two."""


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    needs(CHROMIUM.exists() and CHROMEDRIVER.exists(),
          "Debian packages chromium and chromium-driver (scripts/install-system-packages)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        needs(False, "selenium (pip install -e '.[test]')")
        raise
    monkeypatch.setenv("SE_OFFLINE", "true")   # never let Selenium Manager download
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--lang=zh-CN", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _until(what: str, check: Callable[[], Any], within: float = WAIT_S) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.1)   # polling a condition, bounded by the deadline


def _api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def _shot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    assert driver.save_screenshot(str(path)), path
    print(f"\nscreenshot: {path}")
    return path


def test_board_turns_red_and_the_incident_is_acknowledged(tmp_path: Path, browser: Any
                                                          ) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)
    collector_port, agent_port = free_port(), free_port()
    # the "listener" the EMR depends on: open now, closed by the test to make the probe fail
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    target_port = listener.getsockname()[1]
    collector_yaml = tmp_path / "collector.yaml"
    collector_yaml.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{collector_port}", "store": f"sqlite:///{tmp_path}/c.db",
        "systems": [{"id": "EMR", "name": "电子病历", "core": True, "members": ["a1/*"]}],
        "incidents": {"confirm": {"results": 2, "duration": "60s"}, "evaluate_every": "1s"},
        "ui": {"refresh": REFRESH_S}}, allow_unicode=True))
    run = [sys.executable, "-m", "collector"]
    env = {**os.environ, "WARDWATCH_PASSWORD": PASSWORD}
    added = subprocess.run([*run, "users", "add", "值班张工", "--role", "operator", "--config",
                            str(collector_yaml)], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert added.returncode == 0, added.stderr
    token = subprocess.run([*run, "agents", "add", "a1", "--config", str(collector_yaml)],
                           capture_output=True, text=True, timeout=60, check=True
                           ).stdout.strip()
    (tmp_path / "token").write_text(token)
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text(yaml.safe_dump({
        "agent": {"id": "a1", "listen": f"127.0.0.1:{agent_port}",
                  "state_dir": str(tmp_path / "state")},
        "collector": {"url": f"http://127.0.0.1:{collector_port}",
                      "token_file": str(tmp_path / "token"), "push_interval": 0.2},
        "checks": [{"id": "emr-listener", "kind": "tcp", "host": "127.0.0.1",
                    "port": target_port, "interval": 0.5, "timeout": 0.4}]}))
    log = tmp_path / "processes.log"
    collector = start_module(["collector", "run", "--config", str(collector_yaml)], log)
    agent = start_module(["agent", "run", "--config", str(agent_yaml)], log)
    base = f"http://127.0.0.1:{collector_port}"
    try:
        wait_for_port(collector_port, timeout=WAIT_S)
        # log in through the form
        browser.get(f"{base}/")
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
        browser.find_element(By.ID, "name").send_keys("值班张工")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "systems-body")))
        assert "值班张工" in browser.find_element(By.ID, "current-user").text
        row = (By.ID, "system-EMR")
        wait.until(ec.text_to_be_present_in_element_attribute(row, "class", "state-up"))
        _shot(browser, "1-board-up")
        # a marker in the page's JS state: a full reload would drop it
        browser.execute_script("window.__wardwatchMarker = 42;")

        listener.close()   # the probe now gets connection refused
        _until("the collector's API says EMR is down", lambda: any(
            s["id"] == "EMR" and s["state"] == "down"
            for s in _api(collector_port, "/api/v1/systems")))
        # the board shows it at its next refresh (every REFRESH_S), without a reload
        WebDriverWait(browser, REFRESH_S + 10, poll_frequency=0.1).until(
            ec.text_to_be_present_in_element_attribute(row, "class", "state-down"))
        assert browser.execute_script("return window.__wardwatchMarker;") == 42
        color = browser.find_element(By.CSS_SELECTOR, "#system-EMR .dot"
                                     ).value_of_css_property("background-color")
        assert color in ("rgba(198, 40, 40, 1)", "rgb(198, 40, 40)"), color   # --down

        # the incident appears with a live countdown to its response deadline (the rows are
        # swapped every refresh, so each read finds the element anew)
        countdown = "#incidents-body tr.level-1 td.deadline .countdown"
        first = wait.until(lambda _d: _text(browser, countdown).startswith("剩余 ")
                           and _text(browser, countdown))
        wait.until(lambda _d: _text(browser, countdown) not in ("", first))
        _shot(browser, "2-board-down")
        link = wait.until(lambda _d: _attribute(browser, "#incidents-body tr.level-1 a",
                                                "href"))

        # acknowledge it on its page
        browser.get(link)
        wait.until(ec.presence_of_element_located((By.ID, "form-ack")))
        browser.find_element(By.CSS_SELECTOR, "#form-ack input[name=note]").send_keys("已到场")
        browser.find_element(By.ID, "do-ack").click()
        wait.until(ec.presence_of_element_located((By.ID, "done")))
        responded = browser.find_element(By.ID, "responded-at").text
        assert "值班张工" in responded
        _shot(browser, "3-incident-acknowledged")
        incident_id = int(browser.current_url.split("/incidents/")[1].split("?")[0])
        shown = _api(collector_port, f"/api/v1/incidents/{incident_id}")
        assert shown["responded_by"] == "值班张工" and shown["responded_at"]
        assert [e["kind"] for e in shown["timeline"]][:2] == ["opened", "acknowledged"]
        assert shown["timeline"][1]["note"] == "已到场"
        # the page shows the same response time, counted from the incident's start
        seconds = round(_iso(shown["responded_at"]) - _iso(shown["opened_at"]))
        assert f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" in responded

        # back on the board, the response deadline shows as met
        browser.get(f"{base}/")
        met = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, f"#incident-{incident_id} .countdown.met")))
        assert met.text.startswith("已达成")
        _shot(browser, "4-board-acknowledged")
    finally:
        listener.close()
        stop_group(agent)
        stop_group(collector)
        print(log.read_text()[-3000:])


def _text(browser: Any, selector: str) -> str:
    """The element's text now, or "" while it is being swapped."""
    return str(_attribute(browser, selector, "textContent")).strip()


def _attribute(browser: Any, selector: str, name: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(browser.find_element(By.CSS_SELECTOR, selector).get_attribute(name) or "")
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _iso(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
