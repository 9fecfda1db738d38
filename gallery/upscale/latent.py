"""Cached renders -> 4x pictures through diffusers' latent upscalers. The only place that runs one.

LDSR (LDMSuperResolutionPipeline) takes the image alone; the SD x4 upscaler
(StableDiffusionUpscalePipeline) also takes a prompt: the source image's own. Images of one size
share a pipeline call; each draws its noise from a CPU generator seeded with its source's seed, so
an image comes out the same alone or in any batch, on any device. Out of memory halves the batch,
as rendering does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gallery import loading
from gallery.batching import in_batches
from gallery.config import Runtime
from gallery.errors import RenderError
from gallery.plan import UpscaleJob
from gallery.upscale.model_upscaler import ModelUpscaler, by_size


def auto_batch_size(width: int, height: int, device: str) -> int:
    """A first guess: a few 256px sources per call on a GPU (out-of-memory halves it); one elsewhere,
    where a batch gains nothing and only holds more memory."""
    if device.startswith("cuda"):
        return max(1, min(16, (256 * 256 * 4) // (width * height)))
    return 1


class LatentUpscaler(ModelUpscaler):
    def load(self, runtime: Runtime) -> None:
        self.pipe = loading.load_upscaler(self.upscale, self.target, runtime)

    def batches(self, todo: Sequence[UpscaleJob], source: Callable[[UpscaleJob], object]) -> Iterator[tuple]:
        """One pipeline call at a time: 4x pictures."""
        versions = loading.versions("diffusers", "transformers")
        for (width, height), group in by_size(todo).items():
            batch = self.upscale.batch_size or auto_batch_size(width, height, self.target.device)
            at_one = (
                "out of GPU memory upscaling one image; set render.attention_slicing, "
                "render.vae_tiling or render.cpu_offload, or use upscaler: lanczos"
            )

            def call(chunk: Sequence[UpscaleJob]):
                return self._call([source(u) for u in chunk], chunk)

            for chunk, arrays, seconds in in_batches(group, batch, call, self.warn, "upscale batch size", at_one):
                yield (
                    chunk,
                    arrays,
                    {
                        "device": self.target.device,
                        "dtype": self.target.dtype,
                        "batch_size": len(chunk),
                        "pipeline": type(self.pipe).__name__,
                        "scheduler": type(self.pipe.scheduler).__name__,
                        "seconds": round(seconds / len(chunk), 4),
                        "versions": versions,
                    },
                )

    def _call(self, images: list, chunk: Sequence[UpscaleJob]):
        """One pipeline call: float images (height, width, 3) in 0..1, one per job."""
        import torch

        generators = [torch.Generator("cpu").manual_seed(u.source.seed) for u in chunk]
        kwargs: dict[str, Any] = {
            "num_inference_steps": self.upscale.steps,
            "generator": generators,
            "output_type": "pt",
        }  # LDSR's "np" cannot convert bfloat16; we convert below
        if self.upscale.guidance is not None:  # the SD x4 upscaler: text-conditioned
            kwargs.update(
                prompt=[u.source.prompt for u in chunk],
                image=images,
                negative_prompt=[u.source.picture.negative_prompt for u in chunk],
                guidance_scale=self.upscale.guidance,
                noise_level=self.upscale.noise_level,
            )
        else:  # LDSR takes a batch only as a tensor
            kwargs.update(image=torch.cat([_ldsr_input(image) for image in images]))
        with torch.inference_mode():
            out = self.pipe(**kwargs)
        pictures = out.images.float().cpu().permute(0, 2, 3, 1).numpy()
        if len(pictures) != len(chunk):
            raise RenderError(f"{type(self.pipe).__name__} returned {len(pictures)} images for {len(chunk)} sources")
        return pictures


def _ldsr_input(image):
    """A PIL image as LDSR's pipeline prepares a single one: sides cut to a multiple of 32 (its UNet's
    stride), values in -1..1, shape (1, 3, H, W)."""
    import numpy as np
    import torch
    from PIL import Image

    w, h = (x - x % 32 for x in image.size)
    if (w, h) != image.size:
        image = image.resize((w, h), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.transpose(2, 0, 1)[None].copy()) * 2.0 - 1.0
