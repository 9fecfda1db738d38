import os
import sys
import textwrap
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from the hub in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_ldm(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_ldm

    return build_tiny_ldm(tmp_path_factory.mktemp("models") / "tiny-ldm")


@pytest.fixture(scope="session")
def tiny_ldsr(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_ldsr

    return build_tiny_ldsr(tmp_path_factory.mktemp("models") / "tiny-ldsr")


@pytest.fixture(scope="session")
def tiny_sd_upscaler(tmp_path_factory) -> Path:
    from tiny_pipelines import build_tiny_sd_upscaler

    return build_tiny_sd_upscaler(tmp_path_factory.mktemp("models") / "tiny-sd-x4")


def write_prompts(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prompts.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
