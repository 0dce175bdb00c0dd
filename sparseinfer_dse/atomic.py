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


@contextmanager
def replaced_dir(path: Path | str) -> Iterator[Path]:
    """Yield a new empty folder beside `path`; on success it takes `path`'s place whole (the old
    folder is renamed aside, the new one renamed in, then the old one deleted), on any exception it
    is removed and `path` is left as it was. A reader sees the old set of files or the new one."""
    import shutil

    path = Path(path)
    tag = f"{os.getpid()}"
    new = path.with_name(f".{path.name}.new{tag}")
    old = path.with_name(f".{path.name}.old{tag}")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    try:
        yield new
        if path.exists():
            path.replace(old)
        new.replace(path)
    finally:
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
