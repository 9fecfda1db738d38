"""What every model stage (rendering, the model upscalers) does around its model calls: run them in
batches that halve on out-of-memory, refuse an unusable picture (NaN, all black), and store the good
ones in a writer thread while the next batch runs.

torch, numpy and Pillow are imported inside the functions: only a stage that runs a model gets here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gallery.errors import RenderError

if TYPE_CHECKING:
    from PIL import Image

Item = TypeVar("Item")


@dataclass
class Stored(Generic[Item]):
    """What `store_good` did."""

    count: int = 0  # items that came out of the model, good or not
    batch_size: int = 0  # the largest batch used (not the one set)
    rejected: list[tuple[Item, str]] = field(default_factory=list)  # items not cached, and why


def store_good(
    batches: Iterable[tuple[Sequence[Item], Sequence, dict]],
    store: Callable[[Item, Image.Image, dict], None],
    progress=None,
) -> Stored[Item]:
    """For each (items, float arrays, made) of `batches`: turn each good array into a picture and hand
    it to `store(item, picture, made)` in a writer thread (PNG encoding overlaps the next model call);
    report a NaN or black one instead. `made` (how the batch was made) holds its `batch_size`."""
    stored: Stored[Item] = Stored()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gallery-write") as writer:
        pending: list[Future] = []
        for items, arrays, made in batches:
            for item, array in zip(items, arrays, strict=True):
                fault = image_fault(array)
                if fault:
                    stored.rejected.append((item, fault))
                else:
                    pending.append(writer.submit(_picture_to, store, item, array, made))
            pending = _drain(pending, block=len(pending) > 2 * len(items))
            if progress is not None:
                progress.update(len(items))
            stored.count += len(items)
            stored.batch_size = max(stored.batch_size, made["batch_size"])
        _drain(pending, block=True)
    return stored


def _picture_to(store: Callable, item, array, made: dict) -> None:
    store(item, to_image(array), made)


def _drain(pending: list[Future], *, block: bool) -> list[Future]:
    """Raise any write error now; keep the futures still running (all of them finish if `block`)."""
    still = []
    for future in pending:
        if block or future.done():
            future.result()
        else:
            still.append(future)
    return still


def in_batches(
    items: Sequence, batch: int, call: Callable, warn: Callable[[str], None], what: str, at_one: str
) -> Iterator[tuple[Sequence, Any, float]]:
    """(chunk, call(chunk), seconds) for `items` in chunks of `batch`. Out of GPU memory halves the
    chunk that failed (rounding up; a last chunk may be smaller than `batch`, so halving `batch`
    could try the same chunk again) and goes on; at one item it is a RenderError saying `at_one`."""
    import torch

    i = 0
    while i < len(items):
        chunk = items[i : i + batch]
        t0 = time.perf_counter()
        try:
            result = call(chunk)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            result = _OUT_OF_MEMORY  # leaving the except block drops the error and the tensors it holds
        if result is _OUT_OF_MEMORY:
            if len(chunk) == 1:
                raise RenderError(at_one)
            batch = (len(chunk) + 1) // 2
            warn(f"out of GPU memory: {what} halved to {batch}")
            free_memory(torch)
            continue
        yield chunk, result, time.perf_counter() - t0
        i += len(chunk)


_OUT_OF_MEMORY = object()


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    oom_types = tuple(
        t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t
    )
    return isinstance(err, oom_types) or "out of memory" in str(err).lower()


def free_memory(torch) -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def image_fault(array) -> str | None:
    """Why an image must not be cached as good: NaN (fp16 overflow) or all black (a safety filter)."""
    import numpy as np

    if not np.isfinite(array).all():
        return "NaN in the output (often float16 overflow: try dtype bfloat16 or float32)"
    if float(array.max()) < 1.0 / 255:
        return "an all-black image (a safety filter, or a broken model or VAE)"
    return None


def to_image(array):
    """A float (height, width, 3+) array in 0..1 as an 8-bit RGB picture."""
    import numpy as np
    from PIL import Image

    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255).round().astype("uint8")[..., :3])
