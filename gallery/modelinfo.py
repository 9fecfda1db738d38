"""The facts about a model that decide what its settings do (gallery.families), read at plan time
from its small config files: model_index.json and the denoiser's config.json (kilobytes), or a
single file's header. No torch: a fully cached build stays fast.

A hub model's files come from the local Hugging Face cache, or are fetched when the hub can be
reached (a build downloads the model next anyway). Where they cannot be had, the facts are unknown
and the recipe keeps every setting (see families.effect); such a model cannot be rendered either.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path
from urllib.parse import urlparse

from gallery.families import AUTO_TEXT2IMAGE, ModelFacts

AUTO_PIPELINE = "AutoPipelineForText2Image"
DENOISERS = ("transformer", "unet")  # the component whose config says whether guidance is an input
HEADER_LIMIT = 100 << 20  # a safetensors header larger than this is not one


Entry = tuple[str, str | None, str, str | None]  # model, revision, pipeline setting, a single file's config source


def model_facts(models: set[Entry]) -> dict[Entry, ModelFacts | None]:
    """The facts of each (model, revision, pipeline setting, config source); None where they cannot be read."""
    online: list[bool] = []  # asked once, the first time a hub file is not in the cache

    def reachable() -> bool:
        if not online:
            online.append(hub_reachable())
        return online[0]

    return {entry: facts_of(*entry, reachable) for entry in sorted(models, key=str)}


def facts_of(
    model: str, revision: str | None, pipeline: str, config_source: str | None = None, reachable=lambda: False
) -> ModelFacts | None:
    if model.lower().endswith(".safetensors"):
        configs = facts_of(config_source, revision, pipeline, None, reachable) if config_source else None
        return _single_file_facts(Path(model), pipeline, configs)
    index = _config(model, revision, "model_index.json", reachable)
    if index is None or not isinstance(index.get("_class_name"), str):
        return None
    own = index["_class_name"]
    cls = AUTO_TEXT2IMAGE.get(own, own) if pipeline in ("auto", AUTO_PIPELINE) else pipeline
    embedded = False
    for part in DENOISERS:
        if part in index:
            config = _config(model, revision, f"{part}/config.json", reachable)
            if config is None:
                return None
            embedded = bool(config.get("guidance_embeds")) or config.get("time_cond_proj_dim") is not None
            break
    return ModelFacts(cls, embedded)


def _config(model: str, revision: str | None, name: str, reachable) -> dict | None:
    """A JSON file of the model: from its folder, the hub cache, or the hub; None if unreadable."""
    if model.startswith("/"):
        return _read_json(Path(model) / name)
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(model, name, revision=revision)
    if isinstance(cached, str):
        return _read_json(Path(cached))
    if cached is not None or not reachable():  # known to be absent from the repository, or offline
        return None
    try:
        return _read_json(Path(hf_hub_download(model, name, revision=revision)))
    except Exception:  # not found, gated, a network fault: loading the model says why
        return None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _single_file_facts(path: Path, pipeline: str, configs: ModelFacts | None) -> ModelFacts | None:
    """A checkpoint's family: the pipeline class of its `config:` folder or repository where set (as
    gallery.loading loads it), else the one its tensor names say; guidance as an input where its
    tensors have one."""
    keys = safetensors_keys(path)
    if keys is None:
        return None
    if pipeline not in ("auto", AUTO_PIPELINE):
        cls = pipeline
    elif configs is not None:
        cls = configs.pipeline
    else:
        cls = single_file_pipeline(keys)
    return ModelFacts(cls, single_file_guidance_embedded(keys))


def single_file_pipeline(keys: list[str]) -> str:
    """The pipeline class a checkpoint's tensor names say it belongs to."""
    if any("double_blocks." in k or k.startswith("single_transformer_blocks.") for k in keys):
        return "FluxPipeline"  # BFL's names, or diffusers' (a transformer-only file)
    if any("joint_blocks." in k for k in keys):
        return "StableDiffusion3Pipeline"
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        return "StableDiffusionXLPipeline"
    return "StableDiffusionPipeline"


def single_file_guidance_embedded(keys: list[str]) -> bool:
    """Flux dev's guidance input (BFL's and diffusers' names), an LCM UNet's guidance embedding."""
    return any("guidance_in." in k or "guidance_embedder." in k or "time_cond_proj" in k for k in keys)


def safetensors_keys(path: Path) -> list[str] | None:
    """The tensor names in a .safetensors file, from its JSON header (8-byte length, then JSON)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > HEADER_LIMIT:
                return None
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return None
    return [k for k in header if k != "__metadata__"] if isinstance(header, dict) else None


def hub_reachable(timeout: float = 5.0) -> bool:
    """One TCP connection to the hub: seconds, where the hub client's retries take half a minute."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ).close()
        return True
    except OSError:
        return False
