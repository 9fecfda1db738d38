"""The loop every model stage runs: batches that halve on out-of-memory, bad pictures refused, good ones stored."""

import numpy as np
import pytest
import torch

from gallery.batching import in_batches, store_good
from gallery.errors import RenderError


def fits(most: int, tried: list[int]):
    """A model call that runs out of GPU memory on more than `most` items."""

    def call(chunk):
        tried.append(len(chunk))
        if len(chunk) > most:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]

    return call


def test_out_of_memory_halves_the_chunk_that_failed_and_goes_on():
    tried, warnings = [], []
    results = list(in_batches(list(range(7)), 8, fits(2, tried), warnings.append, "batch size", "too big"))
    assert tried == [7, 4, 2, 2, 2, 1]  # the 7 it tried halved (not the 8 set), then kept at what fits
    assert [r[1] for r in results] == [[0, 10], [20, 30], [40, 50], [60]]
    assert warnings == ["out of GPU memory: batch size halved to 4", "out of GPU memory: batch size halved to 2"]


def test_out_of_memory_at_one_item_stops_with_the_advice():
    tried = []
    advice = "set render.attention_slicing"
    with pytest.raises(RenderError) as stopped:
        list(in_batches(list(range(5)), 4, fits(0, tried), lambda m: None, "batch size", advice))
    assert str(stopped.value) == advice
    assert tried == [4, 2, 1]


def test_store_good_stores_good_pictures_and_reports_the_rest():
    good, nan, black = np.full((4, 4, 3), 0.5), np.full((4, 4, 3), np.nan), np.zeros((4, 4, 3))
    stored, ticks = {}, []

    class Progress:
        def update(self, n):
            ticks.append(n)

    batches = [
        (["a", "b"], [good, nan], {"batch_size": 2}),
        (["c"], [black], {"batch_size": 1}),
        (["d"], [good], {"batch_size": 1}),
    ]
    result = store_good(batches, lambda item, image, made: stored.update({item: (image.size, made)}), Progress())
    assert stored == {"a": ((4, 4), {"batch_size": 2}), "d": ((4, 4), {"batch_size": 1})}
    assert [(item, fault.split(" ")[0]) for item, fault in result.rejected] == [("b", "NaN"), ("c", "an")]
    assert (result.count, result.batch_size, ticks) == (4, 2, [2, 1, 1])
