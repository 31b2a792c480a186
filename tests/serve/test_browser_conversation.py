"""A two-turn conversation on the web page, in headless Chromium, against the real server (uvicorn)
serving the real `Recommender` (tiny random Llama, popularity + BM25 over MovieLens-100K).

The second answer must honour both turns ("a comedy", then "something older"); a screenshot of
the page after the two turns lands in test-artifacts/ (git-ignored). Skipped, as the other
browser tests are, where Chromium is not installed.
"""

from __future__ import annotations

import re

import pytest
from live_server import serve_in_thread
from test_browser import ARTIFACTS, CHROMEDRIVER, CHROMIUM, _texts, _wait, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium not installed: apt-get install -y chromium chromium-driver (make test does this as root)",
)


@pytest.fixture(scope="module")
def real_server_url(tmp_path_factory, movielens, tiny_llama_dir):
    from instructrec.candidates.base import create_retriever
    from instructrec.candidates.popularity import Popularity
    from instructrec.model.backend import load_model
    from instructrec.recommender import Recommender, RecommenderSettings
    from instructrec.serve import create_app, load_recommender

    folder = Recommender(movielens, load_model(tiny_llama_dir, device="cpu"), Popularity().fit(movielens),
                         create_retriever("bm25").fit(movielens), RecommenderSettings(n_candidates=12)).save(
        tmp_path_factory.mktemp("browser-conv") / "recommender", model_source=tiny_llama_dir)
    with serve_in_thread(create_app(lambda: load_recommender(folder)), start_timeout=60) as url:
        yield url


def _years(reasons: list[str]) -> list[int]:
    return [int(m.group(1)) for r in reasons if (m := re.search(r"matches Comedy, (\d{4})", r))]


def test_two_turn_conversation_on_the_page(real_server_url, browser, movielens):  # noqa: F811
    from selenium.webdriver.common.by import By

    d = browser
    d.get(real_server_url + "/")
    _wait(d, lambda d: d.find_element(By.ID, "status").text.startswith("ready"), timeout=60)
    d.find_element(By.ID, "request").send_keys("a comedy")
    d.find_element(By.CSS_SELECTOR, 'input[name="who"][value="user"]').click()
    d.find_element(By.ID, "user-id").send_keys("196")
    d.find_element(By.ID, "submit").click()
    _wait(d, lambda d: len(_texts(d, "#results tbody td.title")) == 10, timeout=60)
    assert "category Comedy" in d.find_element(By.ID, "constraints").text
    comedy = movielens.items[[("Comedy" in c) for c in movielens.items["categories"]]]
    first = _texts(d, "#results tbody td.title")
    assert set(first) <= set(comedy["title"])
    first_years = sorted(int(comedy.loc[comedy["title"] == t, "year"].iloc[0]) for t in first)

    d.find_element(By.ID, "refine-text").send_keys("something older")
    d.find_element(By.ID, "refine-submit").click()
    _wait(d, lambda d: "year <=" in d.find_element(By.ID, "constraints").text, timeout=60)
    _wait(d, lambda d: len(_texts(d, "#turns li")) == 1)
    assert "a comedy" in _texts(d, "#turns li")[0]
    assert d.find_element(By.ID, "asked").text == "You asked: “something older”"
    second, reasons = _texts(d, "#results tbody td.title"), _texts(d, "#results tbody td.reason")
    assert second and set(second) <= set(comedy["title"])  # turn 1 still holds
    years = _years(reasons)
    assert len(years) == len(second) and max(years) < first_years[len(first_years) // 2]  # turn 2: older
    d.execute_script("document.getElementById('answer').scrollIntoView()")
    ARTIFACTS.mkdir(exist_ok=True)
    assert d.save_screenshot(str(ARTIFACTS / "serve-conversation-two-turns.png"))
