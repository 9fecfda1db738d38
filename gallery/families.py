"""What each family of pipelines does with `guidance` and the negative prompt, so that an image's
recipe (its key, PNG and page) holds what took effect and nothing else.

Pure data and one pure function: planning uses it without importing diffusers. The rules are read
from diffusers' own pipelines (0.42): where a class is not listed, or the model could not be read,
nothing is dropped (the recipe keeps every setting, as a key must never merge two pictures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    """What the model's files say (gallery.modelinfo reads them; nothing here reads a file)."""

    pipeline: str  # the pipeline class that will run
    guidance_embedded: bool = False  # the denoiser takes guidance as an input (Flux dev, an LCM UNet)


@dataclass(frozen=True)
class Family:
    name: str  # what the README calls it
    # How `guidance` acts: "cfg" (classifier-free guidance where guidance > 1; an input to a
    # guidance-distilled denoiser instead), "cfg_unless_1" (latent diffusion: CFG wherever it is not 1),
    # "embedded" (an input to the denoiser where it has one, else ignored: Flux, QwenImage, LCM).
    guidance: str
    # When the negative prompt changes the computation: "with_cfg" (where CFG runs), "true_cfg"
    # (where the call's true_cfg_scale > 1), "prior_cfg" (Kandinsky: where the prior's guidance > 1, or
    # the decoder's CFG runs: the prior turns the negative prompt into the decoder's negative image embedding),
    # "none" (the pipeline has no negative prompt).
    negative: str
    switch: str = ""  # the call argument that "true_cfg" / "prior_cfg" read
    switch_default: float = 1.0  # its default in diffusers
    call: tuple[str, ...] = ()  # its own call arguments worth knowing, for `render.call` (README)


SEQ = "max_sequence_length"
FAMILIES: dict[str, Family] = {
    "StableDiffusionPipeline": Family("Stable Diffusion 1.x/2.x", "cfg", "with_cfg", call=("guidance_rescale", "eta")),
    "StableDiffusionXLPipeline": Family(
        "Stable Diffusion XL", "cfg", "with_cfg", call=("guidance_rescale", "original_size", "negative_prompt_2")
    ),
    "StableDiffusion3Pipeline": Family("Stable Diffusion 3/3.5", "cfg", "with_cfg", call=(SEQ, "skip_guidance_layers")),
    "PixArtAlphaPipeline": Family("PixArt-Alpha", "cfg", "with_cfg", call=("use_resolution_binning", SEQ)),
    "PixArtSigmaPipeline": Family("PixArt-Sigma", "cfg", "with_cfg", call=("use_resolution_binning", SEQ)),
    "SanaPipeline": Family("Sana", "cfg", "with_cfg", call=("use_resolution_binning", "complex_human_instruction")),
    "HunyuanDiTPipeline": Family("HunyuanDiT", "cfg", "with_cfg", call=("use_resolution_binning", "guidance_rescale")),
    "AuraFlowPipeline": Family("AuraFlow", "cfg", "with_cfg", call=(SEQ,)),
    "Lumina2Pipeline": Family("Lumina 2", "cfg", "with_cfg", call=("cfg_trunc_ratio", "cfg_normalization")),
    "CogView4Pipeline": Family("CogView4", "cfg", "with_cfg", call=(SEQ,)),
    "LDMTextToImagePipeline": Family("Latent diffusion (the original's LDM)", "cfg_unless_1", "none", call=("eta",)),
    "LatentConsistencyModelPipeline": Family(
        "Latent consistency (LCM)", "embedded", "none", call=("original_inference_steps",)
    ),
    "FluxPipeline": Family("Flux", "embedded", "true_cfg", "true_cfg_scale", 1.0, call=("true_cfg_scale", SEQ)),
    "QwenImagePipeline": Family(
        "QwenImage", "embedded", "true_cfg", "true_cfg_scale", 4.0, call=("true_cfg_scale", SEQ)
    ),
    "KandinskyV22CombinedPipeline": Family(
        "Kandinsky 2.2",
        "cfg",
        "prior_cfg",
        "prior_guidance_scale",
        4.0,
        call=("prior_guidance_scale", "prior_num_inference_steps"),
    ),
    "KandinskyCombinedPipeline": Family(
        "Kandinsky 2.1",
        "cfg",
        "prior_cfg",
        "prior_guidance_scale",
        4.0,
        call=("prior_guidance_scale", "prior_num_inference_steps"),
    ),
}


