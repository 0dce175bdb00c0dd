"""Ctrl-C / SIGTERM inside `interrupts.caught()`: raised at once where Python can, and never lost
where it cannot (a callback called from C swallows the KeyboardInterrupt)."""

import os
import signal
import sys

import pytest

from sparseinfer_dse import interrupts


@pytest.fixture
def unraisable(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def test_swallowed_interrupt_is_raised_again_by_check_and_not_printed(unraisable, interrupt_inside_c_callback):
    with interrupts.caught():
        interrupt_inside_c_callback()  # ctypes drops the KeyboardInterrupt: no exception here
        assert interrupts.requested()
        assert unraisable == []  # not printed as "Exception ignored ... Traceback"
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    assert not interrupts.requested()
    interrupts.check()  # cleared outside


def test_sigint_and_sigterm_raise_at_once_and_handlers_are_restored(interrupt_inside_c_callback):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        with interrupts.caught():
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), sig)
                for _ in range(1000):
                    pass
            assert interrupts.requested()
        assert {s: signal.getsignal(s) for s in before} == before


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.caught():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_other_unraisable_errors_still_reach_the_hook(unraisable, interrupt_inside_c_callback):
    class Noisy:
        def __del__(self):
            raise ValueError("boom")

    with interrupts.caught():
        Noisy()
        interrupt_inside_c_callback()
    assert [a.exc_type for a in unraisable] == [ValueError]  # the swallowed Ctrl-C is not among them
