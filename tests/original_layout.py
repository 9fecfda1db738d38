"""A diffusers Stable Diffusion folder (1.x or XL) written back as one .safetensors checkpoint in
the original (CompVis/Stability) tensor names, the layout people download from model sites.

diffusers only reads that layout (diffusers/loaders/single_file_utils.py); this is the inverse of
its conversions, for any block count and layers per block, and `checkpoint()` checks itself by
converting the result back with diffusers' own functions: every tensor must come home unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESNET = (  # diffusers -> original, inside a UNet resnet
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
VAE_ATTENTION = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def _renamed(text: str, pairs) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def unet_to_original(state: dict, config: dict) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    per = config["layers_per_block"]
    direct = dict(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]) | DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]
    with_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    out = {}
    for key, tensor in state.items():
        if key in direct:
            out["model.diffusion_model." + direct[key]] = tensor
            continue
        parts = key.split(".")
        if parts[0] == "down_blocks":
            block = int(parts[1])
            if parts[2] == "downsamplers":
                new = f"input_blocks.{block * (per + 1) + per + 1}.0.op.{parts[-1]}"
            else:
                index = block * (per + 1) + int(parts[3]) + 1
                inner = ".".join(parts[4:])
                new = (
                    f"input_blocks.{index}.0.{_renamed(inner, RESNET)}"
                    if parts[2] == "resnets"
                    else f"input_blocks.{index}.1.{inner}"
                )
        elif parts[0] == "up_blocks":
            block = int(parts[1])
            if parts[2] == "upsamplers":
                slot = 2 if block in with_attention else 1
                new = f"output_blocks.{block * (per + 1) + per}.{slot}.conv.{parts[-1]}"
            else:
                index = block * (per + 1) + int(parts[3])
                inner = ".".join(parts[4:])
                new = (
                    f"output_blocks.{index}.0.{_renamed(inner, RESNET)}"
                    if parts[2] == "resnets"
                    else f"output_blocks.{index}.1.{inner}"
                )
        elif parts[0] == "mid_block":
            inner = ".".join(parts[3:])
            new = (
                f"middle_block.{2 * int(parts[2])}.{_renamed(inner, RESNET)}"
                if parts[1] == "resnets"
                else f"middle_block.1.{inner}"
            )
        else:
            raise AssertionError(f"no original name for unet tensor {key}")
        out["model.diffusion_model." + new] = tensor
    return out


def vae_to_original(state: dict, config: dict) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    direct = DIFFUSERS_TO_LDM_MAPPING["vae"]
    blocks = len(config["up_block_types"])
    out = {}
    for key, tensor in state.items():
        new = direct.get(key)
        if new is None:
            new = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
            new = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
            new = re.sub(
                r"^decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.block.", new
            )
            new = re.sub(
                r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.upsample.",
                new,
            )
            new = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m[1]) + 1}.", new)
            if ".mid_block.attentions.0." in new:
                new = _renamed(new.replace(".mid_block.attentions.0.", ".mid.attn_1."), VAE_ATTENTION)
            new = new.replace("conv_shortcut", "nin_shortcut")
        out["first_stage_model." + new] = tensor
    return out


def clip_to_original(state: dict, prefix: str) -> dict:
    """CLIP-L as the original checkpoints hold it: Hugging Face's names under `prefix`."""
    return {
        prefix + (k if k.startswith("text_model.") or k.startswith("text_projection") else "text_model." + k): v
        for k, v in state.items()
    }


def open_clip_to_original(state: dict, prefix: str) -> dict:
    """OpenCLIP bigG (SDXL's second text encoder) in OpenCLIP's own names: q, k and v in one tensor."""
    import torch

    names = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    layer = (
        ("layer_norm1", "ln_1"),
        ("layer_norm2", "ln_2"),
        ("mlp.fc1", "mlp.c_fc"),
        ("mlp.fc2", "mlp.c_proj"),
        ("self_attn.out_proj", "attn.out_proj"),
    )
    out = {prefix + "text_projection": state["text_projection.weight"].T.contiguous()}
    for key, tensor in state.items():
        if key in names:
            out[prefix + names[key]] = tensor
        elif key.startswith("text_model.encoder.layers."):
            n, inner = key.removeprefix("text_model.encoder.layers.").split(".", 1)
            base = f"{prefix}transformer.resblocks.{n}."
            if inner.startswith("self_attn.q_proj."):
                kind = inner.rsplit(".", 1)[1]
                qkv = [state[f"text_model.encoder.layers.{n}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[f"{base}attn.in_proj_{kind}"] = torch.cat(qkv)
            elif not inner.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                out[base + _renamed(inner, layer)] = tensor
    return out


def checkpoint(folder: Path, path: Path) -> Path:
    """The pipeline in `folder` (StableDiffusionPipeline or StableDiffusionXLPipeline) as one file."""
    from diffusers.loaders import single_file_utils as sfu
    from safetensors.torch import load_file, save_file

    def part(name: str) -> tuple[dict, dict]:
        weights = next((folder / name).glob("*.safetensors"))
        return load_file(str(weights)), json.loads((folder / name / "config.json").read_text())

    unet, unet_config = part("unet")
    vae, vae_config = part("vae")
    text, _ = part("text_encoder")
    xl = (folder / "text_encoder_2").is_dir()
    state = unet_to_original(unet, unet_config) | vae_to_original(vae, vae_config)
    state |= clip_to_original(text, "conditioner.embedders.0.transformer." if xl else "cond_stage_model.transformer.")
    if xl:
        text_2, _ = part("text_encoder_2")
        state |= open_clip_to_original(text_2, "conditioner.embedders.1.model.")

    # back through diffusers' own conversions: every tensor comes home
    assert _same(sfu.convert_ldm_unet_checkpoint(state, unet_config), unet), "unet"
    assert _same(sfu.convert_ldm_vae_checkpoint(state, vae_config), vae), "vae"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _same(converted: dict, original: dict) -> bool:
    import torch

    return set(converted) == set(original) and all(
        torch.equal(converted[k].reshape(original[k].shape), original[k]) for k in original
    )


def build_tiny_sdxl(directory: Path, seed: int = 0) -> Path:
    """A Stable-Diffusion-XL-shaped pipeline at toy size (the smallest that diffusers still reads as
    SDXL from a checkpoint's names: its second text encoder has the ten layers the test looks for)."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tiny_pipelines import _tiny_vae, clip_tokenizer, sdxl_scheduler

    torch.manual_seed(seed)
    text = dict(
        vocab_size=49408,
        intermediate_size=37,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    tokenizer = clip_tokenizer(directory.parent)
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(),
        # two widths, as in SDXL (768 and 1280): diffusers tells the encoders apart by it
        text_encoder=CLIPTextModel(CLIPTextConfig(**text, hidden_size=32, num_hidden_layers=2)),
        text_encoder_2=CLIPTextModelWithProjection(
            CLIPTextConfig(**text, hidden_size=40, num_hidden_layers=10, projection_dim=32)
        ),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(
            sample_size=8,
            layers_per_block=1,
            block_out_channels=(16, 32),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,  # six size numbers, and the pooled text
            cross_attention_dim=32 + 40,  # both text encoders' hidden states side by side
            norm_num_groups=8,
        ),
        scheduler=sdxl_scheduler(),
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory
