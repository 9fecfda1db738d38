"""End to end with tiny random-weight pipelines loaded through the real diffusers path."""

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import files_under, small_gpu, write_prompts
from gallery.cache import Cache
from gallery.cli import main
from gallery.config import load_config
from gallery.manifest import cell_files
from gallery.metadata import read_parameters
from gallery.project import open_project


def small_project(folder: Path, model: Path, extra_render: str = "", axes: str | None = None) -> Path:
    return write_prompts(
        folder,
        f"""
        page: {{title: Tiny test, default: {{subject: dog, style: oil}}}}
        render:
          model: {model}
          steps: 2
          width: 64
          height: 64
          samples: 2
          seed: 10
          dtype: float32
          {extra_render}
        axes:
          {
            axes
            or '''subject: {cat: a cat, dog: a dog}
          style: {oil: oil painting, ink: {prompt: ink drawing, label: Ink, render: {guidance: 3}}}'''
        }
    """,
    )


def cache_entries(config_path: Path) -> set[str]:
    config = load_config(config_path)
    return {p.stem for p in (config.cache_dir / "images").rglob("*.json")}


def test_build_renders_caches_and_emits_site(tmp_path, tiny_sd, capsys):
    prompts = small_project(tmp_path, tiny_sd, "negative_prompt: blurry\n          batch_size: 3")
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr()
    assert "render: 8 images" in out.out
    project = open_project(prompts)
    config, cache, plan = project.config, project.cache, project.plan
    assert set(cache.whole_entries(plan.keys)) == set(plan.keys) and len(cache_entries(prompts)) == 8

    job = plan.cell(("dog", "ink")).jobs[1]
    side = cache.sidecar(job.key)
    assert side["recipe"]["prompt"] == "a dog ink drawing" and side["recipe"]["seed"] == 11
    assert side["recipe"]["guidance"] == 3.0 and side["recipe"]["negative_prompt"] == "blurry"
    assert side["made"]["device"] == "cpu" and side["made"]["dtype"] == "float32"
    assert side["made"]["pipeline"] == "StableDiffusionPipeline" and "torch" in side["made"]["versions"]
    png = cache.png_path(job.key).read_bytes()
    assert read_parameters(png) == (
        "a dog ink drawing\nNegative prompt: blurry\nSteps: 2, Sampler: DDIM, "  # the model's own, by its name
        "CFG scale: 3, Seed: 11, Size: 64x64, Model: tiny-sd"
    )
    assert Image.open(cache.png_path(job.key)).size == (64, 64)
    assert not list(config.cache_dir.rglob(".tmp-*"))

    site = config.site_dir
    manifest = json.loads((site / "assets/img/tiny-test/manifest.json").read_text())
    assert manifest["default"] == ["dog", "oil"] and manifest["samples"] == 2
    assert [a["name"] for a in manifest["axes"]] == ["subject", "style"]
    # named by content: a new version of a cell never replaces the file an open page reads
    files = cell_files(site, manifest)
    assert re.fullmatch(r"assets/img/tiny-test/dog/ink/cell-[0-9a-f]{12}\.json", files["dog/ink"])
    # and so are the blocks that name them (the index names the blocks)
    assert all(
        re.fullmatch(r"assets/img/tiny-test/cells-[0-9a-f]{12}\.json", f) for f in manifest["cell_blocks"]["files"]
    )
    cells = {path: json.loads((site / file).read_text()) for path, file in files.items()}
    ink = cells["dog/ink"]
    assert ink["prompt"] == "a dog ink drawing" and len(ink["images"]) == 2
    assert ink["settings"]["cfg"] == 3.0 and ink["thumb_size"] == [64, 64]
    assert ink["settings"]["scheduler"] == "DDIM"  # the model's own, as its sidecars record
    for cell in cells.values():
        for image in cell["images"]:
            assert Image.open(site / image["thumb"]).format == "WEBP"
            assert (site / image["full"]).is_file()
    page = (site / "_projects/tiny-test.md").read_text()
    assert "layout: page" in page and "img: assets/img/tiny-test/cover.webp" in page
    gallery = (site / "_includes/prompt_gallery/tiny-test/gallery.html").read_text()
    assert (
        gallery.count('<img class="pg-img"') == 2 and "a dog oil painting" in gallery
    )  # the default cell, no JS needed


