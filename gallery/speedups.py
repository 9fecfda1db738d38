"""The accelerations that change no picture beyond rounding: torch.compile of the denoiser (and the
VAE decoder), channels-last memory format, fused query/key/value projections (render.compile,
render.channels_last, render.fuse_qkv). None is in the cache key.

`auto` is what the GPU benchmark measured (benchmarks/gpu.sh; BENCHMARKS.md, "Speed on a GPU", an
H200): compiled, a UNet ran 26-34% faster, after 42-43 s of compiling per image size; channels_last
and fused projections together made the uncompiled UNet 7-11% slower, and were part of the compiled
run that was measured. So on a CUDA GPU `compile: auto` compiles the denoiser once the render's first
batch shows that the images left at that size repay the compile, and channels_last and fuse_qkv
follow compile. Elsewhere `auto` is off: a CPU compiles slowly (it needs a C++ compiler).
torch is imported inside the functions: the settings table reads this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol


class Settings(Protocol):
    """The render settings this reads (config.Runtime has them; not imported: config reads this module
    through the settings table)."""

    @property
    def compile(self) -> str: ...
    @property
    def channels_last(self) -> str: ...
    @property
    def fuse_qkv(self) -> str: ...


AUTO_WHY = {
    "compile": "on a CUDA GPU, the denoiser once the first batch shows that the images left at its size repay "
    "the compile (BENCHMARKS.md); `off` elsewhere",
    "channels_last": "on where the denoiser is compiled, else off (uncompiled it measured slower: BENCHMARKS.md)",
    "fuse_qkv": "on where the denoiser is compiled, else off (uncompiled it measured slower: BENCHMARKS.md)",
}
# From BENCHMARKS.md (H200): compiling a UNet took 42-43 s; compiled calls took 26-34% less time.
COMPILE_SECONDS = 45.0
COMPILE_SAVES = 0.25
DENOISERS = ("unet", "transformer")  # a pipeline's attribute that holds its denoiser
VAES = ("vae", "vqvae")
COMPILED = ("denoiser", "all")  # the compile settings under which something is compiled


@dataclass(frozen=True)
class Speedups:
    """What to do to (or what was done to) a loaded pipeline."""

    compile: str  # "off", "denoiser", "all" (denoiser and VAE decoder), or "auto": decided while rendering
    channels_last: str  # "on", "off", or "auto": with compile
    fuse_qkv: str  # likewise

    @property
    def compiled(self) -> bool:
        return self.compile in COMPILED

    def labels(self) -> list[str]:
        """For the sidecar's `made`: what ran, beside the recipe."""
        out = [f"compile {self.compile}"] if self.compiled else []
        return out + [name for name in ("channels_last", "fuse_qkv") if getattr(self, name) == "on"]


def resolve(runtime: Settings, device: str) -> Speedups:
    """The settings for `device`: `auto` stays only where a CUDA GPU can decide it while rendering."""
    cuda = device.startswith("cuda")
    compile = runtime.compile if runtime.compile != "auto" or cuda else "off"
    follows = "on" if compile in COMPILED else "auto" if compile == "auto" else "off"

    def chosen(name: str) -> str:
        value = getattr(runtime, name)
        return follows if value == "auto" else value

    return Speedups(compile, chosen("channels_last"), chosen("fuse_qkv"))


def compile_pays(seconds_left: float) -> bool:
    """Whether compiling now repays itself over the images left at this size (`seconds_left`: their
    time uncompiled, estimated from the batch just made)."""
    return seconds_left * COMPILE_SAVES > COMPILE_SECONDS


def denoiser(pipe):
    return next((getattr(pipe, n) for n in DENOISERS if getattr(pipe, n, None) is not None), None)


def vae(pipe):
    return next((getattr(pipe, n) for n in VAES if getattr(pipe, n, None) is not None), None)


