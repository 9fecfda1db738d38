"""The optional upscale stage: cached like renders, only re-run when the upscaler changes."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, at_once, cell_of, files_under, small_gpu, write_prompts
from gallery.cache import Cache
from gallery.cli import main
from gallery.config import load_config
from gallery.errors import ConfigError
from gallery.manifest import cell_files
from gallery.metadata import read_parameters
from gallery.plan import recipe_key
from gallery.project import open_project
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
    cell = cell_of(site, "tiny-test", "dog/ink")
    assert cell["full_size"] == [128, 128] and cell["settings"]["upscaler"] == "Lanczos 2x"
    full = Image.open(site / cell["images"][0]["full"])
    assert full.size == (128, 128)
    cache = Cache(config.cache_dir)
    upscaled = [s for s in (config.cache_dir / "images").rglob("*.json") if "source" in json.loads(s.read_text())]
    side = json.loads(upscaled[0].read_text())
    assert side["png"]["width"] == 128 and side["source"] in cache.whole_entries([side["source"]])
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
    cell = cell_of(site, "tiny-test", "dog/ink")
    assert cell["full_size"] == [96, 96] and Image.open(site / cell["images"][0]["full"]).size == (96, 96)


def test_render_on_two_processes_then_the_next_command_upscales_once_and_fills_the_page(tmp_path, tiny_sd, capsys):
    """The README's many-GPU recipe: `gallery render` in 2 processes at once (ranks as accelerate and
    torchrun set them), then `gallery build`, once: every image rendered, upscaled once, on the page."""
    prompts = with_upscale(small_project(tmp_path, tiny_sd), "upscale: {upscaler: lanczos}\n")
    ranks = [dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)) for rank in (0, 1)]
    results = at_once(["render", "-c", str(prompts)], ranks)
    outputs = [(out, err) for _, out, err in results]
    assert [code for code, _, _ in results] == [0, 0], outputs
    project = open_project(prompts)
    plan, cache = project.plan, project.cache
    renders = sidecars(prompts, upscaled=False)
    assert set(renders) == {job.key for job in plan.jobs} and not sidecars(prompts, upscaled=True)
    assert {side["made"]["process"] for side in renders.values()} == {"0/2", "1/2"}
    assert "run `gallery build` once" in outputs[0][1] and "gallery build" not in outputs[1][1]  # said once

    assert main(["site", "-c", str(prompts)]) == 0  # the site alone upscales nothing, and says what does
    out = capsys.readouterr().out
    assert "site: 0 images on the page" in out
    assert (
        "site: 8 rendered images are not upscaled yet (Lanczos 2x), so the page leaves them out; "
        "`gallery build` upscales them" in out
    )

    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "all 8 images are cached" in out and "upscale: 8 images (Lanczos 2x)" in out
    assert "site: 8 images on the page" in out and "not upscaled" not in out
    assert cache.keys() == set(cache.whole_entries(plan.keys)) == set(plan.keys)  # 8 renders + 8 upscales
    manifest = json.loads((project.config.site_dir / "assets/img/tiny-test/manifest.json").read_text())
    files = cell_files(project.config.site_dir, manifest)
    for cell in plan.cells:
        shown = json.loads((project.config.site_dir / files[cell.path]).read_text())
        assert shown["full_size"] == [128, 128]
        assert [image["sample"] for image in shown["images"]] == [job.sample for job in cell.jobs]
        for image, job in zip(
            shown["images"], cell.jobs, strict=True
        ):  # each sample's upscaled picture, not its render
            assert f"-{plan.published_key(job)[:12]}-full" in image["full"]
            assert Image.open(project.config.site_dir / image["full"]).size == (128, 128)

    upscaled = mtimes(prompts, sidecars(prompts, upscaled=True))
    assert main(["build", "-c", str(prompts)]) == 0  # once: nothing is upscaled again
    assert "upscale:" not in capsys.readouterr().out and mtimes(prompts, upscaled) == upscaled


def test_upscale_settings_are_checked(tmp_path):
    for text, needle in (
        ("upscale: {upscaler: esrgan-x4}\n", "unknown upscaler"),
        ("upscale: {upscaler: lanczos, factor: 2, size: 512}\n", "not both"),
        ("upscale: {upscaler: lanczos, factor: 1}\n", "between 2 and 8"),
    ):
        prompts = write_prompts(tmp_path, "axes: {s: {a: a}}\n" + text)
        with pytest.raises(ConfigError) as info:
            load_config(prompts)
        assert needle in str(info.value) and info.value.line == 2


# -- model upscalers: diffusers' latent upscalers, tiny random-weight ones built in code -------------


def sidecars(prompts, upscaled: bool) -> dict[str, dict]:
    """key -> sidecar of the cache's upscaled entries (or its renders)."""
    found = {}
    for path in (load_config(prompts).cache_dir / "images").rglob("*.json"):
        side = json.loads(path.read_text())
        if ("source" in side) == upscaled:
            found[side["key"]] = side
    return found


