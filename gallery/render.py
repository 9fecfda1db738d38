"""Missing jobs -> images in the cache. The only place that runs a diffusion pipeline.

Jobs that share their picture settings are batched; each image draws its starting noise from
its own CPU generator, so a job gives the same image alone or in any batch, on any device.
PNG encoding and cache writes run in a writer thread while the next batch renders (gallery.batching).
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from gallery import families, loading, loras, metadata, quantize, schedulers, speedups
from gallery.batching import in_batches, is_out_of_memory, store_good
from gallery.cache import Cache
from gallery.config import Picture, Runtime
from gallery.errors import RenderError
from gallery.families import Effect
from gallery.plan import Job
from gallery.workers import Share


@dataclass
class RenderReport:
    rendered: int = 0
    seconds: float = 0.0
    device: str = ""
    dtype: str = ""
    batch_size: int = 0  # the largest batch used, not the one set
    rejected: list[tuple[Job, str]] = field(default_factory=list)  # images not cached, and why
    compile_seconds: float = 0.0  # spent compiling (render.compile), included in `seconds`


def auto_batch_size(picture: Picture, device: str) -> int:
    """A first guess that fills a GPU; out-of-memory halves it anyway."""
    if device.startswith("cuda"):
        return cuda_batch_size(picture.width * picture.height, _gpu_memory_gib(device))
    if device == "mps":
        return 1
    # On a CPU 4 is enough for 256px and up; tiny images need more per call to keep the cores busy
    # (the 64px demo model: 7.5 img/s at 4, 11.1 at 16; BENCHMARKS.md).
    return max(4, min(16, (128 * 128 * 4) // (picture.width * picture.height)))


def cuda_batch_size(pixels: int, memory_gib: float) -> int:
    """On an H200 (139.8 GiB as torch counts it) images per second rose up to the largest batch tried
    at each size: 128 at 256x256, 32 at 512x512, 8 at 1024x1024 (BENCHMARKS.md), i.e. 128 256-pixel
    squares' worth. Less memory gets proportionally fewer, as a power of two: 24 GiB gives 16, 4, 1."""
    fit = 256 * 256 * 128 * min(1.0, memory_gib / 139) / pixels
    batch = 1
    while batch * 2 <= min(fit, 128):
        batch *= 2
    return batch


def _gpu_memory_gib(device: str) -> float:
    import torch

    return torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30


