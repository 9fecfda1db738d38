"""prompts.yaml -> Config: load, validate, fill defaults. Pure data out; nothing is written.

Every mistake becomes one ConfigError naming the file, the line and the key, with a hint.
"""

from __future__ import annotations

import datetime
import difflib
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gallery import schedulers
from gallery.errors import ConfigError
from gallery.yamlsource import Located, dotted, load_yaml

SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "float16": "float16",
          "fp16": "float16", "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
TEXTLIKE = (str, int, float, datetime.date)  # YAML reads some plain text as numbers and dates
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")


@dataclass(frozen=True)
class Picture:
    """The settings that decide a picture (all of them go into the cache key)."""

    model: str  # hub id, or an absolute path to a local directory or .safetensors file
    revision: str | None
    pipeline: str  # "auto" or a diffusers pipeline class name
    scheduler: str  # canonical name from gallery.schedulers
    scheduler_options: tuple[tuple[str, Any], ...]
    steps: int
    guidance: float
    width: int
    height: int
    negative_prompt: str

    @property
    def is_local(self) -> bool:
        return self.model.startswith("/")

    @property
    def model_name(self) -> str:
        """What the page and the PNG metadata call the model."""
        return Path(self.model).name if self.is_local else self.model


@dataclass(frozen=True)
class Runtime:
    """How to render: none of this changes the picture, so none of it is in the cache key."""

    samples: int
    seed: int
    device: str
    dtype: str
    batch_size: int | None  # None: chosen from the device and the image size
    attention_slicing: bool
    vae_tiling: bool
    cpu_offload: str  # "none", "model" or "sequential"


@dataclass(frozen=True)
class Option:
    key: str
    label: str
    prompt: str
    overrides: tuple[tuple[str, Any], ...] = ()  # Picture fields this option changes


@dataclass(frozen=True)
class Axis:
    name: str
    label: str
    options: tuple[Option, ...]

    def option(self, key: str) -> Option:
        return next(o for o in self.options if o.key == key)


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    description: str
    importance: int | None
    category: str | None
    layout: str
    default: tuple[str, ...]  # the cell shown first: one option key per axis
    cover: tuple[str, ...]  # the cell whose first image is the card's cover picture
    intro: str  # Markdown above the gallery
    body: str  # Markdown below it


@dataclass(frozen=True)
class Site:
    title: str
    description: str
    url: str
    baseurl: str


@dataclass(frozen=True)
class Upscaler:
    """What one `upscale.upscaler` name means."""

    label: str  # what the page and the PNG call it
    default_factor: int
    loader: str = "pillow"  # "pillow" (no model), "diffusers" (a latent upscaler pipeline), "spandrel" (a weights file)
    pipeline: str | None = None  # the diffusers pipeline class of a latent upscaler
    default_model: str | None = None
    defaults: tuple[tuple[str, Any], ...] = ()  # its own settings (steps, ...) and their defaults

    @property
    def settings(self) -> tuple[str, ...]:
        """The keys of prompts.yaml's upscale section this upscaler takes."""
        model_keys = ("model", "revision", "batch_size") if self.loader != "pillow" else ()
        return ("upscaler", "factor", "size") + model_keys + tuple(k for k, _ in self.defaults)


# Name in prompts.yaml -> upscaler. The model upscalers' defaults are their pipelines' own.
UPSCALERS = {
    "lanczos": Upscaler("Lanczos", 2),
    "esrgan": Upscaler("ESRGAN", 2, "spandrel", default_model="ai-forever/Real-ESRGAN/RealESRGAN_x2.pth",
                       defaults=(("tile", 512), ("tile_overlap", 32))),
    "ldsr": Upscaler("LDSR", 4, "diffusers", "LDMSuperResolutionPipeline", "CompVis/ldm-super-resolution-4x-openimages",
                     (("steps", 100),)),
    "sd-x4": Upscaler("SD x4 upscaler", 4, "diffusers", "StableDiffusionUpscalePipeline",
                      "stabilityai/stable-diffusion-x4-upscaler",
                      (("steps", 75), ("guidance", 9.0), ("noise_level", 20))),
}
UPSCALE_KEYS = tuple(dict.fromkeys(k for u in UPSCALERS.values() for k in u.settings))
# Super-resolution weights files (esrgan). Pickles (.pth ...) are read with torch's weights-only unpickler.
WEIGHTS_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
HUB_FILE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+/[\w./-]+$")  # owner/repo/path/in/repo.pth
MAX_NOISE_LEVEL = 350  # StableDiffusionUpscalePipeline's max_noise_level


