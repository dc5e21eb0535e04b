"""The run's frozen heap: objects alive at the start skipped by full collections, given back
(and collectable) at the end, nested blocks leaving the outer freeze in charge."""

import gc
import weakref

from wsi_sat.runtime.heap import frozen_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_frozen_for_the_block_and_given_back() -> None:
    assert gc.get_freeze_count() == 0
    before = _Node()
    ref = weakref.ref(before)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        del before
        gc.collect()
        assert ref() is not None  # frozen: its cycle waits for the end of the run
        made = _Node()
        made_ref = weakref.ref(made)
        del made
        gc.collect()
        assert made_ref() is None  # objects of the run itself are collected as usual
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None  # given back: collected after the run


def _count_calls(monkeypatch) -> list[str]:
    """gc.freeze / gc.unfreeze calls, in order (frozen counts themselves drift: a frozen object
    freed by another thread leaves the permanent generation)."""
    calls: list[str] = []
    freeze, unfreeze = gc.freeze, gc.unfreeze
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze") or freeze())
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze") or unfreeze())
    return calls


def test_nested_block_leaves_the_outer_freeze(monkeypatch) -> None:
    calls = _count_calls(monkeypatch)
    with frozen_heap():
        with frozen_heap():
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # the inner block did not unfreeze
        assert calls == ["freeze"]
    assert calls == ["freeze", "unfreeze"]
    assert gc.get_freeze_count() == 0


def test_a_callers_own_freeze_is_left_alone(monkeypatch) -> None:
    gc.freeze()
    try:
        calls = _count_calls(monkeypatch)
        with frozen_heap():
            pass
        assert calls == [] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_concurrent_blocks_share_one_freeze_until_the_last_ends() -> None:
    import threading

    entered, release = threading.Event(), threading.Event()

    def lane() -> None:
        with frozen_heap():
            entered.set()
            release.wait(5)

    with frozen_heap():
        other = threading.Thread(target=lane)
        other.start()
        assert entered.wait(5)
    # the block that froze has ended, the other lane is still inside: still frozen
    assert gc.get_freeze_count() > 0
    release.set()
    other.join(5)
    assert gc.get_freeze_count() == 0


def test_inner_blocks_do_not_count_the_frozen_objects(monkeypatch) -> None:
    # gc.get_freeze_count walks the whole permanent generation (~50 ms on a run's heap):
    # only the outermost block asks it
    calls = []
    real = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: calls.append(1) or real())
    with frozen_heap():
        for _ in range(5):
            with frozen_heap():
                pass
    assert len(calls) == 1
