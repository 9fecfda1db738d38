"""Missing jobs -> images in the cache. The only place that runs a diffusion pipeline.

Jobs that share their picture settings are batched; each image draws its starting noise from
its own CPU generator, so a job gives the same image alone or in any batch, on any device.
PNG encoding and cache writes run in a worker thread while the next batch renders.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

from gallery import loading, metadata
from gallery.cache import Cache
from gallery.config import Picture, Runtime
from gallery.errors import RenderError
from gallery.plan import Job
from gallery.workers import Share


@dataclass
class RenderReport:
    rendered: int = 0
    seconds: float = 0.0
    device: str = ""
    dtype: str = ""
    batch_size: int = 0
    warnings: list[str] = field(default_factory=list)
    rejected: list[tuple[Job, str]] = field(default_factory=list)  # images not cached, and why


def auto_batch_size(picture: Picture, device: str) -> int:
    """A first guess that fills a GPU for small latents; out-of-memory halves it anyway."""
    if device.startswith("cuda"):
        return max(1, min(64, (256 * 256 * 16) // (picture.width * picture.height)))
    if device == "mps":
        return 1
    # On a CPU 4 is enough for 256px and up; tiny images need more per call to keep the cores busy
    # (the 64px demo model: 7.5 img/s at 4, 11.1 at 16; BENCHMARKS.md).
    return max(4, min(16, (128 * 128 * 4) // (picture.width * picture.height)))


class Renderer:
    def __init__(self, runtime: Runtime, share: Share = Share(), *,
                 warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
        self.runtime = runtime
        self.share = share
        self.warn = warn
        self.target = loading.choose_target(runtime, gpu_index=share.local_rank)
        self._pipes: dict[tuple, object] = {}
        self._warned: set[str] = set()

    def pipeline(self, picture: Picture):
        """Load (once) the pipeline for `picture`'s model, with `picture`'s scheduler set."""
        ident = (picture.model, picture.revision, picture.pipeline)
        if ident not in self._pipes:
            self._pipes.clear()  # one model in memory at a time
            self._pipes[ident] = loading.load_pipeline(picture, self.target, self.runtime)
        pipe = self._pipes[ident]
        import diffusers

        loading.set_scheduler(pipe, picture, diffusers)
        return pipe

    def render(self, jobs: Sequence[Job], cache: Cache, progress=None) -> RenderReport:
        report = RenderReport(device=self.target.device, dtype=self.target.dtype)
        started = time.perf_counter()
        versions = loading.versions("diffusers", "transformers")
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gallery-write") as writer:
            pending: list[Future] = []
            for picture, group in _groups(jobs):
                pipe = self.pipeline(picture)
                kwargs = self._call_kwargs(pipe, picture, group)
                batch = self.runtime.batch_size or auto_batch_size(picture, self.target.device)
                at_one = ("out of GPU memory at batch size 1; set render.attention_slicing, "
                          "render.vae_tiling or render.cpu_offload, or a smaller size")
                for chunk, images, seconds in in_batches(group, batch, lambda c: self._run(pipe, c, kwargs),
                                                         self.warn, "batch size", at_one):
                    made = {"device": self.target.device, "dtype": self.target.dtype, "batch_size": len(chunk),
                            "attention": "sliced" if self.runtime.attention_slicing else "sdpa",
                            "pipeline": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
                            "seconds": round(seconds / len(chunk), 4), "versions": versions,
                            "process": f"{self.share.rank}/{self.share.world}"}
                    for job, array in zip(chunk, images):
                        fault = image_fault(array)
                        if fault:
                            report.rejected.append((job, fault))
                            continue
                        pending.append(writer.submit(_store, cache, job, array, made))
                    pending = _drain(pending, block=len(pending) > 2 * len(chunk))
                    if progress is not None:
                        progress.update(len(chunk))
                    report.rendered += len(chunk)
                    report.batch_size = max(report.batch_size, len(chunk))  # what was used, not what was set
            _drain(pending, block=True)
        report.seconds = time.perf_counter() - started
        report.warnings = sorted(self._warned)
        return report

    def _call_kwargs(self, pipe, picture: Picture, group: Sequence[Job]) -> dict:
        accepted = loading.call_parameters(pipe)
        kwargs = {"height": picture.height, "width": picture.width, "num_inference_steps": picture.steps,
                  "guidance_scale": picture.guidance, "output_type": "np"}  # floats: NaN stays visible
        if picture.negative_prompt:
            if "negative_prompt" in accepted:
                kwargs["negative_prompt"] = picture.negative_prompt
            else:
                self._warn_once(f"{type(pipe).__name__} has no negative prompt: negative_prompt "
                                f"'{picture.negative_prompt}' is ignored for these images")
        return {k: v for k, v in kwargs.items() if k in accepted or k == "output_type"}

    def _run(self, pipe, chunk: Sequence[Job], kwargs: dict):
        import torch

        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in chunk]
        call = dict(kwargs)
        if "negative_prompt" in call:
            call["negative_prompt"] = [call["negative_prompt"]] * len(chunk)
        with torch.inference_mode():
            out = pipe(prompt=[job.prompt for job in chunk], generator=generators, **call)
        images = out.images if hasattr(out, "images") else out[0]
        if len(images) and hasattr(images[0], "convert"):  # a pipeline that ignores output_type="np"
            import numpy as np

            images = [np.asarray(i.convert("RGB"), dtype=np.float32) / 255 for i in images]
        if len(images) != len(chunk):
            raise RenderError(f"{type(pipe).__name__} returned {len(images)} images for {len(chunk)} prompts")
        return images

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warn(f"warning: {message}")


def in_batches(items: Sequence, batch: int, call: Callable, warn: Callable[[str], None], what: str, at_one: str):
    """(chunk, call(chunk), seconds) for `items` in chunks of `batch`. Out of GPU memory halves the
    batch and tries the chunk again; at batch size 1 it is a RenderError saying `at_one`."""
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
            if batch == 1:
                raise RenderError(at_one)
            batch = max(1, batch // 2)
            warn(f"out of GPU memory: {what} halved to {batch}")
            free_memory(torch)
            continue
        yield chunk, result, time.perf_counter() - t0
        i += len(chunk)


_OUT_OF_MEMORY = object()


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    return isinstance(err, oom_types) or "out of memory" in str(err).lower()


def free_memory(torch) -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _groups(jobs: Sequence[Job]) -> list[tuple[Picture, list[Job]]]:
    """Jobs that can share one pipeline call, in first-seen order."""
    groups: dict[Picture, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.picture, []).append(job)
    return list(groups.items())


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


def _store(cache: Cache, job: Job, array, made: dict) -> None:
    image = to_image(array)
    recipe = job.recipe
    png = metadata.encode_png(image, metadata.a1111_parameters(recipe, job.picture.model_name), recipe)
    sidecar = {
        "key": job.key,
        "cell": list(job.cell),
        "sample": job.sample,
        "recipe": recipe,
        "model_name": job.picture.model_name,
        "made": dict(made, created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        "png": {"width": image.width, "height": image.height},
    }
    cache.put(job.key, png, sidecar)


def _drain(pending: list[Future], *, block: bool) -> list[Future]:
    """Raise any write error now; keep the futures still running (all of them finish if `block`)."""
    still = []
    for future in pending:
        if block or future.done():
            future.result()
        else:
            still.append(future)
    return still
