"""Ctrl-C and SIGTERM that a long search never loses.

Python delivers a signal as KeyboardInterrupt at whatever bytecode runs next. If that is a callback
called from C (a ctypes callback: llvmlite's object-cache hook while Numba compiles and caches a
kernel, or a `__del__`), the exception is printed as "Exception ignored" and dropped, and the run
goes on as if nothing was pressed: seen in CI, where a cold Numba cache made the first trial compile.
Here the handler also records the request, the dropped exception is not printed, and `check()`
(called between the stages of a trial and before each trial) raises it again.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_requested = threading.Event()


def _handler(signum, frame) -> None:
    _requested.set()
    raise KeyboardInterrupt


def _unraisable(default):
    def hook(args) -> None:
        if _requested.is_set() and args.exc_type is not None and issubclass(args.exc_type, KeyboardInterrupt):
            return  # dropped by the C caller; check() raises it again at the next stage
        default(args)
    return hook


def requested() -> bool:
    """True once Ctrl-C or SIGTERM arrived inside `caught()`."""
    return _requested.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C or SIGTERM arrived, even if the first one was swallowed."""
    if _requested.is_set():
        raise KeyboardInterrupt


@contextmanager
def caught() -> Iterator[None]:
    """Within: SIGINT and SIGTERM (a scheduler's preemption, `kill`) raise KeyboardInterrupt and are
    remembered for `check()`. Outside the main thread (where signals cannot be set) it only clears."""
    _requested.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal the caller ignores stays ignored (`nohup`, or `cmd &` in a script, which ignores SIGINT).
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sys.unraisablehook = hook
        _requested.clear()