class Renderer:
    def __init__(
        self,
        runtime: Runtime,
        share: Share = Share(),
        *,
        warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    ):
        self.runtime = runtime
        self.share = share
        self.warn = warn
        self.target = loading.choose_target(runtime, gpu_index=share.local_rank)
        self._pipes: dict[tuple, object] = {}
        self._speedups: dict[tuple, speedups.Speedups] = {}  # what each loaded pipeline was given
        self._compile_clock = speedups.CompileClock()
        self._loras: dict[Picture, list[dict]] = {}  # what each picture's LoRAs were (name, scale, hash)
        self._warned: set[str] = set()

    def pipeline(self, picture: Picture):
        """Load (once) the pipeline for `picture`'s model, with `picture`'s scheduler and LoRAs set
        (a LoRA file is loaded once per model; switching LoRAs or scales reloads nothing)."""
        ident = _ident(picture)
        if ident not in self._pipes:
            self._pipes.clear()  # one model in memory at a time
            self._loras.clear()
            self._speedups.clear()
            pipe = loading.load_pipeline(picture, self.target, self.runtime)
            self._speedups[ident] = speedups.apply(
                pipe,
                speedups.resolve(self.runtime, self.target.device),
                offloaded=self.runtime.cpu_offload != "none" and self.target.device != "cpu",
                quantized=bool(_quantized_parts(pipe)),
                warn=self._warn_once,
            )
            self._pipes[ident] = pipe
        pipe = self._pipes[ident]
        import diffusers

        loading.set_scheduler(pipe, picture, diffusers)
        loading.check_call(pipe, picture)
        if picture.loras:
            self._speedups[ident] = speedups.unfuse(pipe, self._speedups[ident], self._warn_once)
        self._loras[picture] = loras.set_loras(pipe, picture)
        return pipe

    def check(self, jobs: Sequence[Job]) -> None:
        """Load the first job's model, so that a model that cannot load stops the build before any
        image; then give it each of the jobs' schedulers, call arguments and LoRAs in turn (no weights
        move but a LoRA's, loaded once), so that an option the model refuses stops it too; pictures of
        another model are checked when that model loads. A render.quantize this machine cannot run
        (nf4 on a CPU) stops it too, whatever the model."""
        self.pipeline(jobs[0].picture)
        for picture in dict.fromkeys(job.picture for job in jobs):
            quantize.check_quantize(picture, self.target.device)
            if _ident(picture) in self._pipes:
                self.pipeline(picture)

    def render(self, jobs: Sequence[Job], cache: Cache, progress=None) -> RenderReport:
        started = time.perf_counter()
        stored = store_good(self._batches(jobs), lambda job, image, made: _store(cache, job, image, made), progress)
        return RenderReport(
            stored.count,
            time.perf_counter() - started,
            self.target.device,
            self.target.dtype,
            stored.batch_size,
            stored.rejected,
            self._compile_clock.seconds(),
        )

    def _batches(self, jobs: Sequence[Job]) -> Iterator[tuple[Sequence[Job], Sequence, dict]]:
        """(jobs, float images, how they were made) per pipeline call."""
        versions = loading.versions("diffusers", "transformers")
        per_size = Counter((job.picture.width, job.picture.height) for job in jobs)  # images left per size
        for picture, group in _groups(jobs):
            pipe = self.pipeline(picture)
            ident, size = _ident(picture), (picture.width, picture.height)
            first = True  # a group's first call may pay for a model's first use
            kwargs = self._call_kwargs(pipe, picture, group[0].effect)
            batch = self.runtime.batch_size or auto_batch_size(picture, self.target.device)
            at_one = (
                "out of GPU memory at batch size 1; set render.attention_slicing, "
                "render.vae_tiling or render.cpu_offload, or a smaller size"
            )
            # compiled code is specialised to its batch: a shorter chunk is padded to this, so that a
            # size compiles once (padding costs a few images; compiling again, tens of seconds)
            shape = {"batch": min(batch, per_size[size]) if self._speedups[ident].compiled else 0}

            def call(chunk, pipe=pipe, kwargs=kwargs, shape=shape):  # bound now: the loop moves on
                padding = max(0, shape["batch"] - len(chunk))
                try:
                    return self._run(pipe, chunk, kwargs, padding)
                except Exception as err:
                    if is_out_of_memory(err):  # in_batches halves the chunk: the padded shape halves too
                        shape["batch"] = (shape["batch"] + 1) // 2
                    raise

            loras = {"loras": self._loras[picture]} if picture.loras else {}
            for chunk, images, seconds in in_batches(group, batch, call, self.warn, "batch size", at_one):
                speed = self._speedups[ident]  # what made this chunk
                per_size[size] -= len(chunk)
                if speed.compiled:
                    self._compile_clock.record((*size, max(len(chunk), shape["batch"])), seconds)
                elif speed.compile == "auto" and not first:  # a first call's costs would skew the estimate
                    self._compile_if_it_pays(pipe, ident, seconds / len(chunk), per_size[size], size)
                    shape["batch"] = len(chunk) if self._speedups[ident].compiled else 0
                first = False
                yield (
                    chunk,
                    images,
                    {
                        **loras,
                        "device": self.target.device,
                        "dtype": self.target.dtype,
                        "batch_size": len(chunk),
                        "attention": "sliced" if self.runtime.attention_slicing else "sdpa",
                        "pipeline": type(pipe).__name__,
                        "scheduler": type(pipe.scheduler).__name__,
                        "sampler": schedulers.label_of(type(pipe.scheduler).__name__, dict(pipe.scheduler.config)),
                        "seconds": round(seconds / len(chunk), 4),
                        "versions": versions,
                        "process": f"{self.share.rank}/{self.share.world}",
                        **({"speedups": speed.labels()} if speed.labels() else {}),
                        **_quantized(pipe, picture),
                    },
                )

    def _compile_if_it_pays(self, pipe, ident: tuple, seconds_per_image: float, left: int, size: tuple) -> None:
        """render.compile: auto on a CUDA GPU: compile the denoiser once the images left at this size
        would take long enough uncompiled to repay the compile (speedups.compile_pays)."""
        if not speedups.compile_pays(seconds_per_image * left):
            return
        self.warn(
            f"compiling the denoiser (render.compile: auto): {left} images left at {size[0]}x{size[1]}, about "
            f"{seconds_per_image * left / 60:.0f} min uncompiled; compiling takes about "
            f"{speedups.COMPILE_SECONDS:.0f}s per image size and saves about {speedups.COMPILE_SAVES:.0%}"
        )
        self._speedups[ident] = speedups.compile_now(
            pipe,
            self._speedups[ident],
            quantized=bool(_quantized_parts(pipe)),
            warn=self._warn_once,
        )

    def _call_kwargs(self, pipe, picture: Picture, effect: Effect) -> dict:
        """The call's arguments: the picture's settings that take effect (the plan's `effect`), and the
        asked size honoured by pipelines that would otherwise snap it to sizes of their own."""
        accepted = loading.call_parameters(pipe)
        kwargs: dict = {
            "height": picture.height,
            "width": picture.width,
            "num_inference_steps": picture.steps,
            "output_type": "np",  # floats: NaN stays visible
            "use_resolution_binning": False,  # PixArt, Sana, HunyuanDiT: render the size asked, not a bin
            # PixArt's caption cleaning runs only where bs4 and ftfy happen to be installed: off, so the
            # same recipe makes the same picture on any machine (call: {clean_caption: true} turns it on)
            "clean_caption": False,
        }
        if effect.sends_guidance:
            kwargs["guidance_scale"] = picture.guidance
        name = type(pipe).__name__
        if effect.negative or (picture.negative_prompt and not effect.known):
            if "negative_prompt" in accepted:
                kwargs["negative_prompt"] = picture.negative_prompt
            else:
                self._warn_once(
                    f"{name} has no negative prompt: negative_prompt '{picture.negative_prompt}' "
                    "is ignored for these images"
                )
        elif picture.negative_prompt:
            self._warn_once(
                f"negative_prompt '{picture.negative_prompt}' has no effect on these images "
                f"({families.why_no_negative(name, effect)}): it is not recorded, and changing it re-renders nothing"
            )
        # the pipeline's own arguments (checked against its signature: loading.check_call) come last
        kwargs.update((name, list(v) if isinstance(v, tuple) else v) for name, v in picture.call)
        return {k: v for k, v in kwargs.items() if k in accepted or k == "output_type"}

    def _run(self, pipe, chunk: Sequence[Job], kwargs: dict, padding: int = 0):
        """The chunk's images; `padding` more are made (of the last job's prompt, thrown away) so that
        the call has the batch size compiled code was made for."""
        import torch

        jobs = list(chunk) + [chunk[-1]] * padding
        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in jobs]
        call = dict(kwargs)
        if "negative_prompt" in call:
            call["negative_prompt"] = [call["negative_prompt"]] * len(jobs)
            if type(pipe).__name__ in families.AUTO_TEXT2IMAGE.values():
                generators = _prior_generators(generators)
        with torch.inference_mode():
            out = pipe(prompt=[job.prompt for job in jobs], generator=generators, **call)
        images = out.images if hasattr(out, "images") else out[0]
        if padding and len(images) == len(jobs):
            images = images[: len(chunk)]
        if len(images) and hasattr(images[0], "convert"):  # a pipeline that ignores output_type="np"
            import numpy as np

            images = [np.asarray(i.convert("RGB"), dtype=np.float32) / 255 for i in images]
        if len(images) != len(chunk):
            raise RenderError(f"{type(pipe).__name__} returned {len(images)} images for {len(chunk)} prompts")
        made = (len(images[0][0]), len(images[0])) if len(images) else None  # (width, height) of arrays h x w x c
        asked = (chunk[0].picture.width, chunk[0].picture.height)
        if made and made != asked:  # some families render only at their own sizes (HunyuanDiT)
            self._warn_once(
                f"{type(pipe).__name__} made {made[0]}x{made[1]} pictures when asked for {asked[0]}x{asked[1]}; "
                "their PNG and page say the size they are"
            )
        return images

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warn(f"warning: {message}")


