"""Files replaced whole or not at all, so a Ctrl-C (or a crash) while results are written leaves the
previous version of each file, never half of one: what is written next to a temporary name in the
same folder is renamed over the target only once complete."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replaced(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that read it, like matplotlib's
    savefig, pick the same format); on success it replaces `path`, on any exception it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> Path:
    """`Path.write_text`, replacing the file whole."""
    with replaced(path) as tmp:
        tmp.write_text(text)
    return Path(path)
