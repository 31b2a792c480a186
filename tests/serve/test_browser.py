"""The web page and the API docs pages in a real headless Chromium against the real server
(uvicorn on a free loopback port, the `server_url` fixture of conftest.py).

Needs the Debian packages `chromium` and `chromium-driver` (`make test` installs them when it can);
skipped with that reason when they are absent. Selenium is pointed at the installed driver and
browser, so nothing is downloaded. A screenshot lands in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from stub_recommender import XSS_IMG_TITLE, XSS_SCRIPT_TITLE

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium not installed: apt-get install -y chromium chromium-driver (make test does this as root)",
)


@pytest.fixture()
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages, for CSP reports
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


def _loaded(driver) -> list[str]:
    """Every resource the page fetched (scripts, styles, images, XHR), in load order."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


def test_docs_page_renders_offline_and_its_example_runs(server_url, browser):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(server_url + "/docs")
    paths = _wait(d, lambda d: (lambda p: p if len(p) == 4 else False)(_texts(d, ".opblock-summary-path")))
    assert paths == ["/healthz", "/v1/items", "/v1/users/{user_id}", "/v1/recommend"]
    loaded = _loaded(d)
    assert f"{server_url}/docs-static/swagger-ui-bundle.js" in loaded and f"{server_url}/openapi.json" in loaded
    assert all(url.startswith(server_url + "/") for url in loaded), loaded  # no CDN, nothing from elsewhere

    # Try the documented example: it names this catalogue's user, so the server answers 200.
    d.find_element(By.CSS_SELECTOR, "#operations-default-recommend_v1_recommend_post .opblock-summary").click()
    _wait(d, lambda d: d.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    body = _wait(d, lambda d: d.find_element(By.CSS_SELECTOR, "textarea.body-param__text")).get_attribute("value")
    assert '"user_id": "196"' in body
    _wait(d, lambda d: d.find_element(By.CSS_SELECTOR, ".execute")).click()
    status = _wait(d, lambda d: _texts(d, ".live-responses-table .response-col_status")[1:])
    assert status == ["200"]
    assert [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"] == []
    ARTIFACTS.mkdir(exist_ok=True)
    assert d.save_screenshot(str(ARTIFACTS / "serve-docs.png"))


def test_redoc_page_renders_offline(server_url, browser):
    d = browser
    d.get(server_url + "/redoc")
    _wait(d, lambda d: any("Rank items for a user (id or history)" in t for t in _texts(d, "h2")))
    loaded = _loaded(d)
    assert f"{server_url}/docs-static/redoc.standalone.js" in loaded
    # ReDoc's footer links its logo from its CDN; the page's Content-Security-Policy blocks it.
    foreign = [url for url in loaded if not url.startswith(server_url + "/")]
    assert foreign in ([], ["https://cdn.redoc.ly/redoc/logo-mini.svg"]), foreign
    errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert all("Content Security Policy" in m and "has been blocked" in m and "cdn.redoc.ly" in m for m in errors), errors
