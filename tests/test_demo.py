"""The demo model (demo/model): its gallery, built in batches, follows the prompts.

Every image of the demo matrix is judged by the definitions the model was trained on
(demo/shapes.py): the prompted colour must be the dominant one in at least 90% of images, and
the shape classifier (trained on the drawings, demo/shape_classifier.safetensors) must name
the prompted shape in at least 80%.
"""

import json
import random
import sys
from collections import Counter

import pytest
from PIL import Image

from conftest import REPO
from gallery.cache import Cache
from gallery.cli import main
from gallery.metadata import read_parameters
from gallery.project import open_project

sys.path.insert(0, str(REPO / "demo"))
import shapes

DEMO = REPO / "demo"
CLASSIFIER = DEMO / "shape_classifier.safetensors"


def judge(images: list[Image.Image], colours: list[str], subjects: list[str]) -> tuple[float, float, list[str]]:
    """(colour hit rate, shape hit rate, what was seen instead) for pictures and what they should show."""
    seen_shapes = shapes.ShapeClassifier(str(CLASSIFIER)).predict(images)
    seen_colours = [shapes.dominant_colour(im) for im in images]
    misses = [
        f"{c} {s}: saw {sc} {ss}"
        for c, s, sc, ss in zip(colours, subjects, seen_colours, seen_shapes, strict=True)
        if (sc, ss) != (c, s)
    ]
    colour_rate = sum(a == b for a, b in zip(seen_colours, colours, strict=True)) / len(images)
    shape_rate = sum(a == b for a, b in zip(seen_shapes, subjects, strict=True)) / len(images)
    return colour_rate, shape_rate, misses


def test_the_judges_know_the_drawings_and_catch_wrong_labels():
    rng = random.Random(7)
    labels = [shapes.sample_labels(rng) for _ in range(300)]
    drawings = [shapes.draw(*label, rng) for label in labels]
    colour_rate, shape_rate, _ = judge(drawings, [label[1] for label in labels], [label[0] for label in labels])
    assert colour_rate >= 0.99 and shape_rate >= 0.97
    # the same pictures with their labels shuffled fail: the checks can tell
    shuffled = labels[1:] + labels[:1]
    colour_rate, shape_rate, _ = judge(drawings, [label[1] for label in shuffled], [label[0] for label in shuffled])
    assert colour_rate < 0.4 and shape_rate < 0.4


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    """The demo gallery as committed, built once with the CLI (its cache and site in a temp folder)."""
    folder = tmp_path_factory.mktemp("demo")
    text = (DEMO / "prompts.yaml").read_text(encoding="utf-8")
    assert "model: ./model" in text
    (folder / "prompts.yaml").write_text(text.replace("model: ./model", f"model: {DEMO / 'model'}"), encoding="utf-8")
    prompts = folder / "prompts.yaml"
    assert main(["build", "-c", str(prompts)]) == 0
    plan = open_project(prompts).plan
    return plan.config, plan


def test_demo_gallery_follows_its_prompts(demo_build, capsys):
    config, plan = demo_build
    assert config.runtime.batch_size > 1  # the checks below are on a batched build
    assert len(plan.jobs) == 360
    cache = Cache(config.cache_dir)
    images, colours, subjects = [], [], []
    for job in plan.jobs:
        subject, colour, style = job.cell
        png = cache.png_path(job.key)
        # the right prompt went with the right picture into the cell's entry
        assert read_parameters(png.read_bytes()).startswith(f"a {colour} {subject}, {style}\n")
        images.append(Image.open(png).convert("RGB"))
        colours.append(colour)
        subjects.append(subject)
    colour_rate, shape_rate, misses = judge(images, colours, subjects)
    report = f"colour {colour_rate:.1%}, shape {shape_rate:.1%}; most missed: {Counter(misses).most_common(8)}"
    print(report)
    assert colour_rate >= 0.90, report
    assert shape_rate >= 0.80, report


def test_demo_page_shows_each_cell_its_own_images(demo_build):
    config, _ = demo_build
    manifest = json.loads((config.site_dir / "assets/img/shapes-demo/manifest.json").read_text())
    assert manifest["default"] == ["triangle", "orange", "striped"]
    cell = json.loads((config.site_dir / manifest["cells"]["triangle/red/striped"]).read_text())
    assert cell["prompt"] == "a red triangle, striped" and len(cell["images"]) == 4
    full = Image.open(config.site_dir / cell["images"][0]["full"])
    assert full.size == (256, 256)  # the 4x Lanczos step
    assert shapes.dominant_colour(full) == "red"


def test_demo_model_is_small_and_plain_safetensors():
    files = [p for p in (DEMO / "model").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20 * 1024 * 1024
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    index = json.loads((DEMO / "model/model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert (DEMO / "model/README.md").is_file()
