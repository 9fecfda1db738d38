"""Train the demo model: a tiny Stable-Diffusion-shaped pipeline that draws coloured shapes.

    .venv/bin/pip install --no-deps open-clip-torch==3.3.0   # only for the CLIP vocabulary (make test installs it)
    .venv/bin/python demo/train.py                           # writes demo/model/ and demo/shape_classifier.safetensors

Everything is seeded; on the 2-core CPU development machine the whole run took 84 minutes
(demo/model/training.json, demo/model/README.md). Run it with nothing else on the CPU: torch's
worker threads spin-wait, so a second busy process slows training tenfold. Stages:
  1. draw the data (demo/shapes.py): shapes x colours x fills x backgrounds, random size, place, turn
  2. a shape classifier the tests use to judge the demo gallery
  3. the VAE (AutoencoderKL, 64x64 pixels <-> 16x16x4 latents), alone
  4. the UNet and the CLIP text encoder together on the VAE's latents, with classifier-free
     guidance (a tenth of the captions dropped), v-prediction on a cosine noise schedule, EMA
  5. save as a StableDiffusionPipeline (fp16 safetensors) that any diffusers code loads
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import shapes  # noqa: E402
from tiny_pipelines import clip_tokenizer_files  # noqa: E402  (the real CLIP vocabulary, from open-clip-torch)

SEED = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24000, help="drawings in the training set")
    parser.add_argument("--classifier-steps", type=int, default=400)
    parser.add_argument("--vae-steps", type=int, default=900)
    parser.add_argument("--unet-steps", type=int, default=3500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=HERE / "model")
    parser.add_argument("--classifier-out", type=Path, default=HERE / "shape_classifier.safetensors")
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(SEED)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    images, labels, captions = draw_dataset(args.images)
    timings["draw"] = time.perf_counter() - start

    t = time.perf_counter()
    train_classifier(images, labels, args.classifier_steps, args.classifier_out)
    timings["classifier"] = time.perf_counter() - t

    t = time.perf_counter()
    vae = train_vae(images, args.vae_steps, args.batch // 2)
    timings["vae"] = time.perf_counter() - t

    t = time.perf_counter()
    latents = encode(vae, images)
    tokenizer = load_tokenizer(Path(tempfile.mkdtemp(prefix="clip-tokenizer-")))
    unet, text_encoder = train_unet(latents, captions, tokenizer, args.unet_steps, args.batch)
    timings["unet"] = time.perf_counter() - t

    save(args.out, vae, unet, text_encoder, tokenizer)
    timings["total"] = time.perf_counter() - start
    record = {
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))


def draw_dataset(count: int):
    """`count` drawings, as a uint8 array, with their labels and (randomly shortened) captions."""
    rng = random.Random(SEED)
    images = np.empty((count, shapes.SIZE, shapes.SIZE, 3), dtype=np.uint8)
    labels, captions = [], []
    for i in range(count):
        shape, colour, fill, background = shapes.sample_labels(rng)
        images[i] = np.asarray(shapes.draw(shape, colour, fill, background, rng))
        labels.append(shapes.SHAPES.index(shape))
        # Prompts may leave out the fill or the background; the model then chooses.
        captions.append(
            shapes.caption(
                shape, colour, fill if rng.random() < 0.85 else None, background if rng.random() < 0.5 else None
            )
        )
    print(f"drew {count} images", flush=True)
    return images, torch.tensor(labels), captions


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_classifier(images: np.ndarray, labels: torch.Tensor, steps: int, out: Path) -> None:
    from PIL import Image
    from safetensors.torch import save_file

    classifier = shapes.ShapeClassifier()
    net = classifier.net.train()
    inputs = shapes.ShapeClassifier.tensor([Image.fromarray(im) for im in images])
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(SEED)
    for step in range(steps):
        idx = torch.randint(0, len(inputs), (128,), generator=generator)
        # Noise and blur stand in for a generator's small faults, so the judge is not too strict.
        batch = inputs[idx] + 0.08 * torch.randn(inputs[idx].shape, generator=generator)
        if step % 2:
            batch = F.avg_pool2d(batch, 3, stride=1, padding=1)
        loss = F.cross_entropy(net(batch), labels[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"classifier step {step} loss {loss.item():.4f}", flush=True)
    net.eval()
    with torch.no_grad():
        accuracy = (net(inputs[-2000:]).argmax(1) == labels[-2000:]).float().mean().item()
    print(f"classifier accuracy on drawings {accuracy:.4f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))


def build_vae():
    from diffusers import AutoencoderKL

    # Three levels: 64x64 pixels -> 16x16x4 latents (a scale of 4; real models use 8 on 512px).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=shapes.SIZE,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        mid_block_add_attention=False,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
    )


def train_vae(images: np.ndarray, steps: int, batch: int):
    vae = build_vae().train()
    optimiser = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(SEED + 1)
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=generator)
        x = to_tensor(images[idx.numpy()])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator)).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"vae step {step} loss {loss.item():.4f}", flush=True)
    return vae.eval()


@torch.no_grad()
def encode(vae, images: np.ndarray) -> torch.Tensor:
    latents = torch.cat(
        [vae.encode(to_tensor(images[i : i + 256])).latent_dist.mode() for i in range(0, len(images), 256)]
    )
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    print(f"latents {tuple(latents.shape)}, scaling factor {vae.config.scaling_factor:.4f}", flush=True)
    return latents * vae.config.scaling_factor


def load_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(clip_tokenizer_files(folder)), model_max_length=77)


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    # Small, but with the full CLIP vocabulary so that any prompt tokenises as it would for SD.
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=64,
            intermediate_size=256,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),  # sized to train in about half an hour on 2 CPU cores
        # The prompt is read where the picture is 8x8 and 4x4: enough for a shape and its colour.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def noise_scheduler():
    from diffusers import DDPMScheduler

    # A cosine schedule suits small latents; v-prediction keeps flat colours and plain backgrounds clean.
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def train_unet(latents: torch.Tensor, captions: list[str], tokenizer, steps: int, batch: int):
    unet, text_encoder = build_unet().train(), build_text_encoder().train()
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    scheduler = noise_scheduler()
    print(
        f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters, text encoder "
        f"{sum(p.numel() for p in text_encoder.parameters()) / 1e6:.2f}M",
        flush=True,
    )
    ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimiser = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=steps, pct_start=0.03)
    generator = torch.Generator().manual_seed(SEED + 2)
    ema_decay = 0.998
    running = 0.0
    for step in range(steps):
        idx = torch.randint(0, len(latents), (batch,), generator=generator)
        x0, tokens = latents[idx], ids[idx].clone()
        tokens[torch.rand(batch, generator=generator) < 0.1] = empty  # classifier-free guidance learns the empty prompt
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
        noisy = scheduler.add_noise(x0, noise, t)
        target = scheduler.get_velocity(x0, noise, t)
        context = text_encoder(tokens)[0]
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=context).sample, target)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for model, ema in ((unet, ema_unet), (text_encoder, ema_text)):
                for p, e in zip(model.parameters(), ema.parameters(), strict=True):
                    e.lerp_(p, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 250 == 0 or step == steps - 1:
            print(f"unet step {step} loss {running:.4f}", flush=True)
    return ema_unet, ema_text


def save(out: Path, vae, unet, text_encoder, tokenizer) -> None:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae.half(),
        text_encoder=text_encoder.half(),
        tokenizer=tokenizer,
        unet=unet.half(),
        scheduler=DPMSolverMultistepScheduler.from_config(noise_scheduler().config, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"saved {out} ({size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
