"""LoRAs on a loaded pipeline: each file loaded once (diffusers' PEFT integration), then switched
per picture with its scale, and the hash AUTOMATIC1111 writes for it. Imports torch and diffusers
only through the pipeline it is given."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

from gallery.config import Lora, Picture
from gallery.errors import ModelLoadError, SettingError
from gallery.loading import hub_file
from gallery.modelinfo import hub_reachable


def set_loras(pipe, picture: Picture) -> list[dict]:
    """Give `pipe` the LoRAs `picture` asks for, at their scales, and only those: each file is loaded
    once per pipeline (an adapter of its own), then switched on and off per picture, so moving
    between cells that differ only in LoRAs never reloads the model. Returns what each LoRA was
    (name, scale, AUTOMATIC1111's short hash), for the image's metadata."""
    loaded: dict[tuple[str, str | None], tuple[str, str]] = pipe.__dict__.setdefault("_gallery_loras", {})
    for i, lora in enumerate(picture.loras):
        if (lora.model, lora.revision) not in loaded:
            loaded[(lora.model, lora.revision)] = _load_lora(pipe, lora, f"gallery_{len(loaded)}", picture, i)
    if not loaded:
        return []
    if not picture.loras:
        pipe.disable_lora()  # the layers step aside: the model's own output, bit for bit (tests/test_loras.py)
        return []
    pipe.enable_lora()
    adapters = [loaded[(lora.model, lora.revision)] for lora in picture.loras]
    pipe.set_adapters([name for name, _ in adapters], [lora.scale for lora in picture.loras])
    return [
        {"name": lora.name, "scale": lora.scale, "hash": short_hash}
        for lora, (_, short_hash) in zip(picture.loras, adapters, strict=True)
    ]


def _load_lora(pipe, lora: Lora, adapter: str, picture: Picture, index: int) -> tuple[str, str]:
    """Load one LoRA file into `pipe` as `adapter`; (adapter, its short hash). A file that fits none of
    the model's parts, or that the loader refuses, is a prompts.yaml mistake: a SettingError."""
    path = _lora_path(lora)
    setting = f"loras[{index}]"
    if not hasattr(pipe, "load_lora_weights"):
        raise SettingError(
            f"{type(pipe).__name__} cannot take LoRAs (diffusers has no LoRA loader for it)",
            setting=setting,
            picture=picture,
            hint="leave loras: out for this model",
        )
    before = _adapters(pipe)
    diffusers_log = logging.getLogger("diffusers")
    level = diffusers_log.level
    try:
        diffusers_log.setLevel(logging.CRITICAL)  # it logs a refusal in full before raising it: we say it once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe.load_lora_weights(path, adapter_name=adapter, use_safetensors=True)  # never a pickle
    except Exception as err:  # a LoRA of another architecture, a damaged file, a peft too old ...
        with contextlib.suppress(Exception):  # leave nothing half-loaded behind
            pipe.delete_adapters(adapter)
        lines = [line.strip() for line in f"{type(err).__name__}: {err}".splitlines() if line.strip()]
        why = lines[0] + (f" {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else "")
        raise SettingError(
            f"cannot apply LoRA '{lora.model}' to {type(pipe).__name__}: {why}",
            setting=setting,
            picture=picture,
            hint="is the LoRA made for this model's family (SD 1.x, SDXL, Flux ...)?",
        ) from None
    finally:
        diffusers_log.setLevel(level)
    if adapter not in _adapters(pipe) - before:
        raise SettingError(
            f"LoRA '{lora.model}' fits none of {type(pipe).__name__}'s parts: none of its weights' names "
            "match this model, so it would change nothing",
            setting=setting,
            picture=picture,
            hint="is the LoRA made for this model's family (SD 1.x, SDXL, Flux ...)?",
        )
    return adapter, a1111_lora_hash(path)


def _adapters(pipe) -> set[str]:
    try:
        return {name for names in pipe.get_list_adapters().values() for name in names}
    except Exception:  # no adapters yet, on some versions
        return set()


def _lora_path(lora: Lora) -> str:
    """A local LoRA file as it is; a hub file from the hub cache, fetched if it must be."""
    if lora.is_local:
        return lora.model
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo, filename = hub_file(lora.model)
    cached = try_to_load_from_cache(repo, filename, revision=lora.revision)
    if isinstance(cached, str):
        return cached
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if not hub_reachable():
        raise ModelLoadError(
            f"cannot load LoRA '{lora.model}'"
            + (f" (revision {lora.revision})" if lora.revision else "")
            + ": it is not in the local Hugging Face cache and the hub cannot be reached"
            + (" (HF_HUB_OFFLINE=1)" if offline else "")
            + f". Run once with network access, or `hf download {repo} {filename}` on a machine that has it "
            "and copy the cache (HF_HOME), or give the LoRA as a local .safetensors file."
        )
    try:
        return hf_hub_download(repo, filename, revision=lora.revision)
    except Exception as err:  # the hub client raises many kinds; all mean "cannot fetch"
        raise ModelLoadError(
            f"cannot fetch LoRA '{lora.model}' (revision {lora.revision or 'main'}): "
            + f"{type(err).__name__}: {err}".splitlines()[0]
        ) from None


def a1111_lora_hash(path: str) -> str:
    """What AUTOMATIC1111 writes as a LoRA's hash (`Lora hashes`): the first 12 hex digits of the
    SHA-256 of a .safetensors file's tensor data, its header left out (kohya-ss's "addnet" hash)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
        f.seek(8 + header)
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:12]
