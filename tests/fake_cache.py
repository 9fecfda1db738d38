"""Cache entries without a model: a given picture stored under a job's real key and recipe, as a
render would store it (PNG with its parameters, then the sidecar), for tests of what reads the cache."""

from __future__ import annotations

from PIL import Image

from gallery.cache import Cache
from gallery.metadata import a1111_parameters, encode_png
from gallery.plan import Job, UpscaleJob


def put_fake(cache: Cache, job: Job | UpscaleJob, image: Image.Image) -> bytes:
    """Store `image` as the entry of `job` (a render or an upscale); return the PNG's bytes."""
    source = job.source if isinstance(job, UpscaleJob) else job
    png = encode_png(image, a1111_parameters(source.recipe, source.picture.model_name), job.recipe)
    cache.put(
        job.key,
        png,
        {
            "key": job.key,
            "cell": list(source.cell),
            "sample": source.sample,
            "recipe": job.recipe,
            "made": {"device": "none", "note": "test stand-in"},
            "png": {"width": image.width, "height": image.height},
        },
    )
    return png
