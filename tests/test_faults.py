"""Nothing lost, nothing corrupted: kills, broken entries, bad pictures, full disks, bad models."""

import errno
import functools
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import cell_of, files_under, write_prompts
from gallery.cli import main
from gallery.config import load_config
from gallery.metadata import read_parameters
from gallery.project import open_project
from test_build import small_project


def plan_and_cache(prompts):
    project = open_project(prompts)
    return project.plan, project.cache


def whole_entries(plan, cache) -> dict[str, tuple[int, int]]:
    """key -> (PNG inode, sidecar inode) of every complete entry; a rewrite changes the inodes."""
    return {
        key: (cache.png_path(key).stat().st_ino, cache.sidecar_path(key).stat().st_ino)
        for key in cache.whole_entries(plan.keys)
    }


def kill_project(folder, model, steps: int = 20):
    return write_prompts(
        folder,
        f"""
        render: {{model: {model}, steps: {steps}, width: 64, height: 64, samples: 4, batch_size: 2}}
        axes:
          subject: {{a: a cat, b: a dog, c: a bird, d: a fish}}
          style: {{x: oil, y: ink, z: pencil, w: clay}}
    """,
    )


@pytest.mark.slow
def test_kill_nine_twenty_times_then_finish(tmp_path, tiny_sd):
    reference = kill_project(tmp_path / "reference", tiny_sd)
    assert main(["render", "-c", str(reference)]) == 0
    prompts = kill_project(tmp_path / "killed", tiny_sd)
    plan, cache = plan_and_cache(prompts)
    rng = random.Random(20261123)
    killed_mid_render = 0
    for attempt in range(20):
        before = whole_entries(plan, cache)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gallery", "render", "-c", str(prompts)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if attempt % 3 == 0:  # a random moment of start-up (imports, model loading, lock)
            time.sleep(rng.uniform(0.3, 3.0))
        else:  # a random moment once images are being written
            while proc.poll() is None and len(list(cache.images.rglob("*.json"))) <= len(before):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no cleanup, no finally blocks
        proc.wait()
        after = whole_entries(plan, cache)
        assert {k: after.get(k) for k in before} == before, "a finished image was rendered again"
        killed_mid_render += len(after) - len(before) > 0 and len(after) < len(plan.jobs)
        for key in cache.keys():  # noqa: SIM118 (a Cache, not a dict) every entry is whole, or it is a lone PNG that the next run replaces
            if cache.sidecar_path(key).exists():
                assert key in cache.whole_entries([key])
    assert killed_mid_render >= 5, "the kills should land while images are being written"
    before = whole_entries(plan, cache)
    assert main(["render", "-c", str(prompts)]) == 0
    after = whole_entries(plan, cache)
    assert {k: after[k] for k in before} == before and len(after) == len(plan.jobs)
    assert not list(cache.root.rglob(".tmp-*"))
    _, ref_cache = plan_and_cache(reference)
    for job in plan.jobs:
        mine = np.asarray(Image.open(cache.png_path(job.key)), dtype=int)
        theirs = np.asarray(Image.open(ref_cache.png_path(job.key)), dtype=int)
        assert np.abs(mine - theirs).max() <= 1


