"""Every prompts.yaml setting, declared once: name, type and range, default, meaning, and where it
may appear. The reader (config.py), the README's reference tables and the JSON Schema (schema.py)
all derive from this table, so adding a setting is one declaration here plus its effect.

Pure data and small checks; nothing here reads a file.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from gallery import schedulers, speedups
from gallery.errors import ConfigError

# Where a setting may stand: the file's top level, one of its sections, or an axis option's own
# `render:` (the picture settings a cell may change).
PLACES = ("top", "render", "option", "upscale", "page", "site", "paths", "limits")
SECTIONS = ("page", "site", "render", "upscale", "paths", "limits")  # top-level keys holding a mapping

# Names Windows reserves in any folder, whatever the case: a checkout of the site there would fail.
RESERVED_NAMES = ("con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10)))


def any_case(word: str) -> str:
    """A pattern for `word` in any case, without inline flags (JSON Schema's ECMA-262 has none)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# A key or slug that names files and URL parts: no separators, dots or spaces, not a reserved name.
SAFE_KEY = re.compile(r"^(?!(" + "|".join(any_case(n) for n in RESERVED_NAMES) + r")$)[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TEXTLIKE = (str, int, float, datetime.date)  # YAML reads some plain text as numbers and dates


class Where(Protocol):
    """Where a value stands in prompts.yaml: enough to read it as written and to say what is wrong."""

    def fail(self, message: str, hint: str | None = None) -> ConfigError: ...

    def written(self, value: Any) -> str: ...


# -- kinds: how a value is read, what the README says of it, its JSON Schema ---------------------


@dataclass(frozen=True)
class Text:
    empty_ok: bool = True
    pattern: re.Pattern | None = None
    mismatch: str = ""  # the message when the pattern does not match; {value} is the value quoted
    hint: str | None = None
    shown_as: str = ""  # what the README says it takes, where "text" says too little

    def read(self, value: Any, at: Where) -> str:
        if isinstance(value, bool):
            raise at.fail(
                f"must be text, got {got(value)}",
                "quote it: YAML reads yes/no/on/off/true/false unquoted as true or false",
            )
        if not isinstance(value, TEXTLIKE):
            raise at.fail(f"must be text, got {kind_of(value)}")
        text = at.written(value)
        if not self.empty_ok and not text.strip():
            raise at.fail("must not be empty")
        if self.pattern and text and not self.pattern.fullmatch(text):
            raise at.fail(self.mismatch.format(value=quoted(text)), self.hint)
        return text

    def describe(self) -> str:
        return self.shown_as or ("text" if self.empty_ok else "text, not empty")

    def schema(self) -> dict:
        if self.pattern:  # a number where the pattern allows digits alone (a slug '2024'): YAML reads one
            return {
                "type": ["string", "number"] if self.pattern.fullmatch("0") else "string",
                "pattern": ecma(self.pattern.pattern),
            }
        schema: dict = {"type": ["string", "number"]}  # YAML reads some text (1.10, 2024) as numbers
        if not self.empty_ok:
            schema["minLength"] = 1
        return schema


@dataclass(frozen=True)
class Whole:
    lo: int
    hi: int
    multiple_of: int = 1
    auto: bool = False  # also 'auto' (read as None: chosen at run time)

    def read(self, value: Any, at: Where) -> int | None:
        if self.auto and value == "auto":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise at.fail(f"must be a whole number{' or auto' if self.auto else ''}, got {got(value)}")
        if not self.lo <= value <= self.hi:
            raise at.fail(f"must be between {self.lo} and {self.hi}, got {value}")
        if value % self.multiple_of:
            low = value // self.multiple_of * self.multiple_of
            raise at.fail(
                f"must be a multiple of {self.multiple_of}, got {value}", f"try {low} or {low + self.multiple_of}"
            )
        return value

    def describe(self) -> str:
        text = f"{self.lo:,} to {self.hi:,}" if self.hi < 10**9 else f"at least {self.lo}"
        if self.multiple_of > 1:
            text = f"a multiple of {self.multiple_of}, {text}"
        return f"`auto` or {text}" if self.auto else text

    def schema(self) -> dict:
        schema: dict = {"type": "integer", "minimum": self.lo, "maximum": self.hi}
        if self.multiple_of > 1:
            schema["multipleOf"] = self.multiple_of
        return {"anyOf": [{"const": "auto"}, schema]} if self.auto else schema


@dataclass(frozen=True)
class Number:
    lo: float
    hi: float

    def read(self, value: Any, at: Where) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise at.fail(f"must be a number, got {got(value)}")
        if value != value:
            raise at.fail("must be a number, not .nan")
        if not self.lo <= value <= self.hi:
            raise at.fail(f"must be between {self.lo} and {self.hi}, got {value}")
        return float(value)

    def describe(self) -> str:
        return f"a number, {self.lo:g} to {self.hi:g}"

    def schema(self) -> dict:
        return {"type": "number", "minimum": self.lo, "maximum": self.hi}


@dataclass(frozen=True)
class Flag:
    def read(self, value: Any, at: Where) -> bool:
        if not isinstance(value, bool):
            raise at.fail(f"must be true or false, got {got(value)}")
        return value

    def describe(self) -> str:
        return "`true` or `false`"

    def schema(self) -> dict:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice:
    """One of a few words (case does not matter); `aliases` are other spellings of them."""

    words: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...] = ()  # (alias, the word it means)
    also_bool: tuple[tuple[bool, str], ...] = ()  # YAML true/false and the word each means
    noun: str = ""  # "unknown <noun> 'x'"; without one: "must be 'a' or 'b', got ..."
    hint: str | None = None

    def read(self, value: Any, at: Where) -> str:
        for flag, word in self.also_bool:
            if value is flag:
                return word
        known = dict(self.aliases) | {w: w for w in self.words}
        text = at.written(value).lower() if isinstance(value, TEXTLIKE) and not isinstance(value, bool) else None
        if text in known:
            return known[text]
        if self.noun and text is not None:
            raise at.fail(f"unknown {self.noun} {quoted(text)}", self.hint or f"use {self.spelled('')}")
        raise at.fail(f"must be {self.spelled()}, got {got(value)}", self.hint)

    def spelled(self, quote: str = "'", *, quote_flags: bool = False) -> str:
        flags = [str(flag).lower() for flag, _ in self.also_bool]
        return listed(
            [f"{quote}{f}{quote}" if quote_flags else f for f in flags] + [f"{quote}{w}{quote}" for w in self.words]
        )

    def describe(self) -> str:
        return self.spelled("`", quote_flags=True)

    def schema(self) -> dict:
        schema: dict = {"enum": list(self.words) + [a for a, _ in self.aliases]}
        return {"anyOf": [{"type": "boolean"}, schema]} if self.also_bool else schema


@dataclass(frozen=True)
class Special:
    """A value with checks of its own (a model path, a scheduler name, a cell ...), which config.py
    makes where it knows the context; the README and the schema take what is declared here."""

    type_text: str
    json: dict = field(default_factory=dict)

    def read(self, value: Any, at: Where) -> Any:
        raise AssertionError("a special setting is read by config.py, which knows its context")

    def describe(self) -> str:
        return self.type_text

    def schema(self) -> dict:
        return dict(self.json)


Kind = Text | Whole | Number | Flag | Choice | Special


def ecma(pattern: str) -> str:
    """A pattern as JSON Schema's (ECMA-262) and Python's search() both read it the way the reader's
    fullmatch() does: Python's `$` also matches before a final newline, so forbid anything after it."""
    return pattern[:-1] + r"$(?![\s\S])" if pattern.endswith("$") else pattern


def spellings(words: list[str]) -> str:
    """A pattern for `words` as gallery.schedulers.resolve reads them: any case, '_' also written ' '
    or '-', spaces around."""
    return r"^\s*(" + "|".join(any_case(w).replace("_", "[_ -]") for w in words) + r")\s*$(?![\s\S])"


@dataclass(frozen=True)
class Setting:
    name: str
    kind: Kind
    meaning: str
    places: tuple[str, ...]
    default: Any = None  # the value when the key is absent; a dict: per upscaler (upscale settings)
    default_text: str = ""  # how the README says the default, where the value alone does not
    upscalers: tuple[str, ...] = ()  # upscale settings: the upscalers that take it (empty: all)

    @property
    def special(self) -> bool:
        """Read by config.py with checks of its own (see Special)."""
        return isinstance(self.kind, Special)

    def default_for(self, upscaler: str) -> Any:
        return self.default.get(upscaler) if isinstance(self.default, dict) else self.default

    def shown_default(self) -> str:
        if self.default_text:
            return self.default_text
        if isinstance(self.default, dict):  # per upscaler: "2 (`lanczos`, `esrgan`), 4 (`ldsr`, `sd-x4`)"
            by_value: dict[str, list[str]] = {}
            for upscaler, value in self.default.items():
                by_value.setdefault(shown(value), []).append(f"`{upscaler}`")
            return ", ".join(f"{value} ({', '.join(names_)})" for value, names_ in by_value.items())
        return shown(self.default)


def listed(items: list[str]) -> str:
    """'a, b or c'."""
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else "".join(items)


def shown(value: Any) -> str:
    if value is None:
        return "none"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    return f"`{value}`"


# -- the upscalers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Upscaler:
    """What one `upscale.upscaler` name means (its settings and their defaults are in SETTINGS)."""

    name: str
    label: str  # what the page and the PNG call it
    loader: str = "pillow"  # "pillow" (no model), "diffusers" (a latent upscaler pipeline), "spandrel" (a weights file)
    pipeline: str | None = None  # the diffusers pipeline class of a latent upscaler
    meaning: str = ""

    @property
    def default_model(self) -> str | None:
        return BY_NAME["upscale"]["model"].default_for(self.name)

    @property
    def settings(self) -> tuple[str, ...]:
        """The keys of prompts.yaml's upscale section this upscaler takes."""
        return tuple(s.name for s in BY_NAME["upscale"].values() if not s.upscalers or self.name in s.upscalers)


UPSCALERS = {
    u.name: u
    for u in (
        Upscaler("lanczos", "Lanczos", meaning="Pillow, no model, on every core"),
        Upscaler(
            "esrgan",
            "ESRGAN",
            "spandrel",
            meaning="a super-resolution weights file: Real-ESRGAN, ESRGAN, BSRGAN and the other architectures "
            "[spandrel](https://github.com/chaiNNer-org/spandrel) recognises, such as SwinIR, HAT, DAT, SPAN",
        ),
        Upscaler(
            "ldsr",
            "LDSR",
            "diffusers",
            "LDMSuperResolutionPipeline",
            meaning="CompVis's latent-diffusion super-resolution, diffusers' `LDMSuperResolutionPipeline`",
        ),
        Upscaler(
            "sd-x4",
            "SD x4 upscaler",
            "diffusers",
            "StableDiffusionUpscalePipeline",
            meaning="Stability's x4 upscaler, `StableDiffusionUpscalePipeline`, which also reads each image's "
            "own prompt and negative prompt",
        ),
    )
}
MODEL_UPSCALERS = tuple(name for name, u in UPSCALERS.items() if u.loader != "pillow")
WEIGHTS_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")  # esrgan; pickles are read weights-only
MAX_NOISE_LEVEL = 350  # StableDiffusionUpscalePipeline's max_noise_level
LORA_SCALE = 10.0  # a LoRA's scale: -10 to 10

# -- the settings -----------------------------------------------------------------------------

# Arguments of a pipeline's call that the gallery gives from other settings (or that take no plain
# value): `call:` may not set them. Each with what to write instead.
CALL_GIVEN = {
    "prompt": "the prompt comes from the axes (and the top-level prompt: template)",
    "negative_prompt": "use negative_prompt:",
    "num_inference_steps": "use steps:",
    "guidance_scale": "use guidance:",
    "height": "use height:",
    "width": "use width:",
    "generator": "each image's noise comes from render.seed",
    "latents": "each image's noise comes from render.seed",
    "num_images_per_prompt": "use render.samples",
    "output_type": "the gallery takes the pictures as arrays itself",
    "return_dict": "the gallery reads the pipeline's output itself",
    "cross_attention_kwargs": "for a LoRA's scale use loras: [{model: ..., scale: ...}]",
    "joint_attention_kwargs": "for a LoRA's scale use loras: [{model: ..., scale: ...}]",
    "attention_kwargs": "for a LoRA's scale use loras: [{model: ..., scale: ...}]",
}


# Whole families of them, by pattern (searched; the JSON Schema says the same)
CALL_GIVEN_PATTERNS = (
    (r"^prompt_[0-9]$", "the prompt comes from the axes, and the gallery gives it to every text encoder"),
    (r"^callback", "a function, which prompts.yaml cannot give"),
    (r"(_embeds(_[0-9])?|_mask)$|latents|image", "it takes tensors or pictures, which prompts.yaml cannot give"),
)
CALL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LORA_FILE = re.compile(r"^.*\.safetensors$", re.IGNORECASE)  # what a LoRA's model: must end with (any case)


def call_given(name: str) -> str | None:
    """Why `call:` may not set argument `name` (what to write instead), or None where it may."""
    if name in CALL_GIVEN:
        return CALL_GIVEN[name]
    return next((why for pattern, why in CALL_GIVEN_PATTERNS if re.search(pattern, name)), None)


PICTURE = ("render", "option")  # a picture setting: in render:, or changed by an option for its cells
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
PIPELINE = re.compile(r"^(auto|AutoPipelineForText2Image|[A-Z][A-Za-z0-9]*Pipeline)$")
BASEURL = re.compile(r"^(/.*[^/])?$")
_SCHEDULER_NAMES = list(schedulers.KNOWN)
# render.quantize: the backends diffusers quantizes a pipeline with as it loads (see gallery.loading)
QUANTIZE = ("none", "int8", "nf4")

_LORA_FILE_ECMA = r"^[\s\S]*\." + any_case("safetensors") + r"$(?![\s\S])"

SETTINGS: tuple[Setting, ...] = (
    # top level
    Setting(
        "axes",
        Special("mapping of axis name to options", {}),
        "the axes, in the order their dropdowns appear; see [`axes`](#axes-required)",
        ("top",),
        default_text="required",
    ),
    Setting(
        "prompt",
        Special("text with `{axis}` fields", {"type": ["string", "number"], "minLength": 1}),
        'a template joining the options\' fragments, axis names in braces: `"{subject}, {style}, highly detailed"`',
        ("top",),
        default_text="the fragments joined with a space, in axis order",
    ),
    # render: what decides the picture (all of it in the cache key) ...
    Setting(
        "model",
        Special("hub id or path", {"type": ["string", "number"], "minLength": 1}),
        "a hub id, a local diffusers folder (with `model_index.json`), or a single `.safetensors` file: a "
        "whole checkpoint (Stable Diffusion 1.x/2.x, XL, SD3 with its text encoders) or a file holding only the "
        "denoiser (a Flux or SD3 transformer), see `config`. Relative paths are from `prompts.yaml`'s folder. "
        "Pickle checkpoints (`.ckpt`, `.bin`, `.pt`) are refused: convert them to safetensors.",
        PICTURE,
        "CompVis/ldm-text2im-large-256",
    ),
    Setting(
        "revision",
        Text(empty_ok=False),
        "a hub branch, tag or commit. Pin a commit for exact reproducibility.",
        PICTURE,
        None,
        "hub default branch",
    ),
    Setting(
        "pipeline",
        Special("`auto` or a class name", {"type": "string", "pattern": ecma(PIPELINE.pattern)}),
        "the diffusers pipeline class; `auto` reads it from the model (`model_index.json`), and loads a "
        "decoder-only model (Kandinsky 2.x) with the prior its model card names, as "
        "`AutoPipelineForText2Image` (which may be named too) does",
        PICTURE,
        "auto",
    ),
    Setting(
        "config",
        Special("hub id or folder", {"type": ["string", "number"], "minLength": 1}),
        "for a single `.safetensors` `model` only: the diffusers model of the same architecture whose configs and "
        "tokenizers the file is loaded with, a hub id or a local folder (with `model_index.json`); a file "
        "holding only the denoiser (Flux, SD3 ...) also takes the rest of the pipeline (VAE, text encoders) "
        "from it. `revision` applies to it. Offline, see [single-file checkpoints](#single-file-checkpoints).",
        PICTURE,
        None,
        "the repository diffusers infers from the file, e.g. `stabilityai/stable-diffusion-xl-base-1.0`",
    ),
    Setting(
        "scheduler",
        Special(
            "a name or a class name",
            {
                "type": "string",
                "anyOf": [
                    {"enum": _SCHEDULER_NAMES},
                    {"pattern": spellings(_SCHEDULER_NAMES)},
                    {"pattern": ecma(schedulers.CLASS_NAME.pattern)},
                ],
            },
        ),
        "`default` (the model's own), "
        + ", ".join(f"`{n}`" for n in _SCHEDULER_NAMES if n != "default")
        + ", or any diffusers class name such as `DDIMScheduler`",
        PICTURE,
        "default",
    ),
    Setting(
        "scheduler_options",
        Special(
            "mapping", {"type": "object", "additionalProperties": {"type": ["boolean", "integer", "number", "string"]}}
        ),
        "extra scheduler config, e.g. `{use_karras_sigmas: true}`",
        PICTURE,
        (),
        "none",
    ),
    Setting("steps", Whole(1, 1000), "inference steps", PICTURE, 50),
    Setting("guidance", Number(0.0, 100.0), "classifier-free guidance scale", PICTURE, 7.5),
    Setting("width", Whole(64, 4096, multiple_of=8), "pixels", PICTURE, 512),
    Setting("height", Whole(64, 4096, multiple_of=8), "pixels", PICTURE, 512),
    Setting(
        "negative_prompt",
        Text(),
        "ignored, with a warning, by pipelines that have none (latent diffusion)",
        PICTURE,
        "",
    ),
    Setting(
        "quantize",
        Choice(QUANTIZE, noun="quantization", hint="use none, int8 (torchao: CPU and GPU) or nf4 (bitsandbytes: CUDA)"),
        "load the denoiser (`unet` or `transformer`) and a large text encoder (T5, Gemma, Qwen ...; not CLIP) "
        "with smaller weights, so a big model fits a small GPU: `int8`, torchao's int8 weight-only (CUDA and "
        "CPU; about half of bfloat16's memory); `nf4`, bitsandbytes' 4-bit NormalFloat (CUDA GPUs only; about "
        "a quarter). It changes the pixels a little, so it is in the key and the PNG (`Diffusion in Low Bits`); "
        "see [Big models on small GPUs](#big-models-on-small-gpus)",
        PICTURE,
        "none",
    ),
    Setting(
        "call",
        Special(
            "mapping of argument: value",
            {
                "type": "object",
                "propertyNames": {
                    "pattern": ecma(CALL_NAME.pattern),
                    "not": {"anyOf": [{"enum": list(CALL_GIVEN)}, *({"pattern": p} for p, _ in CALL_GIVEN_PATTERNS)]},
                },
                "additionalProperties": {
                    "anyOf": [
                        {"type": ["boolean", "integer", "number", "string", "null"]},
                        {"type": "array", "items": {"type": ["boolean", "integer", "number", "string"]}},
                    ]
                },
            },
        ),
        "arguments of the pipeline's own call, e.g. `{true_cfg_scale: 4, max_sequence_length: 512}`: "
        "names the loaded pipeline does not take are refused before anything renders. An option's `call` "
        "changes render's key by key (`null` drops one). Not the ones the gallery sets from other settings "
        "(prompt, steps, guidance, size, seed ...)",
        PICTURE,
        (),
        "none",
    ),
    Setting(
        "loras",
        Special(
            "list of `{model, scale}`",
            {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "string", "pattern": _LORA_FILE_ECMA},
                        {
                            "type": "object",
                            "properties": {
                                "model": {"type": "string", "pattern": _LORA_FILE_ECMA},
                                "scale": {"type": "number", "minimum": -LORA_SCALE, "maximum": LORA_SCALE},
                                "revision": {"type": ["string", "number"], "minLength": 1},
                            },
                            "required": ["model"],
                            "additionalProperties": False,
                        },
                    ]
                },
            },
        ),
        "LoRAs applied to the model, each `{model: ./styles/ink.safetensors, scale: 0.8}`: a local "
        "`.safetensors` file (relative to `prompts.yaml`'s folder) or a file on the hub as "
        "`owner/repo/path/file.safetensors` (with `revision:` if you pin one); `scale` from "
        f"-{LORA_SCALE:g} to {LORA_SCALE:g}, 1 if left out. An option's `loras` replaces render's (`[]`: none), "
        "so an axis can compare LoRAs and scales without reloading the model",
        PICTURE,
        (),
        "none",
    ),
    # ... and how to render it (none of it in the key)
    Setting("samples", Whole(1, 10_000), "images per cell", ("render",), 4),
    Setting(
        "seed",
        Whole(0, 2**63 - 1),
        "sample *i* uses seed + *i* in every cell, so a column compares cells on the same starting noise",
        ("render",),
        0,
    ),
    Setting(
        "device",
        Text(
            empty_ok=False,
            pattern=DEVICE,
            mismatch="unknown device {value}",
            hint="use auto, cpu, cuda, cuda:N or mps",
            shown_as="`auto`, `cpu`, `cuda`, `cuda:N` or `mps`",
        ),
        "where to render: `auto` is cuda, then mps, then cpu",
        ("render",),
        "auto",
    ),
    Setting(
        "dtype",
        Choice(
            ("auto", "float32", "float16", "bfloat16"),
            (("fp32", "float32"), ("fp16", "float16"), ("half", "float16"), ("bf16", "bfloat16")),
            noun="dtype",
            hint="use auto, float32, float16 or bfloat16",
        ),
        "`auto`: bfloat16 on GPUs that have it, else float16; float16 on mps; on a CPU bfloat16 where it has "
        "AVX512-BF16 or AMX instructions, else float32",
        ("render",),
        "auto",
    ),
    Setting(
        "batch_size",
        Whole(1, 4096, auto=True),
        "images per pipeline call; `auto` guesses from the device and "
        "size. On out-of-memory the batch halves and the build goes on.",
        ("render",),
        None,
        "`auto`",
    ),
    Setting("attention_slicing", Flag(), "lower memory, slower", ("render",), False),
    Setting("vae_tiling", Flag(), "decode large images in tiles", ("render",), False),
    Setting(
        "cpu_offload",
        Choice(("none", "model", "sequential", "group"), also_bool=((False, "none"), (True, "model"))),
        "keep weights in CPU memory between uses (GPU only; on a CPU it does nothing): `model` moves whole "
        "parts (text encoder, denoiser, VAE) to the GPU as each runs (`true` is `model`); `sequential` moves "
        "each layer, least memory and slowest; `group` is diffusers' group offloading, layer by layer with the "
        "next layer copied on a CUDA stream while one computes: close to `sequential`'s memory, faster",
        ("render",),
        "none",
        "`false`",
    ),
    # GPU accelerations (gallery/speedups.py): none changes a picture beyond rounding, so none is in the
    # cache key; `auto` is what the GPU benchmark measured to pay (BENCHMARKS.md)
    Setting(
        "compile",
        Choice(("auto", "off", "denoiser", "all"), also_bool=((False, "off"), (True, "all"))),
        "`torch.compile` the denoiser (`denoiser`), or the denoiser and the VAE decoder (`all`, `true`): "
        "faster calls after a first one that compiles (tens of seconds per image size, said in the output); "
        "the last batch of a size is padded to full so it compiles once per size. `auto`: "
        + speedups.AUTO_WHY["compile"],
        ("render",),
        "auto",
    ),
    Setting(
        "channels_last",
        Choice(("auto", "on", "off"), also_bool=((False, "off"), (True, "on"))),
        "channels-last memory format for a UNet denoiser and the VAE (convolutions read it faster on GPUs); "
        "a transformer denoiser has no convolutions to speed up. `auto`: " + speedups.AUTO_WHY["channels_last"],
        ("render",),
        "auto",
    ),
    Setting(
        "fuse_qkv",
        Choice(("auto", "on", "off"), also_bool=((False, "off"), (True, "on"))),
        "one matrix product for attention's query, key and value instead of three, where the denoiser "
        "supports it (not with LoRAs or render.quantize: then it stays off). `auto`: " + speedups.AUTO_WHY["fuse_qkv"],
        ("render",),
        "auto",
    ),
    # upscale: the optional stage after rendering
    Setting(
        "upscaler",
        Choice(("none", *UPSCALERS), noun="upscaler", hint="available: none, " + ", ".join(UPSCALERS)),
        "; ".join(["`none`"] + [f"`{u.name}` ({u.meaning})" for u in UPSCALERS.values()]),
        ("upscale",),
        "none",
    ),
    Setting(
        "factor", Whole(2, 8), "how many times larger", ("upscale",), {"lanczos": 2, "esrgan": 2, "ldsr": 4, "sd-x4": 4}
    ),
    Setting("size", Whole(64, 8192), "instead of `factor`: the long side in pixels", ("upscale",)),
    Setting(
        "model",
        Special("hub id, path or file", {"type": ["string", "number"], "minLength": 1}),
        "`esrgan`: a weights file (" + ", ".join(f"`{s}`" for s in WEIGHTS_SUFFIXES) + "), local or on the hub "
        "as `owner/repo/path/in/repo.pth`. `ldsr`, `sd-x4`: a hub id or a local diffusers folder (with "
        "`model_index.json`); single weights files are refused. Relative paths are from `prompts.yaml`'s "
        "folder.",
        ("upscale",),
        {
            "esrgan": "ai-forever/Real-ESRGAN/RealESRGAN_x2.pth",
            "ldsr": "CompVis/ldm-super-resolution-4x-openimages",
            "sd-x4": "stabilityai/stable-diffusion-x4-upscaler",
        },
        upscalers=MODEL_UPSCALERS,
    ),
    Setting(
        "revision",
        Text(empty_ok=False),
        "a hub branch, tag or commit",
        ("upscale",),
        None,
        "hub default branch",
        upscalers=MODEL_UPSCALERS,
    ),
    Setting(
        "steps",
        Whole(1, 1000),
        "`ldsr`, `sd-x4`: denoising steps",
        ("upscale",),
        {"ldsr": 100, "sd-x4": 75},
        upscalers=("ldsr", "sd-x4"),
    ),
    Setting(
        "guidance",
        Number(0.0, 100.0),
        "`sd-x4`: classifier-free guidance scale",
        ("upscale",),
        {"sd-x4": 9.0},
        upscalers=("sd-x4",),
    ),
    Setting(
        "noise_level",
        Whole(0, MAX_NOISE_LEVEL),
        "`sd-x4`: noise added to the small image first; more lets the model invent more detail",
        ("upscale",),
        {"sd-x4": 20},
        upscalers=("sd-x4",),
    ),
    Setting(
        "tile",
        Whole(0, 8192),
        "`esrgan`: pictures with a side longer than this go through the network in tiles "
        "of this many source pixels, so memory stays bounded; 0: whole pictures, else at least 32",
        ("upscale",),
        {"esrgan": 512},
        upscalers=("esrgan",),
    ),
    Setting(
        "tile_overlap",
        Whole(0, 1024),
        "`esrgan`: source pixels each tile shares with its neighbours, blended "
        "so no seam shows; less than half the tile",
        ("upscale",),
        {"esrgan": 32},
        upscalers=("esrgan",),
    ),
    Setting(
        "batch_size",
        Whole(1, 4096, auto=True),
        "model upscalers: images (`esrgan`: tiles) per model call; "
        "`auto` is a few on a GPU, and on a CPU 1 (`ldsr`, `sd-x4`) or a few small tiles (`esrgan`). On "
        "out-of-memory the batch halves and the stage goes on.",
        ("upscale",),
        None,
        "`auto`",
        upscalers=MODEL_UPSCALERS,
    ),
    # page: the gallery page (al-folio front matter)
    Setting(
        "title", Text(empty_ok=False), "the page title (al-folio front matter `title`)", ("page",), "Prompt gallery"
    ),
    Setting(
        "slug",
        Text(
            empty_ok=False,
            pattern=SAFE_KEY,
            mismatch="{value} is not safe for file names and URLs",
            hint="use letters, digits, '_' and '-', and no name Windows reserves (con, nul, aux ...)",
            shown_as="letters, digits, `_`, `-`",
        ),
        "the page's file name and URL: `/projects/<slug>/`",
        ("page",),
        None,
        "from the title",
    ),
    Setting(
        "description",
        Text(),
        "front matter `description` (al-folio shows it under the title and on the card)",
        ("page",),
        "",
    ),
    Setting("importance", Whole(-(10**6), 10**6), "al-folio sorts projects by it, lower first", ("page",)),
    Setting("category", Text(), "al-folio's project category", ("page",)),
    Setting("layout", Text(empty_ok=False), "the Jekyll layout", ("page",), "page"),
    Setting(
        "default",
        Special("mapping of axis: option", {"type": "object", "additionalProperties": {"type": ["string", "number"]}}),
        "the cell shown first, e.g. `{subject: cat, style: dali}`",
        ("page",),
        None,
        "first option of each axis",
    ),
    Setting(
        "cover",
        Special("mapping of axis: option", {"type": "object", "additionalProperties": {"type": ["string", "number"]}}),
        "the cell whose first image becomes the card picture (front matter `img`)",
        ("page",),
        None,
        "the default cell",
    ),
    Setting(
        "view",
        Special(
            "`cell`, `grid`, or a mapping of `mode`, `rows`, `columns`, `sample`",
            {
                "anyOf": [
                    {"enum": ["cell", "grid"]},
                    {
                        "type": "object",
                        "properties": {
                            "mode": {"enum": ["cell", "grid"]},
                            "rows": {"type": "string"},
                            "columns": {"type": "string"},
                            "sample": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "all"}]},
                        },
                        "additionalProperties": False,
                    },
                ]
            },
        ),
        "what a reader first sees: the cell view (one cell, as the dropdowns choose) or the grid view "
        "(two axes as rows and columns, the others as dropdowns), e.g. "
        "`{mode: grid, rows: subject, columns: style, sample: 1}` (`sample`: the sample each grid cell "
        "shows, from 1, or `all`); the page's URL overrides it",
        ("page",),
        None,
        "`cell`; a grid has the first axis as rows, the next as columns, sample 1",
    ),
    Setting(
        "intro",
        Text(),
        "Markdown above the gallery. Yours, so Liquid and HTML work there; prompt text never gets that treatment.",
        ("page",),
        "",
    ),
    Setting("body", Text(), "Markdown below the gallery, like `intro`", ("page",), ""),
    # site: the standalone site/
    Setting("title", Text(empty_ok=False), "the site's title", ("site",), None, "the page title"),
    Setting("description", Text(), "the site's description", ("site",), None, "the page description"),
    Setting("url", Text(), "where the site is served, e.g. `https://user.github.io`", ("site",), ""),
    Setting(
        "baseurl",
        Text(
            pattern=BASEURL,
            mismatch="{value} must start with '/' and not end with one",
            hint="for https://user.github.io/repo/ write baseurl: /repo",
            shown_as="empty or `/path`",
        ),
        "`/repo` for a project site at `user.github.io/repo/` (`jekyll build --baseurl` overrides it)",
        ("site",),
        "",
    ),
    # paths and limits
    Setting(
        "cache",
        Special("folder", {"type": ["string", "number"], "minLength": 1}),
        "the render cache, relative to `prompts.yaml`",
        ("paths",),
        ".gallery-cache",
    ),
    Setting(
        "site",
        Special("folder", {"type": ["string", "number"], "minLength": 1}),
        "the generated Jekyll site, relative to `prompts.yaml`",
        ("paths",),
        "site",
    ),
    Setting(
        "templates",
        Special("folder", {"type": ["string", "number"], "minLength": 1}),
        "your templates, overriding the package's own, relative to `prompts.yaml`",
        ("paths",),
        "templates",
    ),
    Setting(
        "max_images",
        Whole(1, 10**9),
        "a larger matrix (counted from the options, before anything is expanded) stops every command "
        "with one message unless you pass `--yes`",
        ("limits",),
        10_000,
    ),
)

BY_NAME: dict[str, dict[str, Setting]] = {place: {s.name: s for s in SETTINGS if place in s.places} for place in PLACES}


def names(place: str) -> tuple[str, ...]:
    """The keys that may appear at `place`, in declaration order."""
    return tuple(BY_NAME[place])


# -- words for messages -----------------------------------------------------------------------


def quoted(value: Any, limit: int = 100) -> str:
    """A user's value quoted for a message: on one line, and not too long."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'" if text.isprintable() else ascii(text)


def got(value: Any) -> str:
    """What a wrong value is, for 'must be X, got ...': its kind, and the value itself when it is a scalar."""
    if isinstance(value, (dict, list)) or value is None:
        return kind_of(value)
    return f"{kind_of(value)} {quoted(value) if isinstance(value, str) else str(value)[:60]}"


def kind_of(value: Any) -> str:
    names_: dict[type, str] = {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "a number",
        float: "a number",
        type(None): "nothing",
    }
    return names_.get(type(value), type(value).__name__)
