"""The web page in a real headless Chromium against the real server (uvicorn on a free loopback port).

Needs the Debian packages `chromium` and `chromium-driver` (`make test` installs them when it can);
skipped with that reason when they are absent. Selenium is pointed at the installed driver and
browser, so nothing is downloaded. A screenshot lands in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from stub_recommender import XSS_IMG_TITLE, XSS_SCRIPT_TITLE

from instructrec.serve import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium not installed: apt-get install -y chromium chromium-driver (make test does this as root)",
)


@pytest.fixture()
def server_url(stub):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, held until uvicorn takes it over
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(stub), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture()
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1200,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=20):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page replaces lists as answers arrive, so an element read a moment ago may be gone.
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def _texts(driver, selector: str) -> list[str]:
    """textContent of every match, read in one step (exactly the characters on the page)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)", selector)


def _results(driver) -> list[str]:
    return _texts(driver, "#results tbody td.title")


def test_page_recommends_and_renders_hostile_titles_as_text(server_url, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    d = browser
    d.get(server_url + "/")
    _wait(d, lambda d: d.find_element(By.ID, "status").text.startswith("ready"))
    assert "943 users" in d.find_element(By.ID, "status").text

    # A known user and a request: the ranked items, aspects and instruction appear.
    d.find_element(By.ID, "request").send_keys("I want a star wars adventure")
    d.find_element(By.CSS_SELECTOR, 'input[name="who"][value="user"]').click()
    d.find_element(By.ID, "user-id").send_keys("196")
    d.find_element(By.ID, "submit").click()
    _wait(d, lambda d: len(_results(d)) == 10)
    assert _results(d)[0] == "Star Wars"
    assert "aspects P1,I2,T3" in d.find_element(By.ID, "meta").text
    assert "a star wars adventure" in d.find_element(By.ID, "instruction").text

    # Build a history by searching titles; the hostile title shows as text in the search results.
    d.find_element(By.CSS_SELECTOR, 'input[name="who"][value="history"]').click()
    search = d.find_element(By.ID, "item-search")
    search.send_keys("script")
    _wait(d, lambda d: XSS_SCRIPT_TITLE in _texts(d, "#search-results .title"))
    search.clear()
    search.send_keys("star wars")
    _wait(d, lambda d: _texts(d, "#search-results .title")[:1] == ["Star Wars"])
    _wait(d, lambda d: d.find_element(By.CSS_SELECTOR, "#search-results li button").click() or True)
    _wait(d, lambda d: _texts(d, "#history-list .title") == ["Star Wars"])

    # A request that ranks both hostile titles first, and is itself markup.
    request = d.find_element(By.ID, "request")
    request.clear()
    request.send_keys('<img src=x onerror="window.__xss=2"> alert script')
    d.find_element(By.ID, "k").clear()
    d.find_element(By.ID, "k").send_keys("5")
    d.find_element(By.ID, "submit").click()
    _wait(d, lambda d: len(_results(d)) == 5 and XSS_SCRIPT_TITLE in _results(d))
    titles = _results(d)
    assert set(titles[:2]) == {XSS_SCRIPT_TITLE, XSS_IMG_TITLE}
    assert "Star Wars" not in titles  # in the history, so excluded
    assert d.find_element(By.ID, "asked").text.startswith('You asked: “<img src=x onerror="window.__xss=2">')
    assert d.execute_script("return document.querySelectorAll('#answer script, #answer img, "
                            "#search-results script, #search-results img').length") == 0
    assert d.execute_script("return window.__xss === undefined")
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018 (reading it is the check)

    ARTIFACTS.mkdir(exist_ok=True)
    assert d.save_screenshot(str(ARTIFACTS / "serve-page.png"))


def test_page_shows_api_errors(server_url, browser):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(server_url + "/")
    _wait(d, lambda d: d.find_element(By.ID, "status").text.startswith("ready"))
    d.find_element(By.CSS_SELECTOR, 'input[name="who"][value="user"]').click()
    d.find_element(By.ID, "user-id").send_keys("ghost-user")
    d.find_element(By.ID, "submit").click()
    error = _wait(d, lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").text else False)
    assert "unknown user id 'ghost-user'" in error.text and "history" in error.text