def _prior_generators(generators: list) -> list:
    """Generators for a Kandinsky combined pipeline given negative prompts. Its prior denoises the
    prompts and the negative prompts as one batch (rows 0..n-1, then n..2n-1: the negative rows make the
    decoder's negative image embeddings) and draws every noise row i from generators[i]; the decoder
    then draws its n rows from generators[:n]. Image i's generator, listed twice, feeds its prompt's row,
    then its negative prompt's, then its decoder row, in the same order at any batch size: each image is
    the same alone or in a batch (one generator per image, as for every pipeline, would fail: the prior
    needs 2n)."""
    return generators + generators


def _ident(picture: Picture) -> tuple:
    """What decides which pipeline is loaded (the scheduler is set on it per picture)."""
    return (picture.model, picture.revision, picture.pipeline, picture.quantize, picture.config_source)


def _quantized_parts(pipe) -> dict:
    """Which parts render.quantize made smaller (loading sets it on the pipeline; {} where none)."""
    return getattr(pipe, "_gallery_quantized", {})


def _quantized(pipe, picture: Picture) -> dict:
    """For the sidecar: which parts render.quantize made smaller, and how."""
    parts = _quantized_parts(pipe)
    if not parts:
        return {}
    library = quantize.BACKEND_LIBRARIES[picture.quantize]
    return {
        "quantized": {
            "backend": quantize.BACKENDS[picture.quantize],
            "parts": sorted(parts),
            "version": f"{library} {importlib.metadata.version(library)}",  # its rounding may change between releases
        }
    }


def _groups(jobs: Sequence[Job]) -> list[tuple[Picture, list[Job]]]:
    """Jobs that can share one pipeline call, in first-seen order."""
    groups: dict[Picture, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.picture, []).append(job)
    return list(groups.items())


def _store(cache: Cache, job: Job, image, made: dict) -> None:
    recipe = job.recipe
    parameters = metadata.a1111_parameters(
        recipe,
        job.picture.model_name,
        made.get("sampler"),
        size=(image.width, image.height),
        effect=job.effect,
        loras=made.get("loras", ()),
    )
    png = metadata.encode_png(image, parameters, recipe)
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
