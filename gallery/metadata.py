"""The recipe written into each PNG, in the layout AUTOMATIC1111 writes so other tools read it."""

from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from gallery import schedulers
from gallery.families import Effect

# render.quantize as Forge's "Diffusion in Low Bits" names it (bnb-nf4; its int8 is a fork's name).
LOW_BITS = {"int8": "int8", "nf4": "bnb-nf4"}


def a1111_parameters(
    recipe: dict,
    model_name: str,
    sampler: str | None = None,
    size: tuple[int, int] | None = None,
    effect: Effect | None = None,
) -> str:
    """prompt line, 'Negative prompt:' line (where it took effect), then 'Steps: N, Sampler: X, ...'.
    `sampler`: the label of the scheduler that ran (schedulers.label_of), which the recipe's 'default'
    does not say; `size`: the picture's, where the pipeline did not make the size asked; `effect`:
    what guidance did (classifier-free guidance is 'CFG scale'; guidance given to a distilled model,
    Flux dev's, is 'Distilled CFG Scale', as Forge writes it), else the recipe's guidance is CFG."""
    lines = [recipe["prompt"]]
    if recipe["negative_prompt"]:
        lines.append(f"Negative prompt: {recipe['negative_prompt']}")
    if recipe["scheduler"] != "default" or not sampler:
        sampler = schedulers.choice(recipe["scheduler"]).label
    width, height = size or (recipe["width"], recipe["height"])
    cfg, distilled = (effect.cfg, effect.distilled) if effect else (recipe["guidance"], None)
    fields = [f"Steps: {recipe['steps']}", f"Sampler: {sampler}"]
    if cfg is not None:
        fields.append(f"CFG scale: {number(cfg)}")
    if distilled is not None:
        fields.append(f"Distilled CFG Scale: {number(distilled)}")
    fields += [f"Seed: {recipe['seed']}", f"Size: {width}x{height}", f"Model: {model_name}"]
    if recipe.get("quantize"):
        fields.append(f"Diffusion in Low Bits: {LOW_BITS[recipe['quantize']]}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def number(value: float) -> int | float:
    """7.0 as 7, as AUTOMATIC1111 writes it."""
    return int(value) if float(value).is_integer() else value


def sampler_of(sidecar: dict) -> str | None:
    """What AUTOMATIC1111 calls the scheduler a sidecar says made the image (sidecars before the
    label was recorded name the class); a sidecar is read, not trusted."""
    made = sidecar.get("made")
    if not isinstance(made, dict):
        return None
    sampler, scheduler = made.get("sampler"), made.get("scheduler")
    if isinstance(sampler, str):
        return sampler
    return schedulers.label_of(scheduler) if isinstance(scheduler, str) else None


def encode_png(image: Image.Image, parameters: str, recipe: dict) -> bytes:
    info = PngInfo()
    info.add_text("parameters", parameters)  # becomes iTXt when the text is not Latin-1
    info.add_text("gallery-recipe", json.dumps(recipe, sort_keys=True, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()


def read_parameters(png: bytes) -> str | None:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return image.text.get("parameters")
