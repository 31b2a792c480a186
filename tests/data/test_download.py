"""`download`: official URLs, streaming + rename, unzip, and failing fast without a network.

Network tests only ever talk to loopback: a closed port for the failure, a local HTTP server
for the success path.
"""

from __future__ import annotations

import functools
import http.server
import io
import socket
import threading
import time
import zipfile

import pytest

from instructrec.data.download import Remote, download, remote_files
from instructrec.data.loaders.movielens import load_grouplens
from instructrec.errors import DataError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


def test_official_urls():
    reviews, meta = remote_files(Remote.amazon2018, "Video_Games")
    assert reviews.url == ("https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/"
                           "Video_Games_5.json.gz")
    assert meta.url == "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/metaFiles2/meta_Video_Games.json.gz"
    (ml,) = remote_files(Remote.movielens_1m)
    assert ml.url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip" and ml.unzip
    with pytest.raises(DataError, match="--category"):
        remote_files(Remote.amazon2018)
    with pytest.raises(DataError, match="letters, digits"):
        remote_files(Remote.amazon2018, "../../etc/Video_Games")  # never a path outside --out


def test_fails_fast_with_manual_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        download(Remote.amazon2018, tmp_path / "dl", category="Video_Games",
                 mirror=f"http://127.0.0.1:{closed_port()}", connect_timeout=2)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "by hand into" in message and "meta_Video_Games.json.gz" in message and str(tmp_path / "dl") in message
    assert list((tmp_path / "dl").iterdir()) == []  # no partial file left behind


def _ml100k_zip() -> bytes:
    genres = "|".join(["0"] * 19)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "".join(f"{u}\t{i}\t{(u + i) % 5 + 1}\t{1000 + 10 * i + u}\n"
                                              for u in (1, 2, 3) for i in (1, 2, 3, 4)))
        item_lines = [f"{i}|Movie {i} (199{i})|01-Jan-199{i}||http://x|{genres}" for i in (1, 2, 3)]
        item_lines.append("4|Mis\u00e9rables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|1|0|0|0|0")
        zf.writestr("ml-100k/u.item", "\n".join(item_lines).encode("latin-1"))
    return buf.getvalue()


@pytest.fixture
def local_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(_ml100k_zip())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_download_unzip_and_load(tmp_path, local_server):
    url, root = local_server
    out = tmp_path / "data"
    (path,) = download(Remote.movielens_100k, out, mirror=url)
    assert path == out / "ml-100k.zip" and path.read_bytes() == (root / "ml-100k.zip").read_bytes()
    assert not list(out.glob(".*"))  # no temporary file left
    ds = load_grouplens(out / "ml-100k")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 4, 12)
    item = ds.items.iloc[ds.item_index("4")]
    assert (item["title"], item["year"], item["categories"]) == ("Mis\u00e9rables, Les", 1995, ["Drama", "Romance"])
    # a second call finds the file complete and does not fetch again (the server is gone)
    (root / "ml-100k.zip").unlink()
    assert download(Remote.movielens_100k, out, mirror=url) == [path]


def test_http_error_is_reported(tmp_path, local_server):
    url, _ = local_server
    with pytest.raises(DataError, match="HTTP 404"):
        download(Remote.movielens_1m, tmp_path / "x", mirror=url)


def test_grouplens_1m_format(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::4::{100 + i}\n" for u in (1, 2) for i in (10, 20, 30)))
    (folder / "movies.dat").write_bytes("10::Heat (1995)::Action|Crime\n20::Am\u00e9lie (2001)::Comedy\n"
                                        "30::Untitled::Drama\n".encode("latin-1"))
    ds = load_grouplens(folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 6)
    assert list(ds.titles) == ["Heat", "Am\u00e9lie", "Untitled"]
    assert ds.items.iloc[0]["categories"] == ["Action", "Crime"]
    with pytest.raises(DataError, match="neither u.data"):
        load_grouplens(tmp_path)
