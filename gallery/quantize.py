"""render.quantize: which parts of a pipeline are loaded with smaller weights, through which of
diffusers' quantization backends, and whether this machine can run it. Imports torch, diffusers and
the backend only when called (as gallery.loading does)."""

from __future__ import annotations

from gallery.config import Picture
from gallery.errors import SettingError
from gallery.modelinfo import DENOISERS

# render.quantize quantizes the denoiser, and each text encoder but CLIP's: CLIP-L and -G hold 0.1-0.7B
# parameters, which diffusers' quantization guides leave whole, where T5-XXL holds 4.7B and the Gemma and
# Qwen encoders 2-7B. The VAE is small and has few linear layers.
SMALL_TEXT_ENCODERS = ("CLIPTextModel", "CLIPTextModelWithProjection")
BACKENDS = {"int8": "torchao int8 weight-only", "nf4": "bitsandbytes nf4"}
BACKEND_LIBRARIES = {"int8": "torchao", "nf4": "bitsandbytes"}


def quantized_parts(index: dict) -> dict[str, str]:
    """{part: its library} of the parts render.quantize quantizes, read from model_index.json."""
    parts = {}
    for name, entry in index.items():
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in ("diffusers", "transformers")):
            continue  # config keys (_class_name ...), absent parts ([null, null]), tokenizers of other libraries
        library, cls = entry
        denoiser = name in DENOISERS and library == "diffusers"
        if denoiser or (
            name.startswith("text_encoder") and library == "transformers" and cls not in SMALL_TEXT_ENCODERS
        ):
            parts[name] = library
    return parts


def pipeline_config(picture: Picture, index: dict, device: str, torch_dtype, diffusers):
    """diffusers' PipelineQuantizationConfig for render.quantize (None for none). A backend this machine
    cannot run is a SettingError, before any weight is read."""
    if picture.quantize == "none":
        return None
    import transformers

    parts = quantized_parts(index)
    if not any(name in DENOISERS for name in parts):
        raise SettingError(
            f"{index.get('_class_name', 'this model')} has no unet or transformer for quantize: {picture.quantize}",
            setting="quantize",
            picture=picture,
            hint="set quantize: none",
        )
    check_quantize(picture, device)
    configs = {}
    if picture.quantize == "nf4":
        kwargs = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch_dtype}
        for name, library in parts.items():
            make = diffusers.BitsAndBytesConfig if library == "diffusers" else transformers.BitsAndBytesConfig
            configs[name] = make(**kwargs)
    else:
        from torchao.quantization import Int8WeightOnlyConfig

        for name, library in parts.items():
            make = diffusers.TorchAoConfig if library == "diffusers" else transformers.TorchAoConfig
            configs[name] = make(Int8WeightOnlyConfig())
    return diffusers.PipelineQuantizationConfig(quant_mapping=configs)


def check_quantize(picture: Picture, device: str) -> None:
    """A SettingError where this machine cannot run `picture`'s render.quantize: nf4 off a CUDA GPU, or a
    backend that does not import. Milliseconds: no model is read."""
    if picture.quantize == "nf4":
        if not device.startswith("cuda"):
            raise SettingError(
                f"quantize: nf4 (bitsandbytes) runs on CUDA GPUs only, and this build renders on {device}",
                setting="quantize",
                picture=picture,
                hint="use quantize: int8 (torchao), which runs on the CPU too, or quantize: none",
            )
        _need("bitsandbytes", picture, "pip install 'prompt-gallery[nf4]' (bitsandbytes), on a machine with a CUDA GPU")
    elif picture.quantize == "int8":
        _need("torchao", picture, "pip install 'prompt-gallery[quantize]' (torchao)")


def _need(module: str, picture: Picture, install: str) -> None:
    """Import `module` (a quantization backend) or say, at render.quantize's line, how to install it."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as err:  # ImportError, or a build for another torch failing as it loads
        why = f"{type(err).__name__}: {err}".splitlines()[0]
        raise SettingError(
            f"quantize: {picture.quantize} needs {module}, which does not import here ({why})",
            setting="quantize",
            picture=picture,
            hint=install,
        ) from None