def test_second_build_renders_nothing_and_imports_no_torch(tmp_path, tiny_sd):
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    config = load_config(prompts)
    stamps = {p: p.stat().st_mtime_ns for p in config.cache_dir.rglob("*") if p.is_file()}
    site_stamps = {p: p.stat().st_mtime_ns for p in config.site_dir.rglob("*") if p.is_file()}
    code = (
        "import sys; from gallery.cli import main; rc = main(['build', '-c', sys.argv[1]]); "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "print('heavy:', heavy); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(prompts)], capture_output=True, text=True, check=True)
    assert "heavy: []" in result.stdout and "all 8 images are cached" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in config.cache_dir.rglob("*") if p.is_file()} == stamps
    assert {p: p.stat().st_mtime_ns for p in config.site_dir.rglob("*") if p.is_file()} == site_stamps


def test_a_job_gives_the_same_image_alone_or_in_a_batch(tmp_path, tiny_sd):
    one = small_project(tmp_path / "one", tiny_sd, "batch_size: 1")
    four = small_project(tmp_path / "four", tiny_sd, "batch_size: 4")
    assert main(["render", "-c", str(one)]) == 0 and main(["render", "-c", str(four)]) == 0
    keys = cache_entries(one)
    assert keys == cache_entries(four)  # batch size is not in the key
    a, b = Cache(load_config(one).cache_dir), Cache(load_config(four).cache_dir)
    for key in keys:
        x = np.asarray(Image.open(a.png_path(key)), dtype=int)
        y = np.asarray(Image.open(b.png_path(key)), dtype=int)
        assert np.abs(x - y).max() <= 2  # equal within rounding
    # and different seeds really give different pictures
    pixels = [np.asarray(Image.open(a.png_path(k))) for k in sorted(keys)]
    assert len({p.tobytes() for p in pixels}) == len(pixels)


def test_ldm_pipeline_warns_about_negative_prompt(tmp_path, tiny_ldm, capsys):
    prompts = small_project(tmp_path, tiny_ldm, "negative_prompt: blurry\n          scheduler: ddim")
    assert main(["build", "-c", str(prompts)]) == 0
    err = capsys.readouterr().err
    assert "LDMTextToImagePipeline has no negative prompt" in err and err.count("no negative prompt") == 1
    config = load_config(prompts)
    side = next((config.cache_dir / "images").rglob("*.json"))
    made = json.loads(side.read_text())
    assert made["made"]["pipeline"] == "LDMTextToImagePipeline" and made["made"]["scheduler"] == "DDIMScheduler"
    assert "Sampler: DDIM" in read_parameters(side.with_suffix(".png").read_bytes())


def test_the_original_model_renders_in_bfloat16(tmp_path, tiny_ldm):
    """A GPU's `dtype: auto` is bfloat16, and LDMTextToImagePipeline turns its pictures into numpy
    arrays as they come (numpy has no bfloat16): its pictures must come out all the same."""
    prompts = small_project(tmp_path, tiny_ldm)
    prompts.write_text(prompts.read_text().replace("dtype: float32", "dtype: bfloat16"))
    assert main(["render", "-c", str(prompts)]) == 0
    sides = [json.loads(p.read_text()) for p in (load_config(prompts).cache_dir / "images").rglob("*.json")]
    assert sides and all(s["made"]["dtype"] == "bfloat16" for s in sides)


