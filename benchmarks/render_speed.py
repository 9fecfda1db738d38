"""Images per second: our renderer against a plain diffusers loop, side by side, full-size models.

    .venv/bin/python benchmarks/render_speed.py [--workload ldm|sd15|demo|all] [--steps N] [--images N]
        [--repeats N] [--dtype auto|float32|bfloat16|float16] [--batch auto|N] [--no-cpu-dtypes]
        [--models DIR]

ldm and sd15 are full-size architectures with random weights (speed does not depend on the
weight values), built once in code (torch.manual_seed(0), the real CLIP tokenizer from the
open-clip-torch wheel) and saved with save_pretrained (fp32 safetensors) to a temporary folder,
so that both sides load it from disk exactly as a real model:

  ldm   the seed's model (LDM-KL-8-G, LDMTextToImagePipeline, LDMBert), 256x256, guidance 7.5
  sd15  Stable Diffusion 1.5 (StableDiffusionPipeline, CLIPTextModel), 512x512, guidance 7.5
  demo  the project's own trained demo model (demo/model, loaded from there), 64x64, guidance 4,
        15 steps: the CI-sized run (a test runs it), and the CPU case where batching matters most

plain: DiffusionPipeline.from_pretrained in float32 on the device, one prompt per call, a CPU
       generator per image, PIL output, each image saved as PNG (only the loop is timed).
ours:  a prompts.yaml pointing render.model at the saved folder, loaded through the functions
       the CLI uses (load_config, project.plan_of, Cache, Renderer); only
       Renderer.render (rendering + PNG encoding + cache writes) is timed, into a fresh cache
       per repeat so nothing is cached.
Both sides are loaded once and take turns, repeat by repeat (the order turning), so that load
from anything else on a shared machine falls on both alike.

The defaults are CI-sized for a CPU (2 steps, 2 images, 1 repeat). On a GPU pass the real step
counts, e.g. `--workload ldm --steps 250 --images 64 --repeats 3` and
`--workload sd15 --steps 50 --images 16 --repeats 3`; there the fraction of the UNet bound is
printed too (achieved UNet TFLOP/s against 790 TFLOP/s, an H100's measured bf16 rate).
On a CPU, `ours` is also run in bfloat16 against float32 for ldm (--no-cpu-dtypes skips it):
without AVX512-BF16/AMX bfloat16 is emulated, and expected to be slower.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

UNET_BOUND_TFLOPS = 790.0  # an H100's bf16 matmul rate, measured here
PROMPT = "a photograph of an astronaut riding a horse, highly detailed"


@dataclass(frozen=True)
class Workload:
    name: str
    size: int
    guidance: float
    unet_tflop: float  # per UNet forward, per image (CFG doubles it); 0: not counted
    describe: str
    prompt: str = PROMPT


WORKLOADS = {
    "ldm": Workload("ldm", 256, 7.5, 0.182, "LDM-KL-8-G (LDMTextToImagePipeline, LDMBert 32x1280), 256x256"),
    "sd15": Workload(
        "sd15", 512, 7.5, 0.80, "Stable Diffusion 1.5 (StableDiffusionPipeline, CLIP ViT-L text), 512x512"
    ),
    # The project's own trained demo model (demo/model): small enough for a CI-sized run on a CPU.
    "demo": Workload(
        "demo",
        64,
        4.0,
        0.0,
        "the demo model (demo/model, StableDiffusionPipeline, 1.7M-parameter UNet), 64x64",
        prompt="a blue star, filled",
    ),
}
DEMO_MODEL = REPO / "demo" / "model"


# ---------------------------------------------------------------- building the random models


def _sd_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        norm_num_groups=32,
        sample_size=512,
    )


def _unet(sample_size: int, cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
    )


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build(name: str, directory: Path, device: str = "cpu", dtype: str = "float32") -> float:
    """Build workload `name` with random weights and save it to `directory` (its weights in `dtype`;
    built on `device`: a GPU initialises billions of weights in a second); return its parameter count."""
    import torch

    from tests.tiny_pipelines import clip_tokenizer

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(directory.parent)
    with torch.device(device):
        pipe = _build(name, tokenizer)
    params = sum(p.numel() for m in pipe.components.values() if isinstance(m, torch.nn.Module) for p in m.parameters())
    pipe.to(dtype=getattr(torch, dtype))
    pipe.save_pretrained(directory, safe_serialization=True)
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return params


def _clip_text(hidden: int, layers: int, heads: int, act: str, *, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _build(name: str, tokenizer):
    if name == "sdxl":
        from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

        from tests.tiny_pipelines import sdxl_scheduler

        unet = UNet2DConditionModel(  # stabilityai/stable-diffusion-xl-base-1.0's unet/config.json
            sample_size=128,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            transformer_layers_per_block=(1, 2, 10),
            cross_attention_dim=2048,
        )
        vae = _sd_vae()
        vae.register_to_config(scaling_factor=0.13025, sample_size=1024)
        return StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=_clip_text(768, 12, 12, "quick_gelu"),
            text_encoder_2=_clip_text(1280, 32, 20, "gelu", projection=True),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=sdxl_scheduler(),
        )
    if name == "ldm":
        from diffusers import LDMTextToImagePipeline
        from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel

        bert = LDMBertModel(
            LDMBertConfig(
                vocab_size=49408,
                d_model=1280,
                encoder_layers=32,
                encoder_attention_heads=8,
                head_dim=64,
                encoder_ffn_dim=5120,
                max_position_embeddings=77,
            )
        )
        return LDMTextToImagePipeline(
            vqvae=_sd_vae(), bert=bert, tokenizer=tokenizer, unet=_unet(32, 1280), scheduler=_ddim()
        )
    else:
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=_sd_vae(),
            text_encoder=_clip_text(768, 12, 12, "quick_gelu"),
            tokenizer=tokenizer,
            unet=_unet(64, 768),
            scheduler=_ddim(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


# ---------------------------------------------------------------- the two sides


class Plain:
    """A plain diffusers loop: float32, one prompt per call, PIL output saved as PNG."""

    label = "plain"

    def __init__(self, model: Path, w: Workload, device: str, steps: int, images: int, out: Path):
        import torch
        from diffusers import DiffusionPipeline

        self.w, self.device, self.steps, self.images, self.out = w, device, steps, images, out
        self.pipe = DiffusionPipeline.from_pretrained(str(model), torch_dtype=torch.float32).to(device)
        self.pipe.set_progress_bar_config(disable=True)  # output only; costs nothing measurable

    def warm(self) -> None:
        """One untimed one-step call: first-call costs stay out of the rounds."""
        import torch

        self.pipe(
            self.w.prompt,
            height=self.w.size,
            width=self.w.size,
            num_inference_steps=1,
            guidance_scale=self.w.guidance,
            generator=torch.Generator("cpu").manual_seed(0),
        )

    def once(self, r: int) -> float:
        """images/s of one repeat."""
        import torch

        folder = self.out / f"plain-{self.w.name}-{r}"
        folder.mkdir(parents=True)
        _sync(self.device)
        t0 = time.perf_counter()
        for i in range(self.images):
            image = self.pipe(
                self.w.prompt,
                height=self.w.size,
                width=self.w.size,
                num_inference_steps=self.steps,
                guidance_scale=self.w.guidance,
                generator=torch.Generator("cpu").manual_seed(i),
            ).images[0]
            image.save(folder / f"{i:05d}.png")
        _sync(self.device)
        rate = self.images / (time.perf_counter() - t0)
        shutil.rmtree(folder, ignore_errors=True)
        return rate


class Ours:
    """gallery's Renderer, loaded through the functions the CLI uses; each repeat into a fresh cache."""

    def __init__(
        self,
        model: Path,
        w: Workload,
        steps: int,
        images: int,
        out: Path,
        dtype: str,
        batch: str,
        label: str,
        settings: str = "",
        memo=None,
    ):
        from gallery.config import load_config
        from gallery.project import plan_of
        from gallery.render import Renderer

        self.label = label
        self.project = out / f"ours-{w.name}-{label.replace(' ', '-')}"
        self.project.mkdir(parents=True)
        prompts = self.project / "prompts.yaml"
        prompts.write_text(
            f"page: {{title: render speed {w.name}}}\n"
            f"render:\n  model: {model}\n  scheduler: default\n  steps: {steps}\n  guidance: {w.guidance}\n"
            f"  width: {w.size}\n  height: {w.size}\n  samples: {images}\n  seed: 0\n"
            f"  dtype: {dtype}\n  batch_size: {batch}\n{settings}"
            f'axes:\n  subject: {{bench: "{w.prompt}"}}\n'
            f"paths: {{cache: cache-0}}\n",
            encoding="utf-8",
        )
        config = load_config(prompts)
        t0 = time.perf_counter()
        plan = plan_of(config, memo)  # a memo shared by sides hashes the model once
        self.hash_s = time.perf_counter() - t0
        self.jobs = list(plan.jobs)
        self.renderer = Renderer(config.runtime, warn=lambda m: print(f"  [gallery] {m}", file=sys.stderr))
        t0 = time.perf_counter()
        self.renderer.pipeline(self.jobs[0].picture)
        self.load_s = time.perf_counter() - t0
        self.used: dict = {}

    def batch(self) -> int:
        """The batch size a call gets: the one set, or what `auto` picks here."""
        from gallery.render import auto_batch_size

        return self.renderer.runtime.batch_size or auto_batch_size(self.jobs[0].picture, self.renderer.target.device)

    def warm(self) -> None:
        """One untimed batch: what a first call costs (kernel choices, allocations) stays out of the rounds."""
        from gallery.cache import Cache

        cache = Cache(self.project / "cache-warm")
        self.renderer.render(self.jobs[: self.batch()], cache)
        shutil.rmtree(cache.root, ignore_errors=True)

    def once(self, r: int) -> float:
        """images/s of one repeat (rendering, PNG encoding, cache writes)."""
        from gallery.cache import Cache

        cache = Cache(self.project / f"cache-run-{r}")  # fresh: nothing cached
        assert not cache.whole_entries(j.key for j in self.jobs)
        report = self.renderer.render(self.jobs, cache)
        if report.rejected:
            print(
                f"  [{self.label}] {len(report.rejected)} images rejected (not cached): {report.rejected[0][1]}",
                file=sys.stderr,
            )
        if len(cache.whole_entries(j.key for j in self.jobs)) + len(report.rejected) != len(self.jobs):
            raise SystemExit(f"{self.label}: not every image reached the cache")
        # report.batch_size is the batch size set (auto: 4 on a CPU); a call holds at most `images`
        self.used = {
            "device": report.device,
            "dtype": report.dtype,
            "batch": min(report.batch_size, len(self.jobs)),
            "batch_set": report.batch_size,
        }
        shutil.rmtree(cache.root, ignore_errors=True)
        return report.rendered / report.seconds


