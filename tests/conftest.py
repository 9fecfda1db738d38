import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from the hub in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent


def needs_spandrel() -> pytest.MarkDecorator:
    """For tests that run the esrgan upscaler: skipped, with the reason, where spandrel (an optional
    extra that needs a torchvision built for this torch) does not import; CI sets
    GALLERY_REQUIRE_ESRGAN=1, and there they run (and fail without it)."""
    try:
        import spandrel  # noqa: F401
    except Exception as err:  # ImportError, or torchvision's own error on a torch it was not built for
        return pytest.mark.skipif(
            not os.environ.get("GALLERY_REQUIRE_ESRGAN"),
            reason=f"spandrel does not import ({type(err).__name__}: {err}); install "
            "torchvision for your torch, then pip install -e '.[esrgan]'; "
            "CI sets GALLERY_REQUIRE_ESRGAN=1",
        )
    return pytest.mark.skipif(False, reason="spandrel imports")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_ldm(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_ldm

    return build_tiny_ldm(tmp_path_factory.mktemp("models") / "tiny-ldm")


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    """`tiny_family(name)`: the folder of a tiny pipeline of family `name` (tiny_pipelines.FAMILIES),
    built on first use and shared by the whole session."""
    from tiny_pipelines import FAMILIES

    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            built[name] = FAMILIES[name](root / name / f"tiny-{name}")
        return built[name]

    return build


@pytest.fixture(scope="session")
def tiny_ldsr(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_ldsr

    return build_tiny_ldsr(tmp_path_factory.mktemp("models") / "tiny-ldsr")


@pytest.fixture(scope="session")
def tiny_sd_upscaler(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_sd_upscaler

    return build_tiny_sd_upscaler(tmp_path_factory.mktemp("models") / "tiny-sd-x4")


@pytest.fixture(scope="session")
def tiny_esrgan(tmp_path_factory) -> Path:
    """A folder of tiny Real-ESRGAN-style weights files: x2.pth, x4.safetensors and x1.pth (a 1x
    restoration model, not an upscaler)."""
    from tiny_pipelines import build_tiny_esrgan

    folder = tmp_path_factory.mktemp("esrgan")
    for name, scale in (("x2.pth", 2), ("x4.safetensors", 4), ("x1.pth", 1)):
        build_tiny_esrgan(folder / name, scale)
    return folder


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module (the browser tests')."""
    from playwright.sync_api import sync_playwright

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # scripts/ is not a package that is installed
    from scripts.browser import CHROMIUM, FLAGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def write_prompts(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prompts.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def at_once(args: list[str], envs: list[dict], cwd: Path | None = None, timeout: int = 600) -> list[tuple]:
    """`gallery ARGS` in one process per environment of `envs`, all started before any is waited
    for: (exit code, stdout, stderr) of each."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gallery", *args],
            cwd=cwd,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for env in envs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results


def cell_of(site: Path, slug: str, cell: str) -> dict:
    """A cell's file as the page finds it: through the manifest (its name holds its content's hash)."""
    from gallery.manifest import cell_files

    manifest = json.loads((site / f"assets/img/{slug}/manifest.json").read_text(encoding="utf-8"))
    return json.loads((site / cell_files(site, manifest)[cell]).read_text(encoding="utf-8"))


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def small_gpu(monkeypatch, loader: str, batch_argument: str | int) -> list[int]:
    """Models from gallery.loading.<loader> raise CUDA out-of-memory on calls of more than 2
    images or tiles, counted by the call's `batch_argument` (a keyword, or a position); returns
    the batch sizes tried, in order."""
    import torch

    from gallery import loading

    real_load = getattr(loading, loader)
    sizes: list[int] = []

    def load_with_small_gpu(*args, **kwargs):
        pipe = real_load(*args, **kwargs)
        cls = type(pipe)

        def call(self, *a, **kw):
            sizes.append(len(kw[batch_argument] if isinstance(batch_argument, str) else a[batch_argument]))
            if sizes[-1] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return cls.__call__(self, *a, **kw)

        pipe.__class__ = type(cls.__name__, (cls,), {"__call__": call})
        return pipe

    monkeypatch.setattr(loading, loader, load_with_small_gpu)
    return sizes


def read_back(png: Path) -> dict:
    """A PNG's recipe as the third-party sd-parsers package reads it (what other tools see): prompt,
    negative prompt, sampler, its parameters (cfg_scale, seed, steps), model, and the rest."""
    from PIL import Image
    from sd_parsers import ParserManager

    with Image.open(png) as image:
        info = ParserManager().parse(image)
    assert info is not None, f"sd-parsers cannot read {png}"
    (sampler,) = info.samplers
    return {
        "generator": info.generator.value,
        "prompt": " ".join(p.value for p in sampler.prompts),
        "negative_prompt": " ".join(p.value for p in sampler.negative_prompts),
        "sampler": sampler.name,
        **sampler.parameters,
        "model": sampler.model.name if sampler.model else None,
        **info.metadata,
    }
