"""The recipe written into each PNG, in the layout AUTOMATIC1111 writes so other tools read it."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

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
    loras: Sequence[dict] = (),
) -> str:
    """prompt line, 'Negative prompt:' line (where it took effect), then 'Steps: N, Sampler: X, ...'.
    `sampler`: the label of the scheduler that ran (schedulers.label_of), which the recipe's 'default'
    does not say; `size`: the picture's, where the pipeline did not make the size asked; `effect`:
    what guidance did (classifier-free guidance is 'CFG scale'; guidance given to a distilled model,
    Flux dev's, is 'Distilled CFG Scale', as Forge writes it), else the recipe's guidance is CFG;
    `loras`: the LoRAs that were applied (name, scale, hash: see loras.set_loras), written as
    AUTOMATIC1111 writes them: `<lora:name:scale>` after the prompt and `Lora hashes: "name: hash"`
    among the settings. The pipeline's own call arguments follow the settings as `name: value`."""
    lines = [recipe["prompt"] + "".join(f" <lora:{lora['name']}:{number(lora['scale'])}>" for lora in loras)]
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
    fields += [f"{name}: {quote(_value(value))}" for name, value in sorted(recipe.get("call", {}).items())]
    if loras:
        fields.append(f"Lora hashes: {quote(_lora_hashes(loras))}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def _lora_hashes(loras: Sequence[dict]) -> str:
    """'name: hash, name: hash', each name without the ':' and ',' that would break the list (as A1111 does)."""
    return ", ".join(
        f"{str(lora['name']).replace(':', '').replace(',', '')}: {lora['hash']}" for lora in loras if lora.get("hash")
    )


def _value(value) -> str:
    """A call argument as AUTOMATIC1111 writes a setting's value (Python's spelling of true and false)."""
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return str(value) if isinstance(value, (bool, str)) else str(number(value))


def quote(text: str) -> str:
    """A value as AUTOMATIC1111 quotes one on the settings line: in JSON quotes where it holds a
    comma, a colon or a newline, so readers can split the line."""
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def loras_of(sidecar: dict) -> list[dict]:
    """The LoRAs a sidecar says were applied (name, scale, hash); a sidecar is read, not trusted."""
    made = sidecar.get("made")
    loras = made.get("loras") if isinstance(made, dict) else None
    if not isinstance(loras, list):
        return []
    return [
        lora
        for lora in loras
        if isinstance(lora, dict)
        and isinstance(lora.get("name"), str)
        and isinstance(lora.get("scale"), (int, float))
        and isinstance(lora.get("hash"), str)
    ]


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