def test_offline_hub_model_stops_before_writing_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    prompts = write_prompts(
        tmp_path,
        """
        render: {model: CompVis/ldm-text2im-large-256, steps: 2}
        axes: {subject: {cat: a cat}}
    """,
    )
    before = files_under(tmp_path)
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err.strip()
    assert "CompVis/ldm-text2im-large-256" in err and "local diffusers folder" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert files_under(tmp_path) == before


def test_half_written_entry_is_rendered_again(tmp_path, tiny_sd, capsys):
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["render", "-c", str(prompts)]) == 0
    config = load_config(prompts)
    victim = next((config.cache_dir / "images").rglob("*.json"))
    victim.unlink()  # as if killed between writing the PNG and its sidecar
    capsys.readouterr()
    assert main(["plan", "-c", str(prompts)]) == 0
    assert "cached: 7   to render: 1" in capsys.readouterr().out
    assert main(["render", "-c", str(prompts)]) == 0
    assert "render: 1 images" in capsys.readouterr().out and victim.is_file()


def test_out_of_memory_halves_the_batch(tmp_path, tiny_sd, monkeypatch, capsys):
    sizes = small_gpu(monkeypatch, "load_pipeline", "prompt")
    prompts = small_project(tmp_path, tiny_sd, "batch_size: 8")
    assert main(["render", "-c", str(prompts)]) == 0
    # two groups of 4 (guidance 7.5 and 3): each tried whole, then halved to 2, which fits
    assert sizes == [4, 2, 2, 4, 2, 2] and len(cache_entries(prompts)) == 8
    assert "batch size halved" in capsys.readouterr().err


def test_second_build_waits_for_the_first(tmp_path, tiny_sd):
    prompts = small_project(tmp_path, tiny_sd)
    config = load_config(prompts)
    lines: list[str] = []
    with Cache(config.cache_dir).locked():  # a first build is running
        proc = subprocess.Popen(
            [sys.executable, "-m", "gallery", "render", "-c", str(prompts)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not any("cache lock" in line for line in lines):
            time.sleep(0.2)
        assert any("another build holds the cache lock; waiting" in line for line in lines), lines
        time.sleep(1)
        assert proc.poll() is None, "the second build waits while the first holds the lock"
        assert not list(config.cache_dir.rglob("*.png")), "and writes nothing meanwhile"
    assert proc.wait(timeout=300) == 0, lines
    assert len(cache_entries(prompts)) == 8


def test_site_drops_images_that_left_the_matrix(tmp_path, tiny_sd):
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    site = load_config(prompts).site_dir
    assert list((site / "assets/img/tiny-test/cat/ink").glob("*.webp"))
    text = prompts.read_text().replace("subject: {cat: a cat, dog: a dog}", "subject: {dog: a dog}")
    prompts.write_text(text)
    assert main(["site", "-c", str(prompts)]) == 0
    assert not (site / "assets/img/tiny-test/cat").exists()
    assert list((site / "assets/img/tiny-test/dog/ink").glob("*.webp"))
    assert len(cache_entries(prompts)) == 8  # the cache keeps everything; only the site forgets


def test_each_cell_gets_its_own_scheduler(tmp_path, tiny_sd):
    prompts = small_project(
        tmp_path,
        tiny_sd,
        axes="""subject: {dog: a dog}
          style:
            oil: {prompt: oil, render: {scheduler: euler_a}}
            ink: ink
            clay: {prompt: clay, render: {scheduler: dpm++_2m_karras}}""",
    )
    assert main(["render", "-c", str(prompts)]) == 0
    config = load_config(prompts)
    made = {}
    for side in (config.cache_dir / "images").rglob("*.json"):
        data = json.loads(side.read_text())
        made[data["cell"][1]] = data["made"]["scheduler"]
    # "ink" keeps the model's own scheduler, whatever rendered before it
    assert made == {
        "oil": "EulerAncestralDiscreteScheduler",
        "ink": "DDIMScheduler",
        "clay": "DPMSolverMultistepScheduler",
    }