@dataclass(frozen=True)
class Upscale:
    """The optional stage after rendering (the original page's step 5)."""

    upscaler: str  # a key of UPSCALERS
    factor: int | None  # 2x, 4x ...
    size: int | None  # or a target size for the long side, in pixels
    model: str | None = None  # hub id (esrgan: owner/repo/file), or an absolute path to a local folder (esrgan: file)
    revision: str | None = None
    steps: int | None = None
    guidance: float | None = None
    noise_level: int | None = None
    tile: int | None = None  # esrgan: tile side in source pixels (0: whole images)
    tile_overlap: int | None = None  # esrgan: pixels each tile shares with its neighbours, blended
    batch_size: int | None = None  # images (esrgan: tiles) per model call; None: chosen from the device

    @property
    def kind(self) -> Upscaler:
        return UPSCALERS[self.upscaler]

    @property
    def is_local(self) -> bool:
        return bool(self.model) and self.model.startswith("/")

    @property
    def model_name(self) -> str | None:
        return Path(self.model).name if self.is_local else self.model

    @property
    def label(self) -> str:
        """What the page and the PNG call it: the upscaler, its model where not the usual one, the size."""
        name = self.kind.label
        if self.model and self.model != self.kind.default_model:
            name += f" ({self.model_name})"
        return f"{name} {self.factor}x" if self.factor else f"{name} to {self.size}px"


@dataclass(frozen=True)
class Config:
    source: Path
    axes: tuple[Axis, ...]
    prompt_template: str | None  # None: the options' prompt fragments joined with a space
    picture: Picture  # defaults before per-option overrides
    runtime: Runtime
    page: Page
    site: Site
    cache_dir: Path
    site_dir: Path
    templates_dir: Path
    max_images: int
    upscale: Upscale | None = None
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def line(self, key: str) -> int | None:
        """The line of prompts.yaml that sets `key` (dotted, e.g. 'limits.max_images'), for messages."""
        while key and key not in self.key_lines:
            key = key.rpartition(".")[0]
        return self.key_lines.get(key)

    @property
    def image_count(self) -> int:
        count = self.runtime.samples
        for axis in self.axes:
            count *= len(axis.options)
        return count


# The per-option overridable keys, and all render keys.
PICTURE_KEYS = ("model", "revision", "pipeline", "scheduler", "scheduler_options", "steps", "guidance",
                "width", "height", "negative_prompt")
RUNTIME_KEYS = ("samples", "seed", "device", "dtype", "batch_size", "attention_slicing", "vae_tiling",
                "cpu_offload")
TOP_KEYS = ("page", "site", "prompt", "render", "upscale", "axes", "paths", "limits")


def load_config(path: str | Path) -> Config:
    path = Path(path)
    display = str(path)
    if not path.is_file():
        raise ConfigError("file not found", file=display,
                          hint="run from the folder that holds prompts.yaml, or pass --config PATH")
    try:
        located = load_yaml(path)
        return _Reader(located, path.resolve().parent).config(path)
    except ConfigError as err:
        raise err.at(display) from None