def side_by_side(sides: list, repeats: int) -> dict[str, list[float]]:
    """Each side once per round, the order turning every round, so that a noisy neighbour
    slows every side alike rather than whichever happened to run then."""
    rates: dict[str, list[float]] = {side.label: [] for side in sides}
    for r in range(repeats):
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            rates[side.label].append(side.once(r))
    return rates


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("ldm", "sd15", "demo", "all"), default="all", help="all: ldm and sd15")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="inference steps (default: 2 on CPU, 250 ldm / 50 sd15 on GPU; demo: 15)",
    )
    parser.add_argument(
        "--images", type=int, default=None, help="images per side and repeat (default: 2 on CPU, 16 on GPU)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="default: 1 on CPU, 3 on GPU; the median is reported")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"), help="ours' dtype"
    )
    parser.add_argument("--batch", default="auto", help="ours' batch_size: auto or a number")
    parser.add_argument(
        "--cpu-dtypes",
        dest="cpu_dtypes",
        action="store_true",
        default=None,
        help="on CPU (default there): also ours in bfloat16 vs float32, ldm only",
    )
    parser.add_argument("--no-cpu-dtypes", dest="cpu_dtypes", action="store_false")
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="keep the built models in this folder and reuse them next time (default: a temp dir, deleted)",
    )
    args = parser.parse_args()
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, Path.cwd()), *sys.argv])

    from gallery.loading import cpu_has_bf16, quiet_libraries

    quiet_libraries()
    import diffusers
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # what both sides use (ours: device auto)
    gpu = device == "cuda"
    images = args.images or (16 if gpu else 2)
    repeats = args.repeats or (3 if gpu else 1)
    cpu_dtypes = (not gpu) if args.cpu_dtypes is None else (args.cpu_dtypes and not gpu)
    names = ["ldm", "sd15"] if args.workload == "all" else [args.workload]
    where = (
        torch.cuda.get_device_name(0)
        if gpu
        else f"CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    print(f"render speed: {where}; torch {torch.__version__}, diffusers {diffusers.__version__}")
    if not gpu:
        print(f"CPU bfloat16 instructions (AVX512-BF16 or AMX): {'yes' if cpu_has_bf16() else 'NO (bf16 is emulated)'}")

    print(f"load average at start: {_load()} (anything else running skews a CPU run; compare it with the end)")
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still deletes the temp folder (GBs)
    work = Path(tempfile.mkdtemp(prefix="render-speed-"))
    model_root = args.models or work / "models"
    rows = []
    started = time.perf_counter()
    try:
        for name in names:
            w = WORKLOADS[name]
            steps = args.steps or (15 if name == "demo" else (250 if name == "ldm" else 50) if gpu else 2)
            model = DEMO_MODEL if name == "demo" else (model_root / name).resolve()
            print(f"\n== {name}: {w.describe}; {steps} steps, {images} images, {repeats} repeat(s)")
            if (model / "model_index.json").is_file():
                print(f"  model: reusing {model}")
            else:
                t0 = time.perf_counter()
                params = build(name, model)
                print(
                    f"  model: {params / 1e9:.2f}B parameters, built and saved (fp32) "
                    f"in {time.perf_counter() - t0:.0f}s"
                )

            runs = [(args.dtype, "ours")]
            if cpu_dtypes and name == "ldm":
                runs = [("float32", "ours fp32"), ("bfloat16", "ours bf16")]
                if args.dtype not in ("auto", "float32", "bfloat16"):
                    runs.insert(0, (args.dtype, "ours"))
            # All sides stay loaded and take turns (a 1.6B model is 6.4 GB in fp32 per side).
            sides = [Plain(model, w, device, steps, images, work)]
            sides += [Ours(model, w, steps, images, work, dtype, args.batch, label) for dtype, label in runs]
            measured = side_by_side(sides, repeats)
            p = measured.pop("plain")
            print(f"  plain  float32: {_rates(p)}")
            results = {}
            for side in sides[1:]:
                o, used = measured[side.label], side.used
                results[side.label] = (statistics.median(o), used)
                print(
                    f"  {side.label:<6} {used['dtype']}: {_rates(o)}; batch {used['batch']} "
                    f"(set {used['batch_set']}), {used['device']} "
                    f"(model hashed in {side.hash_s:.1f}s, loaded in {side.load_s:.1f}s, not timed)"
                )
            del sides
            _free()
            plain_rate = statistics.median(p)
            for label, (rate, used) in results.items():
                row = {
                    "workload": name,
                    "side": label,
                    "device": used["device"],
                    "dtype": used["dtype"],
                    "batch": used["batch"],
                    "steps": steps,
                    "images": images,
                    "plain": plain_rate,
                    "ours": rate,
                    "ratio": rate / plain_rate,
                    "bound": None,
                }
                if gpu and w.unet_tflop:
                    achieved = rate * steps * 2 * w.unet_tflop  # TFLOP/s in the UNet (CFG: 2 forwards per step)
                    row["bound"] = achieved / UNET_BOUND_TFLOPS
                    print(f"  {label}: UNet {achieved:.0f} TFLOP/s = {row['bound']:.1%} of {UNET_BOUND_TFLOPS:.0f}")
                rows.append(row)
            if "ours fp32" in results and "ours bf16" in results:
                ratio = results["ours bf16"][0] / results["ours fp32"][0]
                print(
                    f"  bf16/fp32 (ours): {ratio:.2f}x "
                    + (
                        ""
                        if cpu_has_bf16()
                        else "-- this CPU has no AVX512-BF16/AMX, so bf16 is emulated; `dtype: auto` picks float32 here"
                    )
                )
            if args.models is None and name != "demo":
                shutil.rmtree(model, ignore_errors=True)  # a few GB each
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("\nsummary (images/s, median of repeats; ours = Renderer.render incl. PNG encode + cache write)")
    head = (
        f"{'workload':<9}{'side':<11}{'device':<8}{'dtype':<10}{'batch':>5}{'steps':>6}{'images':>7}"
        f"{'plain img/s':>13}{'ours img/s':>12}{'ours/plain':>11}"
    )
    print(head + ("  UNet bound" if gpu else ""))
    for r in rows:
        line = (
            f"{r['workload']:<9}{r['side']:<11}{r['device']:<8}{r['dtype']:<10}{r['batch']:>5}{r['steps']:>6}"
            f"{r['images']:>7}{r['plain']:>13.4f}{r['ours']:>12.4f}{r['ratio']:>10.2f}x"
        )
        print(line + (f"  {r['bound']:>9.1%}" if r["bound"] is not None else ""))
    print(
        f"plain = DiffusionPipeline float32, 1 prompt/call, PIL + PNG save; wall {time.perf_counter() - started:.0f}s"
    )
    print(f"load average at the end: {_load()}")
    print(f"command: {command}")
    return 0


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"
    except OSError:
        return "unknown"


def _rates(rates: list[float]) -> str:
    extra = f" (of {', '.join(f'{r:.4f}' for r in rates)})" if len(rates) > 1 else ""
    return f"{statistics.median(rates):.4f} img/s{extra}"


if __name__ == "__main__":
    sys.exit(main())
