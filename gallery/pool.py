"""Run Pillow work (decode, resize, encode) on every core.

Pillow holds the GIL while it encodes, so threads gain nothing: many items go to worker
processes, spawned rather than forked because the parent may hold a CUDA context; a few are
not worth the processes' start-up and run here.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_images(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    few: int,
    chunksize: int | None = None,
    on_each: Callable[[], None] | None = None,
) -> list[R]:
    """`[fn(item) for item in items]`, in processes when there are more than `few` items.
    `fn` must be a module-level function (it is pickled); `on_each` runs here after each item."""
    workers = os.cpu_count() or 1
    results = []
    each: Iterator[R]
    with contextlib.ExitStack() as stack:
        if len(items) < few or workers == 1:
            each = map(fn, items)
        else:
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_die_with_parent,
                    initargs=(os.getpid(),),
                )
            )
            each = pool.map(fn, items, chunksize=chunksize or max(1, len(items) // (workers * 8)))
        for result in each:
            results.append(result)
            if on_each:
                on_each()
    return results


def _die_with_parent(parent: int) -> None:
    """Make a worker die with the build that started it (kill -9 included), rather than go on
    converting for nobody: Linux's parent-death signal; elsewhere the pool's own shutdown."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)