def mtimes(prompts, keys) -> dict[str, int]:
    cache = Cache(load_config(prompts).cache_dir)
    return {k: (cache.png_path(k).stat().st_mtime_ns, cache.sidecar_path(k).stat().st_mtime_ns) for k in keys}


def test_ldsr_upscales_4x_in_batches_and_a_cached_build_imports_no_torch(tmp_path, tiny_sd, tiny_ldsr, capsys):
    prompts = with_upscale(
        small_project(tmp_path, tiny_sd), f"upscale: {{upscaler: ldsr, model: {tiny_ldsr}, steps: 2, batch_size: 3}}\n"
    )
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "render: 8 images" in out and "upscale: 8 images (LDSR (tiny-ldsr) 4x)" in out
    upscaled = sidecars(prompts, upscaled=True)
    assert len(upscaled) == 8
    config = load_config(prompts)
    cache = Cache(config.cache_dir)
    side = next(iter(upscaled.values()))
    assert side["png"]["width"] == side["png"]["height"] == 256  # the model's own 4x: no resize
    assert side["recipe"]["model"].startswith("sha256:") and side["recipe"]["steps"] == 2
    assert side["recipe"]["seed"] == side["source_recipe"]["seed"]  # the source's seed draws the noise
    assert side["made"]["pipeline"] == "LDMSuperResolutionPipeline" and side["made"]["batch_size"] in (1, 2, 3)
    assert Image.open(cache.png_path(side["key"])).size == (256, 256)
    assert read_parameters(cache.png_path(side["key"]).read_bytes()).endswith(
        "Hires upscale: 4, Hires upscaler: LDSR (tiny-ldsr) 4x, Hires steps: 2"
    )
    cell = cell_of(config.site_dir, "tiny-test", "dog/ink")
    assert cell["full_size"] == [256, 256] and cell["settings"]["upscaler"] == "LDSR (tiny-ldsr) 4x"

    # a batch gives the same pictures as one image at a time (each draws its own noise)
    batched = {key: np.asarray(Image.open(cache.png_path(key)), dtype=int) for key in upscaled}
    for key in upscaled:
        cache.remove(key)
    prompts.write_text(prompts.read_text().replace("batch_size: 3", "batch_size: 1"))  # not in the key
    assert main(["build", "-c", str(prompts)]) == 0
    assert "all 8 images are cached" in (out := capsys.readouterr().out) and "upscale: 8 images" in out
    for key, pixels in batched.items():
        assert np.abs(np.asarray(Image.open(cache.png_path(key)), dtype=int) - pixels).max() <= 2

    # nothing to do the second time, and no torch for it
    stamps = mtimes(prompts, cache_entries(prompts))
    code = (
        "import sys; from gallery.cli import main; rc = main(['build', '-c', sys.argv[1]]); "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "print('heavy:', heavy); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(prompts)], capture_output=True, text=True, check=True)
    assert "heavy: []" in result.stdout and "all 8 images are cached" in result.stdout
    assert "upscale:" not in result.stdout and mtimes(prompts, stamps) == stamps


def test_switching_to_the_sd_x4_upscaler_reruns_only_the_upscale_stage(tmp_path, tiny_sd, tiny_sd_upscaler, capsys):
    prompts = with_upscale(small_project(tmp_path, tiny_sd), "upscale: {upscaler: lanczos, factor: 2}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    renders = sidecars(prompts, upscaled=False)
    rendered = mtimes(prompts, renders)
    lanczos = set(sidecars(prompts, upscaled=True))
    capsys.readouterr()

    text = prompts.read_text()
    prompts.write_text(
        text.replace(
            "upscale: {upscaler: lanczos, factor: 2}",
            f"upscale: {{upscaler: sd-x4, model: {tiny_sd_upscaler}, factor: 2, steps: 2, batch_size: 4}}",
        )
    )
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "all 8 images are cached" in out and "upscale: 8 images (SD x4 upscaler (tiny-sd-x4) 2x)" in out
    assert mtimes(prompts, renders) == rendered  # the renders are untouched
    upscaled = {k: s for k, s in sidecars(prompts, upscaled=True).items() if k not in lanczos}
    assert len(upscaled) == 8
    side = next(s for s in upscaled.values() if s["cell"] == ["dog", "ink"])
    assert side["png"]["width"] == side["png"]["height"] == 128  # the model's 4x, resized to the 2x asked
    assert side["recipe"]["guidance"] == 9.0 and side["recipe"]["noise_level"] == 20
    assert side["made"]["pipeline"] == "StableDiffusionUpscalePipeline"
    parameters = read_parameters(Cache(load_config(prompts).cache_dir).png_path(side["key"]).read_bytes())
    assert parameters.startswith("a dog ink drawing\n")  # the source's recipe, prompt first
    assert "Hires upscale: 2, Hires upscaler: SD x4 upscaler (tiny-sd-x4) 2x, Hires steps: 2" in parameters
    cell = cell_of(load_config(prompts).site_dir, "tiny-test", "dog/ink")
    assert cell["full_size"] == [128, 128] and cell["settings"]["upscaler"] == "SD x4 upscaler (tiny-sd-x4) 2x"

    # a setting of the upscaler is in its key: only this stage runs again
    prompts.write_text(
        prompts.read_text().replace("steps: 2, batch_size: 4}", "steps: 2, batch_size: 4, noise_level: 50}")
    )
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "all 8 images are cached" in out and "upscale: 8 images" in out
    assert mtimes(prompts, renders) == rendered


def test_model_upscaler_settings_and_defaults(tmp_path, tiny_ldsr):
    config = load_config(write_prompts(tmp_path, "axes: {s: {a: a}}\nupscale: {upscaler: ldsr}\n"))
    u = config.upscale
    assert (u.model, u.revision, u.factor, u.steps, u.guidance, u.noise_level, u.batch_size) == (
        "CompVis/ldm-super-resolution-4x-openimages",
        None,
        4,
        100,
        None,
        None,
        None,
    )
    assert u.label == "LDSR 4x"
    config = load_config(write_prompts(tmp_path, "axes: {s: {a: a}}\nupscale: {upscaler: SD-X4, size: 1024}\n"))
    u = config.upscale
    assert (u.model, u.steps, u.guidance, u.noise_level, u.factor, u.size) == (
        "stabilityai/stable-diffusion-x4-upscaler",
        75,
        9.0,
        20,
        None,
        1024,
    )
    assert u.label == "SD x4 upscaler to 1024px"
    config = load_config(
        write_prompts(tmp_path, f"axes: {{s: {{a: a}}}}\nupscale: {{upscaler: ldsr, model: {tiny_ldsr}, factor: 2}}\n")
    )
    assert config.upscale.model == str(tiny_ldsr) and config.upscale.label == "LDSR (tiny-ldsr) 2x"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("upscale: {upscaler: lanczos, steps: 20}\n", "upscaler 'lanczos' takes no steps"),
        ("upscale: {upscaler: ldsr, noise_level: 20}\n", "upscaler 'ldsr' takes no noise_level"),
        ("upscale: {upscaler: sd-x4, noise_level: 351}\n", "between 0 and 350"),
        ("upscale: {upscaler: sd-x4, steps: 0}\n", "between 1 and 1000"),
        ("upscale: {upscaler: real-esrgan}\n", "for Real-ESRGAN write upscaler: esrgan"),
        ("upscale: {upscaler: ldsr, model: ./RealESRGAN_x2plus.pth}\n", "a pickle"),
        ("upscale: {upscaler: ldsr, model: ./RealESRGAN_x2plus.safetensors}\n", "needs a diffusers folder or hub id"),
        ("upscale: {upscaler: ldsr, model: ./models/ldsr}\n", "no such file or folder"),
        ("upscale: {upscaler: sd-x4, model: ./prompts.yaml}\n", "is not a folder"),
    ],
)
def test_model_upscaler_mistakes_are_one_message(tmp_path, capsys, text, needle):
    prompts = write_prompts(tmp_path, "axes: {s: {a: a}}\n" + text)
    before = files_under(tmp_path)
    assert main(["build", "-c", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith(f"error: {prompts}:2: upscale.") and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2 and files_under(tmp_path) == before


def test_a_model_that_is_no_upscaler_stops_the_build_before_rendering(tmp_path, tiny_sd, tiny_ldsr, capsys):
    for upscaler, model, needle in (
        (
            "ldsr",
            tiny_sd,
            "is a StableDiffusionPipeline, not the LDMSuperResolutionPipeline that upscaler 'ldsr' "
            "needs; give a model such as CompVis/ldm-super-resolution-4x-openimages",
        ),
        (
            "sd-x4",
            tiny_ldsr,
            "is a LDMSuperResolutionPipeline, not the StableDiffusionUpscalePipeline that "
            "upscaler 'sd-x4' needs; for this model write upscaler: ldsr",
        ),
    ):
        project = tmp_path / upscaler
        prompts = with_upscale(small_project(project, tiny_sd), f"upscale: {{upscaler: {upscaler}, model: {model}}}\n")
        before = files_under(project)
        assert main(["build", "-c", str(prompts)]) == 1
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
        assert files_under(project) == before  # nothing rendered


def test_an_upscaler_from_the_hub_offline_stops_before_rendering(tmp_path, tiny_sd, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    prompts = with_upscale(small_project(tmp_path / "project", tiny_sd), "upscale: {upscaler: sd-x4}\n")
    before = files_under(tmp_path / "project")
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err.strip()
    assert "stabilityai/stable-diffusion-x4-upscaler" in err and "set upscale.model to a local diffusers folder" in err
    assert len(err.splitlines()) == 1 and files_under(tmp_path / "project") == before


def test_the_examples_commented_upscale_step_loads(tmp_path):
    """prompts.yaml documents the original's 2x step, commented out; uncommented it must be valid."""
    text = (REPO / "prompts.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("# upscale:")
    block = [lines[start]] + list(itertools.takewhile(lambda line: line.startswith("#   "), lines[start + 1 :]))
    assert len(block) > 2
    uncommented = text.replace("\n".join(block), "\n".join(line[2:] for line in block))
    (tmp_path / "prompts.yaml").write_text(uncommented, encoding="utf-8")
    upscale = load_config(tmp_path / "prompts.yaml").upscale
    assert (upscale.upscaler, upscale.factor, upscale.tile) == ("esrgan", 2, 512)
    assert upscale.model == "ai-forever/Real-ESRGAN/RealESRGAN_x2.pth"


def test_out_of_memory_halves_the_upscale_batch(tmp_path, tiny_sd, tiny_ldsr, monkeypatch, capsys):
    sizes = small_gpu(monkeypatch, "load_upscaler", "image")
    prompts = with_upscale(
        small_project(tmp_path, tiny_sd), f"upscale: {{upscaler: ldsr, model: {tiny_ldsr}, steps: 1, batch_size: 8}}\n"
    )
    assert main(["build", "-c", str(prompts)]) == 0
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2
    assert "upscale batch size halved to 2" in capsys.readouterr().err
    assert len(sidecars(prompts, upscaled=True)) == 8


def flip_a_byte(path, keep_time: bool) -> None:
    """One byte of the picture data changed in place (same size); optionally its time restored too,
    as bit rot or a careful tool would leave it."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    if keep_time:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_changed_byte_in_a_render_is_rendered_again_by_the_next_build(tmp_path, tiny_sd, capsys):
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    project = open_project(prompts)
    job = project.plan.jobs[3]
    flip_a_byte(project.cache.png_path(job.key), keep_time=False)
    capsys.readouterr()
    assert main(["build", "-c", str(prompts)]) == 0
    assert "render: 1 images" in capsys.readouterr().out
    assert project.cache.check(job.key, recipe_key) is None


def test_the_upscale_stage_never_starts_from_a_damaged_source(tmp_path, tiny_sd, capsys):
    prompts = with_upscale(small_project(tmp_path, tiny_sd), "upscale: {upscaler: lanczos, factor: 2}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    project = open_project(prompts)
    job = project.plan.jobs[2]
    flip_a_byte(project.cache.png_path(job.key), keep_time=True)  # a stat cannot see it: the stage's hash does
    prompts.write_text(prompts.read_text().replace("factor: 2}", "factor: 3}"))
    capsys.readouterr()
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "source changed on disk; set aside" in err
    assert main(["build", "-c", str(prompts)]) == 0  # rendered again, then upscaled
    project = open_project(prompts)
    entries = project.cache.whole_entries(project.plan.keys)
    assert all(key in entries for key in project.plan.keys)


def test_an_upscale_of_an_earlier_source_is_made_again(tmp_path, tiny_sd, capsys):
    """The source was rendered again with other pixels (another GPU, a damaged file replaced): the
    upscale made from the old pixels is stale, and the page shows the new source upscaled."""
    prompts = with_upscale(small_project(tmp_path, tiny_sd), "upscale: {upscaler: lanczos, factor: 2}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    project = open_project(prompts)
    job = project.plan.jobs[0]
    other = project.plan.jobs[1]
    sidecar = project.cache.sidecar(job.key)
    project.cache.put(job.key, project.cache.png_path(other.key).read_bytes(), {**sidecar, "png": {}})
    capsys.readouterr()
    assert main(["build", "-c", str(prompts)]) == 0
    assert "upscale: 1 images" in capsys.readouterr().out
    upscaled = project.cache.png_path(project.plan.upscales[job.key].key)
    expected = Image.open(project.cache.png_path(other.key)).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(Image.open(upscaled).convert("RGB")), np.asarray(expected))


def test_verify_sets_aside_an_upscale_of_an_earlier_source(tmp_path, tiny_sd, capsys):
    prompts = with_upscale(small_project(tmp_path, tiny_sd), "upscale: {upscaler: lanczos, factor: 2}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    project = open_project(prompts)
    job, other = project.plan.jobs[0], project.plan.jobs[1]
    project.cache.put(job.key, project.cache.png_path(other.key).read_bytes(), {**project.cache.sidecar(job.key)})
    capsys.readouterr()
    assert main(["verify", "-c", str(prompts)]) == 1
    assert "(upscaled): made from other pixels than its source holds now" in capsys.readouterr().out
    assert main(["verify", "-c", str(prompts)]) == 0


def test_two_builds_at_once_upscale_each_image_once(tmp_path, tiny_sd):
    prompts = with_upscale(small_project(tmp_path, tiny_sd), "upscale: {upscaler: lanczos, factor: 2}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    prompts.write_text(prompts.read_text().replace("factor: 2}", "factor: 3}"))
    runs = at_once(["build", "-c", str(prompts)], [dict(os.environ)] * 2, cwd=tmp_path)
    assert [code for code, _, _ in runs] == [0, 0], runs
    results = [(out, err) for _, out, err in runs]
    upscaled = [out for out, _ in results if "upscale: 8 images (Lanczos 3x)" in out]
    assert len(upscaled) == 1, results  # the second waited for the lock, then found them done
    assert sum("upscale:" in out for out, _ in results) == 1, results
