"""Download the official public data files (MovieLens from GroupLens, Amazon 2018 per category).

Each file is streamed to a temporary name next to its destination with a progress bar and renamed
into place only when complete, so an interrupted download never leaves a file that looks whole;
a file already present is not fetched again. Without network access the first connection fails
within `connect_timeout` seconds and the error says which files to fetch by hand and where to put
them.
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import httpx
from tqdm import tqdm

from instructrec.atomic import atomic_file
from instructrec.errors import DataError

log = logging.getLogger(__name__)

_CATEGORY = re.compile(r"[A-Za-z0-9_]+")

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
AMAZON2018 = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
"""The McAuley lab's host for Amazon Review Data 2018 (linked from nijianmo.github.io/amazon)."""


class Remote(str, Enum):
    """Data sets `instructrec data download` fetches."""

    movielens_100k = "movielens-100k"
    movielens_1m = "movielens-1m"
    amazon2018 = "amazon2018"


@dataclass(frozen=True)
class RemoteFile:
    url: str
    """Where to fetch it."""
    name: str
    """File name in the output folder."""
    unzip: bool = False
    """Unpack the archive into the output folder after download."""


def remote_files(remote: Remote, category: str | None = None, mirror: str | None = None) -> list[RemoteFile]:
    """The files of `remote` (Amazon 2018: the category's 5-core reviews and its metadata).

    `mirror` replaces the official host (same paths below it), for local mirrors and tests.
    """
    remote = Remote(remote)
    if remote is Remote.amazon2018:
        if not category or not _CATEGORY.fullmatch(category):
            raise DataError("amazon2018 needs --category, e.g. --category Video_Games (names as on the "
                            "Amazon 2018 page: Video_Games, Books, Movies_and_TV, ...; letters, digits "
                            f"and underscores only), got {category!r}.")
        base = mirror.rstrip("/") if mirror else AMAZON2018
        return [
            RemoteFile(f"{base}/categoryFilesSmall/{category}_5.json.gz", f"{category}_5.json.gz"),
            RemoteFile(f"{base}/metaFiles2/meta_{category}.json.gz", f"meta_{category}.json.gz"),
        ]
    base = mirror.rstrip("/") if mirror else GROUPLENS
    name = "ml-100k.zip" if remote is Remote.movielens_100k else "ml-1m.zip"
    return [RemoteFile(f"{base}/{name}", name, unzip=True)]


def _manual_hint(files: list[RemoteFile], out: Path) -> str:
    urls = " and ".join(f.url for f in files)
    return f"download {urls} by hand into {out}{' and unzip there' if any(f.unzip for f in files) else ''}"


def fetch(file: RemoteFile, out: Path, client: httpx.Client) -> Path:
    """Stream one file to a temporary sibling, then rename it to `out/name` (none left on failure)."""
    dest = out / file.name
    with client.stream("GET", file.url) as response:
        if response.status_code != 200:
            raise DataError(f"{file.url} answered HTTP {response.status_code}")
        total = int(response.headers.get("content-length", 0)) or None
        with atomic_file(dest) as part, part.open("wb") as handle, \
                tqdm(total=total, unit="B", unit_scale=True, desc=file.name, disable=None) as bar:
            for chunk in response.iter_bytes(1 << 20):
                handle.write(chunk)
                bar.update(len(chunk))
    return dest


def download(remote: Remote | str, out: str | Path, *, category: str | None = None,
             mirror: str | None = None, connect_timeout: float = 5.0, read_timeout: float = 60.0) -> list[Path]:
    """Fetch `remote`'s files into `out` (skipping complete ones); returns their paths.

    Raises DataError with manual-download instructions when the host cannot be reached.
    """
    out = Path(out)
    files = remote_files(Remote(remote), category, mirror)
    out.mkdir(parents=True, exist_ok=True)
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    paths = []
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for file in files:
            dest = out / file.name
            if dest.exists():
                log.info("%s already present; not downloading it again", dest)
            else:
                try:
                    fetch(file, out, client)
                except (httpx.TransportError, DataError) as exc:
                    raise DataError(
                        f"cannot download {file.url} ({type(exc).__name__}: {exc}); without internet access "
                        f"{_manual_hint(files, out)}, then run `instructrec data prepare`."
                    ) from None
                log.info("downloaded %s", dest)
            if file.unzip:
                _unzip(dest, out)
            paths.append(dest)
    return paths


def _unzip(archive: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            root = out.resolve()
            for member in zf.namelist():  # refuse paths that would escape `out`
                if not (out / member).resolve().is_relative_to(root):
                    raise DataError(f"{archive} contains an unsafe path {member!r}; not unpacking it.")
            zf.extractall(out)
    except zipfile.BadZipFile:
        raise DataError(f"{archive} is not a valid zip archive; delete it and download again.") from None
