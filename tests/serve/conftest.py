"""Fixtures for the serving tests: a stub recommender over MovieLens-100K plus two XSS-titled items."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

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
    import uvicorn

    from instructrec.serve import create_app

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