def test_verify_finds_broken_entries_and_the_next_build_renders_them(tmp_path, tiny_sd, capsys):
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    plan, cache = plan_and_cache(prompts)
    jobs = plan.jobs
    truncated, foreign, half, flipped = jobs[0], jobs[1], jobs[2], jobs[3]
    data = cache.png_path(truncated.key).read_bytes()
    cache.png_path(truncated.key).write_bytes(data[: len(data) // 2])
    cache.sidecar_path(foreign.key).write_bytes(cache.sidecar_path(jobs[4].key).read_bytes())
    cache.png_path(half.key).unlink()
    data = bytearray(cache.png_path(flipped.key).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    cache.png_path(flipped.key).write_bytes(bytes(data))
    capsys.readouterr()

    assert main(["verify", "-c", str(prompts)]) == 1
    out = capsys.readouterr().out
    assert "4 broken" in out and "truncated or changed" in out and "belongs to another image" in out
    assert "sidecar without its PNG" in out
    assert len(list(cache.quarantine.rglob("*"))) >= 7
    assert main(["build", "-c", str(prompts)]) == 0
    assert "render: 4 images" in capsys.readouterr().out
    assert main(["verify", "-c", str(prompts)]) == 0
    assert "8 good, 0 broken" in capsys.readouterr().out


def test_a_broken_png_is_never_published(tmp_path, tiny_sd, capsys):
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["render", "-c", str(prompts)]) == 0
    plan, cache = plan_and_cache(prompts)
    bad = plan.jobs[0]
    stat = cache.png_path(bad.key).stat()
    data = bytearray(cache.png_path(bad.key).read_bytes())
    data[-20] ^= 0xFF
    cache.png_path(bad.key).write_bytes(bytes(data))
    # its time of writing restored, as bit rot leaves it: only a hash sees it, the site stage's
    # (a changed time makes every build hash it: test_upscale.py's changed-byte test)
    os.utime(cache.png_path(bad.key), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    capsys.readouterr()
    assert main(["site", "-c", str(prompts)]) == 0
    assert "1 cached images do not match their sidecar" in capsys.readouterr().err
    site = load_config(prompts).site_dir
    published = " ".join(files_under(site))
    assert bad.key[:12] not in published and plan.jobs[1].key[:12] in published


def _patched_call(monkeypatch, change_output):
    """Make the loaded pipeline's output pass through `change_output(images)`."""
    from gallery import loading

    real_load = loading.load_pipeline

    def load(*args, **kwargs):
        pipe = real_load(*args, **kwargs)
        cls = type(pipe)

        @functools.wraps(cls.__call__)
        def call(self, *a, **kw):
            out = cls.__call__(self, *a, **kw)
            out.images = change_output(out.images, kw["prompt"])
            return out

        pipe.__class__ = type(cls.__name__, (cls,), {"__call__": call})
        return pipe

    monkeypatch.setattr(loading, "load_pipeline", load)


def test_nan_and_black_images_are_reported_and_not_cached(tmp_path, tiny_sd, monkeypatch, capsys):
    def spoil(images, prompts):
        images = images.copy()
        for i, prompt in enumerate(prompts):
            if prompt == "a cat oil painting":
                images[i, 0, 0, 0] = np.nan
            if prompt == "a dog ink drawing":
                images[i] = 0.0
        return images

    _patched_call(monkeypatch, spoil)
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err
    assert err.count("NOT cached") == 4 and "NaN" in err and "all-black" in err
    plan, cache = plan_and_cache(prompts)
    whole = cache.whole_entries(plan.keys)
    cached = {j.cell for j in plan.jobs if j.key in whole}
    assert cached == {("cat", "ink"), ("dog", "oil")}
    monkeypatch.undo()
    assert main(["build", "-c", str(prompts)]) == 0
    assert "render: 4 images" in capsys.readouterr().out


def test_disk_full_stops_cleanly_and_keeps_what_was_finished(tmp_path, tiny_sd, monkeypatch, capsys):
    import os

    real_fdopen = os.fdopen
    opened = []

    class FullDisk:
        """A file whose writes fail half-way, as on a full disk."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        opened.append(fd)
        return FullDisk(f) if len(opened) > 5 else f  # two whole entries and one PNG fit

    prompts = small_project(tmp_path, tiny_sd, "batch_size: 1")
    monkeypatch.setattr(os, "fdopen", fdopen)
    code = main(["build", "-c", str(prompts)])
    monkeypatch.undo()
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot write to the cache" in err and "No space left on device" in err and "Traceback" not in err
    plan, cache = plan_and_cache(prompts)
    assert len(cache.whole_entries(plan.keys)) == 2
    for key in cache.keys():  # noqa: SIM118 (a Cache, not a dict)
        assert not cache.sidecar_path(key).exists() or key in cache.whole_entries([key])
    assert not list(cache.root.rglob(".tmp-*"))  # the half-written temp files were removed
    assert main(["build", "-c", str(prompts)]) == 0
    assert "render: 6 images" in capsys.readouterr().out


def test_a_model_that_is_not_text_to_image_gets_one_message(tmp_path, capsys):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    model = tmp_path / "unconditional"
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(model)
    prompts = write_prompts(
        tmp_path / "project",
        f"""
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: 1}}
        axes: {{subject: {{cat: a cat}}}}
    """,
    )
    before = files_under(tmp_path / "project")
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err.strip()
    assert "DDPMPipeline" in err and "not a text-to-image pipeline" in err and len(err.splitlines()) == 1
    assert files_under(tmp_path / "project") == before


def test_an_upscaler_given_as_the_render_model_gets_one_message(tmp_path, tiny_sd_upscaler, capsys):
    prompts = write_prompts(
        tmp_path / "project",
        f"""
        render: {{model: {tiny_sd_upscaler}, steps: 2, width: 64, height: 64, samples: 1}}
        axes: {{subject: {{cat: a cat}}}}
    """,
    )
    before = files_under(tmp_path / "project")
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err.strip()
    assert "is a StableDiffusionUpscalePipeline, an upscaler, not a text-to-image pipeline" in err
    assert "upscale: {upscaler: sd-x4}" in err and len(err.splitlines()) == 1
    assert files_under(tmp_path / "project") == before


def test_prune_is_a_dry_run_until_asked(tmp_path, tiny_sd, capsys):
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["render", "-c", str(prompts)]) == 0
    prompts.write_text(prompts.read_text().replace("subject: {cat: a cat, dog: a dog}", "subject: {dog: a dog}"))
    plan, cache = plan_and_cache(prompts)
    capsys.readouterr()
    assert main(["prune", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "would remove 4 entries" in out and "MB" in out and len(cache.keys()) == 8
    assert main(["prune", "-c", str(prompts), "--delete"]) == 0
    assert "removed 4 entries" in capsys.readouterr().out
    assert cache.keys() == set(cache.whole_entries(plan.keys)) == set(plan.keys)


def test_two_processes_share_the_rendering_through_accelerate(tmp_path, tiny_sd):
    """`accelerate launch -m gallery render` on the CPU with 2 processes."""
    import json
    import os
    import shutil

    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    assert accelerate, "accelerate is a dependency"
    prompts = kill_project(tmp_path, tiny_sd, steps=3)
    result = subprocess.run(
        [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "gallery",
            "render",
            "-c",
            str(prompts),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 0 of 2" in result.stderr and "process 1 of 2" in result.stderr
    plan, cache = plan_and_cache(prompts)
    assert set(cache.whole_entries(plan.keys)) == set(plan.keys)
    processes = [json.loads(cache.sidecar_path(j.key).read_text())["made"]["process"] for j in plan.jobs]
    assert set(processes) == {"0/2", "1/2"} and min(processes.count("0/2"), processes.count("1/2")) >= 16
    assert not list(cache.root.rglob(".tmp-*"))
    for job in plan.jobs[:3]:  # a gap (a process that died) is filled by the next run
        cache.remove(job.key)
    assert main(["render", "-c", str(prompts)]) == 0
    assert set(cache.whole_entries(plan.keys)) == set(plan.keys)


def test_a_pipeline_that_makes_another_size_is_recorded_as_it_is(tmp_path, tiny_sd, monkeypatch, capsys):
    """Some families render only at sizes of their own (HunyuanDiT makes 1024x1024 when asked for
    64x64): the PNG's Size, the sidecar and the page say the size the picture is, with a warning."""
    _patched_call(monkeypatch, lambda images, prompts: np.repeat(np.repeat(np.asarray(images), 2, axis=1), 2, axis=2))
    prompts = small_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    err = capsys.readouterr().err
    assert "StableDiffusionPipeline made 128x128 pictures when asked for 64x64" in err
    plan, cache = plan_and_cache(prompts)
    job = plan.jobs[0]
    assert "Size: 128x128," in read_parameters(cache.png_path(job.key).read_bytes())
    assert job.recipe["width"] == 64  # the key keeps what was asked: the same ask makes the same picture
    cell = cell_of(load_config(prompts).site_dir, "tiny-test", "/".join(job.cell))
    assert cell["full_size"] == [128, 128] and (cell["settings"]["width"], cell["settings"]["height"]) == (128, 128)
