"""The optional upscale stage: cached like renders, only re-run when the upscaler changes."""

import json

import pytest
from PIL import Image

from conftest import write_prompts
from gallery.cache import Cache
from gallery.cli import main
from gallery.config import load_config
from gallery.errors import ConfigError
from gallery.metadata import read_parameters
from test_build import cache_entries, small_project


def with_upscale(prompts, text: str):
    prompts.write_text(prompts.read_text() + text)
    return prompts


def test_lanczos_upscale_is_cached_and_shown_full_size(tmp_path, tiny_sd, capsys):
    prompts = with_upscale(small_project(tmp_path, tiny_sd), "upscale: {upscaler: lanczos, factor: 2}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "render: 8 images" in out and "upscale: 8 images (Lanczos 2x)" in out
    assert len(cache_entries(prompts)) == 16  # 8 renders + 8 upscales
    config = load_config(prompts)
    site = config.site_dir
    cell = json.loads((site / "assets/img/tiny-test/dog/ink/cell.json").read_text())
    assert cell["full_size"] == [128, 128] and cell["settings"]["upscaler"] == "Lanczos 2x"
    full = Image.open(site / cell["images"][0]["full"])
    assert full.size == (128, 128)
    cache = Cache(config.cache_dir)
    upscaled = [s for s in (config.cache_dir / "images").rglob("*.json") if "source" in json.loads(s.read_text())]
    side = json.loads(upscaled[0].read_text())
    assert side["png"]["width"] == 128 and cache.has(side["source"])
    assert "Hires upscale: 2, Hires upscaler: Lanczos 2x" in read_parameters(cache.png_path(side["key"]).read_bytes())

    # nothing to do the second time
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "all 8 images are cached" in out and "upscale:" not in out

    # another upscaler setting re-runs only the upscale stage
    prompts.write_text(prompts.read_text().replace("factor: 2}", "size: 96}"))
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "all 8 images are cached" in out and "upscale: 8 images (Lanczos to 96px)" in out
    cell = json.loads((site / "assets/img/tiny-test/dog/ink/cell.json").read_text())
    assert cell["full_size"] == [96, 96] and Image.open(site / cell["images"][0]["full"]).size == (96, 96)


def test_upscale_settings_are_checked(tmp_path):
    for text, needle in (("upscale: {upscaler: esrgan}\n", "unknown upscaler"),
                         ("upscale: {upscaler: lanczos, factor: 2, size: 512}\n", "not both"),
                         ("upscale: {upscaler: lanczos, factor: 1}\n", "between 2 and 8")):
        prompts = write_prompts(tmp_path, "axes: {s: {a: a}}\n" + text)
        with pytest.raises(ConfigError) as info:
            load_config(prompts)
        assert needle in str(info.value) and info.value.line == 2
