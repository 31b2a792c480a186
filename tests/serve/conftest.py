"""Fixtures for the serving tests: a stub recommender over MovieLens-100K plus two XSS-titled items."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from live_server import serve_in_thread  # noqa: E402
from stub_recommender import StubRecommender, with_xss_items  # noqa: E402


@pytest.fixture(scope="session")
def serve_dataset(movielens):
    return with_xss_items(movielens)


@pytest.fixture()
def stub(serve_dataset) -> StubRecommender:
    return StubRecommender(serve_dataset)


@pytest.fixture()
def client(stub):
    from fastapi.testclient import TestClient

    from instructrec.serve import create_app

    with TestClient(create_app(stub)) as test_client:
        yield test_client


@pytest.fixture()
def server_url(stub):
    """The app over the stub, served by uvicorn on a free 127.0.0.1 port in a thread."""
    from instructrec.serve import create_app

    with serve_in_thread(create_app(stub)) as url:
        yield url
