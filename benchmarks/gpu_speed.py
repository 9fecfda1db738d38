"""One workload's GPU figures: a plain diffusers loop against our renderer at the auto batch, the best
batch, and with the accelerations (channels_last + fuse_qkv, then torch.compile), each beside the
physical bound of its denoiser. benchmarks/gpu.sh runs every workload in turn; this is one of them.

    python3 benchmarks/gpu_speed.py --workload ldm|sd15|sdxl [--budget SECONDS] [--table FILE]
        [--repeats N] [--no-compile] [--tiny]

Models: full-size architectures with random weights (render_speed.py builds them; speed does not
depend on the weight values), built on the GPU and saved in bfloat16, loaded from disk by both sides.

  ldm   the original page's workload: LDM-KL-8-G, 256 px, DDIM, CFG 7.5. The original ran 250 steps;
        50 here to fit the run. Per step the work is the same, so the bound fraction stands; the
        fixed work per image (text encoder, VAE, PNG) weighs 5x more here, so these figures are if
        anything low.
  sd15  Stable Diffusion 1.5, 512 px, DDIM, CFG 7.5, 30 steps
  sdxl  Stable Diffusion XL base, 1024 px, Euler, CFG 7.5, 20 steps

The bound: the denoiser's FLOPs per image (torch.utils.flop_counter on the real architecture at the
real size, counted on the meta device: nothing runs; CFG's two passes counted) times steps, per
second, against the GPU's dense bf16 peak (datasheet; and against a bf16 matrix product measured at
the start of the run). Rendered images per second are end to end: text encoding, denoising, VAE
decoding, PNG encoding and cache writes (ours: Renderer.render into a fresh cache).

Sides, loaded once each and taking turns repeat by repeat (the order turning):
  plain         DiffusionPipeline.from_pretrained, float32, one prompt per call, PIL output saved as PNG
  auto          ours, bfloat16, the batch `batch_size: auto` picks, accelerations off
  best          ours at the best batch of a sweep (one call per size, before the timed rounds)
  best+cl+fuse  the same with channels_last and fuse_qkv
  best+compile  the same with compile: denoiser too (compiled before timing; the compile time printed)
A side that would not fit in --budget is skipped, and the table says so.

--tiny runs the same code on tiny models on a CPU (a test runs it; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_speed import REPO, WORKLOADS, Ours, Plain, Workload, _free, _load, build

# Dense (not sparse) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s, by name fragment.
DATASHEET_BF16 = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 NVL": 835.5,
    "H100 PCIe": 756.5,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


@dataclass(frozen=True)
class Profile:
    steps: int
    sweep: tuple[int, ...]  # batch sizes tried for the best
    images: int  # per ours side and repeat (raised to the best batch)
    plain_images: int


PROFILES = {
    "ldm": Profile(50, (16, 32, 64, 128), 64, 4),
    "sd15": Profile(30, (4, 8, 16, 32), 32, 2),
    "sdxl": Profile(20, (1, 2, 4, 8), 8, 1),
}
TINY = Profile(2, (2, 4), 4, 2)
SDXL = Workload("sdxl", 1024, 7.5, 0.0, "Stable Diffusion XL base (two CLIP encoders, 2.6B UNet), 1024x1024")
OFF = "  compile: off\n  channels_last: off\n  fuse_qkv: off\n"
CL_FUSE = "  compile: off\n  channels_last: on\n  fuse_qkv: on\n"
COMPILED = "  compile: denoiser\n  channels_last: on\n  fuse_qkv: on\n"
COMPILE_GUESS = 75  # seconds to compile a UNet (a side is skipped unless this and its rounds fit)


def denoiser_flops(model: Path, size: int) -> float:
    """FLOPs of one UNet forward for one image at `size` px (torch.utils.flop_counter on the meta
    device: the real architecture from the saved config, no weights, nothing computed)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config = json.loads((model / "unet" / "config.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        latent = size // 8
        sample = torch.randn(1, config["in_channels"], latent, latent)
        text = torch.randn(1, 77, config["cross_attention_dim"])
        extra = {}
        if config.get("addition_embed_type") == "text_time":
            pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
            extra["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled), "time_ids": torch.randn(1, 6)}
        with FlopCounterMode(display=False) as counter:
            unet(sample, torch.tensor([500]), encoder_hidden_states=text, **extra)
    return float(counter.get_total_flops())


def measured_bf16_tflops() -> float:
    """A large bf16 matrix product on random data: the median of 10 after 3 warm-ups."""
    import torch

    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    return 2 * 8192**3 / statistics.median(times) / 1e12


def datasheet_peak(name: str) -> float | None:
    return next((peak for fragment, peak in DATASHEET_BF16.items() if fragment in name), None)


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def sweep(side: Ours, batches: tuple[int, ...], say) -> dict[int, float]:
    """Images/s at each batch size (one call of that many images, into a fresh cache)."""
    from gallery.cache import Cache

    rates = {}
    side.renderer.render(side.jobs[: batches[0]], Cache(side.project / "cache-warm"))  # first-call costs
    for n in batches:
        runtime = replace(side.renderer.runtime, batch_size=n)
        side.renderer.runtime = runtime
        report = side.renderer.render(side.jobs[:n], Cache(side.project / f"cache-sweep-{n}"))
        rates[n] = report.rendered / report.seconds
        say(f"  sweep: batch {n:>4}: {rates[n]:.3f} img/s")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=tuple(PROFILES), required=True)
    parser.add_argument("--budget", type=float, default=150, help="seconds for this workload, build included")
    parser.add_argument("--table", type=Path, default=None, help="append the workload's rows (markdown) here")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds per side; the median is reported")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled side")
    parser.add_argument("--tiny", action="store_true", help="tiny models on any device: a check of this script")
    args = parser.parse_args()
    command = " ".join(shlex.quote(a) for a in ["python3", os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    deadline = Deadline(args.budget)

    from gallery.loading import quiet_libraries

    quiet_libraries()
    import diffusers
    import torch

    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    name = args.workload
    w = SDXL if name == "sdxl" else WORKLOADS[name]
    profile = TINY if args.tiny else PROFILES[name]
    size = 64 if args.tiny else w.size
    w = replace(w, size=size)
    card = torch.cuda.get_device_name(0) if gpu else f"CPU ({os.cpu_count()} cores)"
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"== {name}: {w.describe}{' (TINY: a check, not a figure)' if args.tiny else ''}; {profile.steps} steps")
    say(f"   {card}; torch {torch.__version__}, diffusers {diffusers.__version__}; load {_load()}")
    peak = datasheet_peak(card) if gpu else None
    matmul = measured_bf16_tflops() if gpu else None
    if gpu:
        say(f"   bf16 peak: datasheet {peak or 'unknown'} TFLOP/s; a measured 8192^3 product {matmul:.0f} TFLOP/s")

    work = Path(tempfile.mkdtemp(prefix=f"gpu-speed-{name}-"))
    model = work / "model"
    t0 = time.perf_counter()
    if args.tiny:
        from tests import tiny_pipelines

        builder = {"ldm": tiny_pipelines.build_tiny_ldm, "sd15": tiny_pipelines.build_tiny_sd}
        builder.get(name, tiny_pipelines.build_tiny_sdxl)(model)
    else:
        params = build(name, model, device=device, dtype="bfloat16" if gpu else "float32")
        say(f"   model: {params / 1e9:.2f}B parameters, built and saved in {time.perf_counter() - t0:.0f}s")
    cfg = 2 if w.guidance > 1 else 1
    flops = denoiser_flops(model, size) * cfg * profile.steps  # per image
    say(f"   denoiser: {flops / profile.steps / cfg / 1e12:.3f} TFLOP per forward per image; x{cfg} (CFG)")

    results: list[dict] = []
    rates: dict[str, list[float]] = {}
    from gallery.fingerprint import Memo

    memo = Memo(work)  # the model is hashed once for every side
    sides: list = [Plain(model, w, device, profile.steps, profile.plain_images, work)]
    auto = Ours(model, w, profile.steps, max(profile.sweep), work, "auto", "auto", "auto", OFF, memo)
    auto_batch = auto.batch()
    sweep_rates = sweep(auto, profile.sweep, say)
    best = max(sweep_rates, key=lambda n: sweep_rates[n])
    images = max(profile.images, best, auto_batch)
    images -= images % best  # whole batches of the best size: no padding, no other shape
    auto.jobs = auto.jobs[:images]
    auto.renderer.runtime = replace(auto.renderer.runtime, batch_size=None)  # back to auto after the sweep
    sides.append(auto)
    for label, settings in (("best", OFF), ("best+cl+fuse", CL_FUSE)):
        sides.append(Ours(model, w, profile.steps, images, work, "auto", str(best), label, settings, memo))
    # a round's time: ours from the sweep; plain guessed at a tenth of ours' best rate, per image
    per_round = (images * (len(sides) - 1) + 10 * profile.plain_images) / sweep_rates[best]
    compile_seconds = None
    if args.compile and deadline.left() > COMPILE_GUESS + per_round * args.repeats:
        compiled = Ours(model, w, profile.steps, images, work, "auto", str(best), "best+compile", COMPILED, memo)
        from gallery.cache import Cache

        t0 = time.perf_counter()
        compiled.renderer.render(compiled.jobs[:best], Cache(compiled.project / "cache-compile"))
        compile_seconds = time.perf_counter() - t0 - best / sweep_rates[best]
        say(f"   compile: the first batch took {time.perf_counter() - t0:.1f}s, about {compile_seconds:.0f}s compiling")
        sides.append(compiled)
    elif args.compile:
        say(f"   compile: skipped, {deadline.left():.0f}s left of the budget")

    for side in sides:
        if side.label != "best+compile":  # warmed by compiling
            side.warm()
    for r in range(args.repeats):
        if r and deadline.left() < per_round * 1.2:
            say(f"   stopped after {r} round(s): {deadline.left():.0f}s left of the budget")
            break
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            rates.setdefault(side.label, []).append(side.once(r))

    plain = statistics.median(rates["plain"])
    for side in sides:
        label = side.label
        rate = statistics.median(rates[label])
        batch = 1 if side is sides[0] else side.used["batch"]
        tflops = rate * flops / 1e12
        results.append(
            {
                "workload": name,
                "side": label,
                "dtype": "float32" if side is sides[0] else side.used["dtype"],
                "batch": batch,
                "img_s": rate,
                "vs_plain": rate / plain,
                "tflops": tflops,
                "of_peak": tflops / peak if peak else None,
                "of_matmul": tflops / matmul if matmul else None,
                "rounds": len(rates[label]),
            }
        )
    _free()

    say(f"   auto batch {auto_batch}, best {best}; {images} images per ours side, {profile.plain_images} plain")
    header = (
        "| workload | side | dtype | batch | img/s | x plain | denoiser TFLOP/s | of bf16 peak | of measured matmul |"
    )
    table = [header, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in results:
        table.append(
            f"| {row['workload']} | {row['side']} | {row['dtype']} | {row['batch']} | {row['img_s']:.3f} | "
            f"{row['vs_plain']:.2f}x | {row['tflops']:.0f} | "
            + (f"{row['of_peak']:.1%}" if row["of_peak"] else "-")
            + " | "
            + (f"{row['of_matmul']:.1%}" if row["of_matmul"] else "-")
            + " |"
        )
    for line in table:
        say(line)
    if compile_seconds is not None:
        say(f"compile time (best+compile): about {compile_seconds:.0f}s, once per image size")
    say(f"command: {command}; {time.perf_counter() - (deadline.end - args.budget):.0f}s")
    if args.table:
        with args.table.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n\n")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