def apply(pipe, speed: Speedups, *, offloaded: bool, quantized: bool, warn: Callable[[str], None]) -> Speedups:
    """Apply what `speed` settles now to a pipeline already on its device; return what holds then
    (a part the pipeline lacks, or a setting that cannot work with another, is left off with a
    warning; `auto` stays `auto`, for `compile_now`)."""
    model = denoiser(pipe)
    name = type(pipe).__name__
    compile = speed.compile
    if compile != "off" and (offloaded or model is None):
        if compile != "auto":  # an auto that cannot happen needs no word
            warn(
                "compile stays off: render.cpu_offload moves weights during the call, which compiled code cannot"
                if offloaded
                else f"compile stays off: {name} has no unet or transformer to compile"
            )
        compile = "off"
        speed = replace(speed, **{k: "off" for k in ("channels_last", "fuse_qkv") if getattr(speed, k) == "auto"})
    channels_last = _channels_last(pipe) if speed.channels_last == "on" else speed.channels_last
    fuse = _fuse(pipe, quantized, warn) if speed.fuse_qkv == "on" else speed.fuse_qkv
    done = Speedups(compile, channels_last, fuse)
    return _compile(pipe, done) if done.compiled else done


def compile_now(pipe, speed: Speedups, *, quantized: bool, warn: Callable[[str], None]) -> Speedups:
    """`compile: auto` decided to compile: the denoiser, with channels_last and fuse_qkv where they
    follow it."""
    channels_last = _channels_last(pipe) if speed.channels_last == "auto" else speed.channels_last
    fuse = _fuse(pipe, quantized, warn) if speed.fuse_qkv == "auto" else speed.fuse_qkv
    return _compile(pipe, Speedups("denoiser", channels_last, fuse))


def _compile(pipe, speed: Speedups) -> Speedups:
    # diffusers' version checks are lru_cache'd; dynamo traces through them, and says so per call site
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
    denoiser(pipe).compile(fullgraph=False, dynamic=False)
    decoder_of = vae(pipe)
    if speed.compile == "all" and decoder_of is not None and hasattr(decoder_of, "decoder"):
        decoder_of.decoder.compile(fullgraph=False, dynamic=False)
        return speed
    return replace(speed, compile="denoiser")


def _channels_last(pipe) -> str:
    import torch

    changed = "off"
    for module in (denoiser(pipe), vae(pipe)):
        if module is not None and any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
            module.to(memory_format=torch.channels_last)
            changed = "on"
    return changed


def _fuse(pipe, quantized: bool, warn: Callable[[str], None]) -> str:
    model, name = denoiser(pipe), type(pipe).__name__
    if quantized:
        warn(f"fuse_qkv stays off: {name}'s denoiser is quantized (render.quantize)")
    elif model is None or not hasattr(model, "fuse_qkv_projections"):
        warn(f"fuse_qkv stays off: {name}'s denoiser cannot fuse its attention projections")
    else:
        try:
            model.fuse_qkv_projections()
            return "on"
        except ValueError as err:  # e.g. attention with added key/value projections
            warn(f"fuse_qkv stays off for {name}: {err}")
    return "off"


def unfuse(pipe, speed: Speedups, warn: Callable[[str], None]) -> Speedups:
    """LoRAs act on the separate query/key/value projections: a fused model goes back to them, and
    stays so for this model's later pictures, with or without LoRAs."""
    if speed.fuse_qkv == "on":
        model = denoiser(pipe)
        if model is not None and hasattr(model, "unfuse_qkv_projections"):
            model.unfuse_qkv_projections()
        warn(f"fuse_qkv is off from here for {type(pipe).__name__}: LoRAs act on the unfused projections")
    return replace(speed, fuse_qkv="off")


class CompileClock:
    """How long compiling took: a compiled call's first run at a shape compiles, so its time less the
    median of the later calls at that shape is the compile time (reported once the render ends)."""

    def __init__(self) -> None:
        self.first: dict[tuple, float] = {}
        self.later: dict[tuple, list[float]] = {}

    def record(self, shape: tuple, seconds: float) -> None:
        if shape not in self.first:
            self.first[shape] = seconds
        else:
            self.later.setdefault(shape, []).append(seconds)

    def seconds(self) -> float:
        import statistics

        total = 0.0
        for shape, first in self.first.items():
            later = self.later.get(shape)
            total += max(0.0, first - statistics.median(later)) if later else first
        return total
