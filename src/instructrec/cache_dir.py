"""The one cache folder of instructrec: converted models, the teacher response cache.

`$INSTRUCTREC_CACHE`, else `$XDG_CACHE_HOME/instructrec`, else `~/.cache/instructrec`. The older
`INSTRUCTREC_CACHE_DIR` (once read by the OpenAI teacher only) is still accepted, with a warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

CACHE_ENV = "INSTRUCTREC_CACHE"
"""Environment variable overriding the cache folder."""
DEPRECATED_CACHE_ENV = "INSTRUCTREC_CACHE_DIR"
"""The teacher cache's former variable: read when `INSTRUCTREC_CACHE` is unset, with a FutureWarning."""


def cache_dir() -> Path:
    """Where instructrec keeps what it can rebuild: `$INSTRUCTREC_CACHE`, else
    `$XDG_CACHE_HOME/instructrec`, else `~/.cache/instructrec`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get(DEPRECATED_CACHE_ENV):
        warnings.warn(f"{DEPRECATED_CACHE_ENV} is deprecated; set {CACHE_ENV} instead", FutureWarning, stacklevel=2)
        return Path(os.environ[DEPRECATED_CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "instructrec"