# A decoder that needs a prior (the hub keeps Kandinsky's in a repository of its own): what diffusers'
# AutoPipelineForText2Image makes of it, the prior named in the decoder's model card joined on.
AUTO_TEXT2IMAGE = {
    "KandinskyV22Pipeline": "KandinskyV22CombinedPipeline",
    "KandinskyPipeline": "KandinskyCombinedPipeline",
}


@dataclass(frozen=True)
class Effect:
    """What one picture's settings do on its model: the truth its recipe records."""

    known: bool  # False: the model's family is unknown, so every setting is kept
    cfg: float | None  # the classifier-free guidance scale that ran; None: no CFG
    distilled: float | None  # guidance given to a guidance-distilled denoiser as an input
    negative: bool  # the negative prompt changed the computation
    guidance: bool  # the `guidance` setting itself took effect (as cfg or distilled)
    sends_guidance: bool = True  # False: the model has no use for guidance at all (Flux schnell), so none is sent


def effect(facts: ModelFacts | None, guidance: float, negative_prompt: str, call: Mapping[str, Any]) -> Effect:
    """What `guidance`, `negative_prompt` and the pipeline's own call arguments do on the model `facts` describe."""
    family = FAMILIES.get(facts.pipeline) if facts else None
    if facts is None or family is None:
        return Effect(False, guidance, None, bool(negative_prompt), True)
    cfg: float | None = None
    distilled: float | None = None
    if family.guidance == "cfg" and facts.guidance_embedded:  # an LCM-distilled UNet in an SD pipeline
        distilled = guidance
    elif family.guidance == "cfg":
        cfg = guidance if guidance > 1 else None
    elif family.guidance == "cfg_unless_1":
        cfg = guidance if guidance != 1 else None
    elif facts.guidance_embedded:
        distilled = guidance
    used = cfg is not None or distilled is not None
    ignores_guidance = family.guidance == "embedded" and not facts.guidance_embedded
    negative = False
    if family.negative == "with_cfg":
        negative = bool(negative_prompt) and cfg is not None
    elif family.negative in ("true_cfg", "prior_cfg"):
        switch = call.get(family.switch, family.switch_default)
        on = isinstance(switch, (int, float)) and not isinstance(switch, bool) and switch > 1
        negative = bool(negative_prompt) and (on or (family.negative == "prior_cfg" and cfg is not None))
        if family.negative == "true_cfg" and negative:
            cfg = float(switch)  # true CFG: the pipeline's own scale, with the negative prompt as its other half
    return Effect(True, cfg, distilled, negative, used, not ignores_guidance)


def why_no_negative(pipeline: str, effect: Effect) -> str:
    """Why a negative prompt changed nothing, for a warning."""
    family = FAMILIES.get(pipeline)
    if family is None or family.negative == "none":
        return f"{pipeline} has no negative prompt"
    if family.negative == "with_cfg":
        return (
            "its guidance is an input to a guidance-distilled model, not classifier-free guidance"
            if effect.distilled is not None
            else "classifier-free guidance runs only where guidance is above 1"
        )
    if family.negative == "prior_cfg":
        return (
            f"{pipeline} uses it only where guidance or call: {{{family.switch}: ...}} is above 1 "
            f"(default {family.switch_default:g})"
        )
    return (
        f"{pipeline} uses it only where call: {{{family.switch}: ...}} is above 1 (default {family.switch_default:g})"
    )


def family_name(pipeline: str) -> str:
    family = FAMILIES.get(pipeline)
    return family.name if family else pipeline