class _Reader:
    """Walks the located document, checking each value where it stands."""

    def __init__(self, doc: Located, root: Path):
        self.doc = doc
        self.root = root
        self.raw_overrides: dict[tuple[str, str], tuple[dict, tuple]] = {}  # (axis, option) -> (render, path)

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, path: tuple, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, line=self.doc.line(path), key=dotted(path) or None, hint=hint)

    def mapping(self, value: Any, path: tuple, allowed: tuple[str, ...] | None, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping of {what}, got {_kind(value)}")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
                    raise self.fail(path + (key,), "unknown key", hint)
        return value

    def text(self, section: dict, key: str, path: tuple, default: str | None, *, empty_ok: bool = True) -> str | None:
        if key not in section or section[key] is None:
            return default
        value = section[key]
        if isinstance(value, bool):
            raise self.fail(path + (key,), f"must be text, got {_got(value)}",
                            "quote it: YAML reads yes/no/on/off/true/false unquoted as true or false")
        if not isinstance(value, TEXTLIKE):
            raise self.fail(path + (key,), f"must be text, got {_kind(value)}")
        value = self.as_written(path + (key,), value)
        if not empty_ok and not value.strip():
            raise self.fail(path + (key,), "must not be empty")
        return value

    def as_written(self, path: tuple, value: Any) -> str:
        """A text, number or date as the file spells it (YAML reads 0123456 as 42798 and 1.10 as 1.1)."""
        return value if isinstance(value, str) else self.doc.texts.get(path, str(value))

    def integer(self, section: dict, key: str, path: tuple, default: int | None, lo: int, hi: int) -> int | None:
        if key not in section or section[key] is None:
            return default
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path + (key,), f"must be a whole number, got {_got(value)}")
        if not lo <= value <= hi:
            raise self.fail(path + (key,), f"must be between {lo} and {hi}, got {value}")
        return value

    def number(self, section: dict, key: str, path: tuple, default: float, lo: float, hi: float) -> float:
        if key not in section or section[key] is None:
            return default
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path + (key,), f"must be a number, got {_got(value)}")
        if value != value:
            raise self.fail(path + (key,), "must be a number, not .nan")
        if not lo <= value <= hi:
            raise self.fail(path + (key,), f"must be between {lo} and {hi}, got {value}")
        return float(value)

    def boolean(self, section: dict, key: str, path: tuple, default: bool) -> bool:
        if key not in section or section[key] is None:
            return default
        value = section[key]
        if not isinstance(value, bool):
            raise self.fail(path + (key,), f"must be true or false, got {_got(value)}")
        return value

    # -- sections --------------------------------------------------------------------------
    def config(self, source: Path) -> Config:
        if self.doc.data is None:
            raise self.fail((), "the file is empty", "list at least one axis under 'axes:' (see the README)")
        if not isinstance(self.doc.data, dict):
            raise self.fail((), f"the file must be a mapping (axes:, render:, ...), got {_kind(self.doc.data)}",
                            "start with 'axes:' at the beginning of a line (see the README)")
        top = self.mapping(self.doc.data, (), TOP_KEYS, "sections")
        if "axes" not in top:
            raise self.fail((), "missing 'axes'", "list at least one axis, e.g. axes: {subject: {cat: a cat}}")
        axes = self.axes(top["axes"])
        prompt_template = self.prompt_template(top, axes)
        render = self.mapping(top.get("render"), ("render",), PICTURE_KEYS + RUNTIME_KEYS, "render settings")
        picture = self.picture(render, ("render",), None)
        axes = tuple(
            Axis(a.name, a.label, tuple(
                Option(o.key, o.label, o.prompt, self.overrides(a.name, o.key, picture)) for o in a.options))
            for a in axes
        )
        runtime = self.runtime(render)
        page = self.page(top.get("page"), axes)
        site = self.site(top.get("site"), page)
        paths = self.mapping(top.get("paths"), ("paths",), ("cache", "site", "templates"), "folders")
        limits = self.mapping(top.get("limits"), ("limits",), ("max_images",), "limits")
        config = Config(
            source=source,
            axes=axes,
            prompt_template=prompt_template,
            picture=picture,
            runtime=runtime,
            page=page,
            site=site,
            cache_dir=self.folder(paths, "cache", ".gallery-cache"),
            site_dir=self.folder(paths, "site", "site"),
            templates_dir=self.folder(paths, "templates", "templates"),
            max_images=self.integer(limits, "max_images", ("limits",), 10_000, 1, 10**9),
            upscale=self.upscale(top.get("upscale")),
            key_lines={dotted(p): line for p, line in self.doc.lines.items() if p},
        )
        if runtime.seed + runtime.samples > 2**63:
            raise self.fail(("render", "seed"), "seed + samples must stay below 2**63")
        return config

    def upscale(self, value: Any) -> Upscale | None:
        path = ("upscale",)
        section = self.mapping(value, path, UPSCALE_KEYS, "upscale settings")
        name = self.text(section, "upscaler", path, "none", empty_ok=False).lower()
        if name == "none":
            return None
        if name not in UPSCALERS:
            raise self.fail(path + ("upscaler",), f"unknown upscaler {_q(name)}",
                            f"available: none, {', '.join(UPSCALERS)}"
                            + ("; for Real-ESRGAN write upscaler: esrgan, with model: its .pth or .safetensors file"
                               if "esrgan" in name else ""))
        kind = UPSCALERS[name]
        for key in section:
            if key not in kind.settings:
                raise self.fail(path + (key,), f"upscaler '{name}' takes no {key}",
                                f"it takes: {', '.join(kind.settings)}")
        if "factor" in section and "size" in section:
            raise self.fail(path + ("size",), "give either factor or size, not both")
        size = self.integer(section, "size", path, None, 64, 8192)
        factor = None if size else self.integer(section, "factor", path, kind.default_factor, 2, 8)
        if kind.loader == "pillow":
            return Upscale(name, factor, size)
        defaults = dict(kind.defaults)

        def setting(key: str, read, *bounds):
            return read(section, key, path, defaults[key], *bounds) if key in defaults else None

        tile = setting("tile", self.integer, 0, 8192)
        if tile is not None and 0 < tile < 32:
            raise self.fail(path + ("tile",), "must be 0 (whole images) or at least 32 pixels")
        overlap = setting("tile_overlap", self.integer, 0, 1024)
        if tile and overlap is not None and overlap * 2 >= tile:
            raise self.fail(path + ("tile_overlap",), f"must be less than half the tile ({tile})",
                            f"e.g. tile_overlap: {min(32, tile // 4)}")
        return Upscale(
            name, factor, size,
            model=(self.weights if kind.loader == "spandrel" else self.upscale_model)(section, path, name),
            revision=self.text(section, "revision", path, None, empty_ok=False),
            steps=setting("steps", self.integer, 1, 1000),
            guidance=setting("guidance", self.number, 0.0, 100.0),
            noise_level=setting("noise_level", self.integer, 0, MAX_NOISE_LEVEL),
            tile=tile, tile_overlap=overlap,
            batch_size=None if section.get("batch_size") in ("auto", None)
            else self.integer(section, "batch_size", path, None, 1, 4096),
        )

    def upscale_model(self, section: dict, path: tuple, name: str) -> str:
        """A latent upscaler's diffusers model: hub id or local folder, checked like render.model."""
        kind = UPSCALERS[name]
        value = self.text(section, "model", path, None, empty_ok=False)
        if value is None:
            return kind.default_model
        if value.endswith(PICKLE_SUFFIXES + (".safetensors",)):
            pickle = value.endswith(PICKLE_SUFFIXES)
            raise self.fail(path + ("model",),
                            f"{_q(value)} is a single weights file" + (" (a pickle, which can run code when loaded)"
                                                                      if pickle else "")
                            + f"; upscaler '{name}' needs a diffusers folder or hub id",
                            f"e.g. model: {kind.default_model}; for ESRGAN-family weights files write "
                            "upscaler: esrgan")
        return self.model(section, path, single_file=False, example=kind.default_model)

    def weights(self, section: dict, path: tuple, name: str) -> str:
        """A super-resolution weights file: local (.pth, .safetensors ...) or on the hub (owner/repo/file)."""
        kind = UPSCALERS[name]
        value = self.text(section, "model", path, None, empty_ok=False)
        if value is None:
            return kind.default_model
        mpath = path + ("model",)
        kinds = f"a weights file ({', '.join(WEIGHTS_SUFFIXES)}) or a hub file like '{kind.default_model}'"
        candidate = self.local(value)
        is_local = value.startswith((".", "/", "~")) or _exists(candidate)
        if is_local:
            if not _exists(candidate):
                raise self.fail(mpath, f"no such file: {_q(candidate or value)}", f"give {kinds}")
            if candidate.is_dir():
                raise self.fail(mpath, f"{_q(candidate)} is a folder; upscaler '{name}' needs one weights file",
                                f"give {kinds}")
        elif not HUB_FILE.fullmatch(value) or ".." in value:
            raise self.fail(mpath, f"{_q(value)} is neither an existing file nor a file on the hub",
                            f"give {kinds} (owner/repo, then the file's path in the repo)")
        if not value.lower().endswith(WEIGHTS_SUFFIXES):
            raise self.fail(mpath, f"{_q(value)} is not a weights file upscaler '{name}' reads",
                            f"give {kinds}; ONNX and NCNN exports are not PyTorch weights")
        return str(candidate) if is_local else value

    def axes(self, value: Any) -> tuple[Axis, ...]:
        axes_map = self.mapping(value, ("axes",), None, "axes")
        if not axes_map:
            raise self.fail(("axes",), "must list at least one axis")
        seen_lower: dict[str, str] = {}
        result = []
        for name, axis_value in axes_map.items():
            path = ("axes", name)
            self.safe_key(name, path, seen_lower, "axis name")
            if isinstance(axis_value, dict) and "options" in axis_value:
                section = self.mapping(axis_value, path, ("label", "options"), "axis settings")
                options_value = section["options"]
                label = self.text(section, "label", path, None, empty_ok=False)
                options_path = path + ("options",)
            else:
                options_value, label, options_path = axis_value, None, path
            label = label or name.replace("_", " ").replace("-", " ").strip().capitalize()
            result.append(Axis(name, label, self.options(name, options_value, options_path)))
        return tuple(result)

    def options(self, axis: str, value: Any, path: tuple) -> tuple[Option, ...]:
        if value is None or value == {} or value == []:
            raise self.fail(path, "this axis has no options", "list at least one option: key: prompt text")
        if isinstance(value, list):
            raise self.fail(path, "options must be a mapping of key: prompt text, not a list",
                            "write each option as `key: prompt text` (the key names it in file names and URLs)")
        options_map = self.mapping(value, path, None, "options")
        seen_lower: dict[str, str] = {}
        result = []
        for key, option_value in options_map.items():
            opath = path + (key,)
            self.safe_key(key, opath, seen_lower, "option key")
            if isinstance(option_value, dict):
                section = self.mapping(option_value, opath, ("prompt", "label", "render"), "option settings")
                prompt = self.text(section, "prompt", opath, None)
                if prompt is None:
                    raise self.fail(opath, "missing 'prompt'", "give the prompt text this option adds")
                label = self.text(section, "label", opath, None, empty_ok=False) or prompt.strip() or key
                # checked once the defaults are known (see overrides())
                overrides = self.mapping(section.get("render"), opath + ("render",), PICTURE_KEYS,
                                         "render settings an option may change")
                self.raw_overrides[(axis, key)] = (overrides, opath + ("render",))
                result.append(Option(key, label, prompt))
            elif isinstance(option_value, TEXTLIKE) and not isinstance(option_value, bool):
                prompt = self.as_written(opath, option_value)
                result.append(Option(key, prompt.strip() or key, prompt))
            elif option_value is None:
                result.append(Option(key, key, ""))
            else:
                raise self.fail(opath, f"must be prompt text or a mapping with 'prompt', got {_got(option_value)}")
        return tuple(result)

    def safe_key(self, key: str, path: tuple, seen_lower: dict[str, str], what: str) -> None:
        if not SAFE_KEY.fullmatch(key):
            raise self.fail(path, f"{what} {_q(key)} is not safe for file names and URLs",
                            "use letters A-Z, digits, '_' and '-' (at most 64, starting with a letter or digit)")
        if key.lower() in seen_lower:
            raise self.fail(path, f"{what} {_q(key)} clashes with {_q(seen_lower[key.lower()])} "
                                  "on case-insensitive file systems", "rename one of them")
        seen_lower[key.lower()] = key

    def prompt_template(self, top: dict, axes: tuple[Axis, ...]) -> str | None:
        template = self.text(top, "prompt", (), None, empty_ok=False)
        if template is None:
            return None
        names = {a.name for a in axes}
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
        except ValueError as err:
            raise self.fail(("prompt",), f"bad template: {err}", "write axis names in braces: '{subject} {style}'; "
                                                                 "double a literal brace: '{{'") from None
        for name, spec, conv in fields:
            if name not in names:
                close = difflib.get_close_matches(name, sorted(names), n=1)
                hint = f"did you mean '{{{close[0]}}}'?" if close else f"axes are: {', '.join(sorted(names))}"
                raise self.fail(("prompt",), f"{_q('{' + name + '}')} is not an axis", hint)
            if spec or conv:
                written = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
                raise self.fail(("prompt",), f"{_q(written)} may not have a '!' conversion or ':' format spec",
                                f"write just {_q('{' + name + '}')}; double a literal brace: '{{{{'")
        return template

    def picture(self, section: dict, path: tuple, base: Picture | None) -> Picture:
        """Picture settings from `section`; missing keys come from `base` (or the defaults)."""
        get = (lambda k: getattr(base, k)) if base else (lambda k: None)
        model = self.model(section, path) if section.get("model") is not None else (base.model if base else None)
        if model is None:
            model = "CompVis/ldm-text2im-large-256"
        scheduler = self.scheduler(section, path, base.scheduler if base else "default")
        width = self.size(section, "width", path, get("width") or 512)
        height = self.size(section, "height", path, get("height") or 512)
        return Picture(
            model=model,
            revision=self.text(section, "revision", path, get("revision"), empty_ok=False),
            pipeline=self.pipeline_name(section, path, get("pipeline") or "auto"),
            scheduler=scheduler,
            scheduler_options=self.scheduler_options(section, path, get("scheduler_options") or ()),
            steps=self.integer(section, "steps", path, get("steps") or 50, 1, 1000),
            guidance=self.number(section, "guidance", path, base.guidance if base else 7.5, 0.0, 100.0),
            width=width,
            height=height,
            negative_prompt=self.text(section, "negative_prompt", path, get("negative_prompt") or ""),
        )

    def overrides(self, axis: str, key: str, defaults: Picture) -> tuple[tuple[str, Any], ...]:
        raw, path = self.raw_overrides.get((axis, key), ({}, ()))
        if not raw:
            return ()
        changed = self.picture(raw, path, defaults)
        return tuple((k, getattr(changed, k)) for k in PICTURE_KEYS if k in raw)

    def model(self, section: dict, path: tuple, *, single_file: bool = True,
              example: str = "CompVis/ldm-text2im-large-256") -> str:
        """A hub id or a local diffusers folder (or, where `single_file`, a .safetensors file)."""
        value = self.text(section, "model", path, None, empty_ok=False)
        mpath = path + ("model",)
        if value.endswith(PICKLE_SUFFIXES):
            raise self.fail(mpath, f"{_q(value)} is a pickle checkpoint, which can run code when loaded",
                            "convert it to .safetensors (or a diffusers folder) and point model: at that")
        kinds = "a diffusers folder (with model_index.json), a .safetensors file," if single_file else \
            "a diffusers folder (with model_index.json)"
        looks_local = value.startswith((".", "/", "~")) or value.endswith(".safetensors")
        candidate = self.local(value)
        if looks_local or _exists(candidate):
            if not _exists(candidate):
                raise self.fail(mpath, f"no such file or folder: {_q(candidate or value)}",
                                f"give {kinds} or a hub id like '{example}'")
            try:  # a folder we may not read
                if candidate.is_dir() and not (candidate / "model_index.json").is_file():
                    raise self.fail(mpath, f"{_q(candidate)} is not a diffusers folder (no model_index.json)",
                                    "point model: at the folder that `save_pretrained` wrote")
                if not candidate.is_dir() and (candidate.suffix != ".safetensors" or not single_file):
                    raise self.fail(mpath, f"{_q(candidate)} is not " + (
                        "a .safetensors file" if single_file else "a folder"), f"give {kinds} or a hub id")
            except OSError as err:
                raise self.fail(mpath, f"cannot read {_q(candidate)}: {err.strerror}") from None
            return str(candidate)
        if not HUB_ID.fullmatch(value) or ".." in value:
            raise self.fail(mpath, f"{_q(value)} is neither a hub id nor an existing path",
                            "a hub id looks like 'owner/name'; a local model is "
                            + ("a folder or a .safetensors file" if single_file else "a diffusers folder"))
        return value

    def local(self, value: str) -> Path | None:
        """`value` as a path from prompts.yaml's folder; None where it cannot be one (a NUL byte, ~nobody)."""
        try:
            return (self.root / Path(value).expanduser()).resolve()
        except (OSError, ValueError, RuntimeError):
            return None

    def scheduler(self, section: dict, path: tuple, default: str) -> str:
        value = self.text(section, "scheduler", path, None, empty_ok=False)
        if value is None:
            return default
        choice = schedulers.resolve(value)
        if choice is None:
            close = difflib.get_close_matches(value.lower(), list(schedulers.KNOWN), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(schedulers.KNOWN)}, or a " \
                                                                "diffusers class name such as DDIMScheduler"
            raise self.fail(path + ("scheduler",), f"unknown scheduler {_q(value)}", hint)
        return choice.name

    def scheduler_options(self, section: dict, path: tuple, default: tuple) -> tuple:
        if "scheduler_options" not in section or section["scheduler_options"] is None:
            return default
        opts = self.mapping(section["scheduler_options"], path + ("scheduler_options",), None, "scheduler settings")
        for key, value in opts.items():
            if not isinstance(value, (bool, int, float, str)):
                raise self.fail(path + ("scheduler_options", key), f"must be a plain value, got {_kind(value)}")
        return tuple(sorted(opts.items()))

    def pipeline_name(self, section: dict, path: tuple, default: str) -> str:
        value = self.text(section, "pipeline", path, None, empty_ok=False)
        if value is None:
            return default
        if value != "auto" and not re.fullmatch(r"[A-Z][A-Za-z0-9]*Pipeline", value):
            raise self.fail(path + ("pipeline",), f"{_q(value)} is not a diffusers pipeline class name",
                            "use 'auto' (read from the model) or a class such as StableDiffusionXLPipeline")
        return value

    def size(self, section: dict, key: str, path: tuple, default: int) -> int:
        value = self.integer(section, key, path, default, 64, 4096)
        if value % 8:
            raise self.fail(path + (key,), f"must be a multiple of 8, got {value}",
                            f"try {value // 8 * 8} or {value // 8 * 8 + 8}")
        return value

    def runtime(self, render: dict) -> Runtime:
        path = ("render",)
        device = self.text(render, "device", path, "auto", empty_ok=False)
        if not DEVICE.fullmatch(device):
            raise self.fail(path + ("device",), f"unknown device {_q(device)}", "use auto, cpu, cuda, cuda:N or mps")
        dtype = self.text(render, "dtype", path, "auto", empty_ok=False)
        if dtype.lower() not in DTYPES:
            raise self.fail(path + ("dtype",), f"unknown dtype {_q(dtype)}", "use auto, float32, float16 or bfloat16")
        batch = render.get("batch_size", "auto")
        if batch in ("auto", None):
            batch_size = None
        else:
            batch_size = self.integer(render, "batch_size", path, None, 1, 4096)
        offload = render.get("cpu_offload", False)
        if offload is True:
            offload = "model"
        if offload in (False, None, "none"):
            offload = "none"
        if offload not in ("none", "model", "sequential"):
            raise self.fail(path + ("cpu_offload",),
                            f"must be false, true, 'model' or 'sequential', got {_got(offload)}")
        return Runtime(
            samples=self.integer(render, "samples", path, 4, 1, 10_000),
            seed=self.integer(render, "seed", path, 0, 0, 2**63 - 1),
            device=device,
            dtype=DTYPES[dtype.lower()],
            batch_size=batch_size,
            attention_slicing=self.boolean(render, "attention_slicing", path, False),
            vae_tiling=self.boolean(render, "vae_tiling", path, False),
            cpu_offload=offload,
        )

    def cell(self, value: Any, path: tuple, axes: tuple[Axis, ...], default: tuple[str, ...]) -> tuple[str, ...]:
        if value is None:
            return default
        chosen = self.mapping(value, path, tuple(a.name for a in axes), "axis: option key")
        cell = []
        for axis, fallback in zip(axes, default):
            key = chosen.get(axis.name, fallback)
            if isinstance(key, TEXTLIKE) and not isinstance(key, bool):
                key = self.as_written(path + (axis.name,), key)
            keys = [o.key for o in axis.options]
            if not isinstance(key, str) or key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                raise self.fail(path + (axis.name,), f"{_q(key)} is not an option of axis '{axis.name}'",
                                f"did you mean '{close[0]}'?" if close else f"options: {', '.join(keys)}")
            cell.append(key)
        return tuple(cell)

    def page(self, value: Any, axes: tuple[Axis, ...]) -> Page:
        path = ("page",)
        page = self.mapping(value, path, ("slug", "title", "description", "importance", "category", "layout",
                                          "default", "cover", "intro", "body"), "page settings")
        title = self.text(page, "title", path, "Prompt gallery", empty_ok=False)
        slug = self.text(page, "slug", path, None, empty_ok=False) or _slugify(title)
        if not SAFE_KEY.fullmatch(slug):
            raise self.fail(path + ("slug",), f"{_q(slug)} is not safe for file names and URLs",
                            "use letters, digits, '_' and '-'")
        first = tuple(a.options[0].key for a in axes)
        default = self.cell(page.get("default"), path + ("default",), axes, first)
        return Page(
            slug=slug,
            title=title,
            description=self.text(page, "description", path, ""),
            importance=self.integer(page, "importance", path, None, -10**6, 10**6),
            category=self.text(page, "category", path, None),
            layout=self.text(page, "layout", path, "page", empty_ok=False),
            default=default,
            cover=self.cell(page.get("cover"), path + ("cover",), axes, default),
            intro=self.text(page, "intro", path, ""),
            body=self.text(page, "body", path, ""),
        )

    def site(self, value: Any, page: Page) -> Site:
        path = ("site",)
        site = self.mapping(value, path, ("title", "description", "url", "baseurl"), "site settings")
        baseurl = self.text(site, "baseurl", path, "")
        if baseurl and (not baseurl.startswith("/") or baseurl.endswith("/")):
            raise self.fail(path + ("baseurl",), f"{_q(baseurl)} must start with '/' and not end with one",
                            "for https://user.github.io/repo/ write baseurl: /repo")
        return Site(
            title=self.text(site, "title", path, page.title, empty_ok=False),
            description=self.text(site, "description", path, page.description),
            url=self.text(site, "url", path, "").rstrip("/"),
            baseurl=baseurl,
        )

    def folder(self, paths: dict, key: str, default: str) -> Path:
        value = self.text(paths, key, ("paths",), default, empty_ok=False)
        folder, hint = self.local(value), "give a folder, relative to prompts.yaml"
        if folder is None:
            raise self.fail(("paths", key), f"{_q(value)} is not a usable path", hint)
        if _exists(folder) and not folder.is_dir():
            raise self.fail(("paths", key), f"{_q(folder)} is a file, not a folder", hint)
        return folder


def _slugify(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:64]
    return slug or "gallery"


def _exists(path: Path | None) -> bool:
    try:
        return path is not None and path.exists()
    except (OSError, ValueError):  # a name too long for the file system
        return False


def _q(value: Any, limit: int = 100) -> str:
    """A user's value quoted for a message: on one line, and not too long."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'" if text.isprintable() else ascii(text)


def _got(value: Any) -> str:
    """What a wrong value is, for 'must be X, got ...': its kind, and the value itself when it is a scalar."""
    if isinstance(value, (dict, list)) or value is None:
        return _kind(value)
    return f"{_kind(value)} {_q(value) if isinstance(value, str) else str(value)[:60]}"


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "text", bool: "true/false",
                              int: "a number", float: "a number", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)
