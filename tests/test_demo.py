"""The demo model (demo/model): its gallery, built in batches, follows the prompts.

Every image of the demo matrix is judged by the definitions the model was trained on
(demo/shapes.py): the prompted colour must be the dominant one in at least 90% of images, and
the shape classifier (trained on the drawings, demo/shape_classifier.safetensors) must name
the prompted shape in at least 80%.
"""

import json
import random
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from gallery.cache import Cache
from gallery.cli import main
from gallery.manifest import cell_files
from gallery.metadata import read_parameters
from gallery.ownership import RECORD_DIR as RECORDS
from gallery.project import open_project
from test_site import jekyll_build, needs_jekyll

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
    """The demo gallery as committed, built once with the CLI as `make demo` builds it, in a copy of
    the repository's layout (ROOT/demo/prompts.yaml writing ROOT/site) in a temp folder."""
    folder = tmp_path_factory.mktemp("repo") / "demo"
    folder.mkdir()
    text = (DEMO / "prompts.yaml").read_text(encoding="utf-8")
    assert "model: ./model" in text and "site: ../site" in text
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
    cell = json.loads((config.site_dir / cell_files(config.site_dir, manifest)["triangle/red/striped"]).read_text())
    assert cell["prompt"] == "a red triangle, striped" and len(cell["images"]) == 4
    full = Image.open(config.site_dir / cell["images"][0]["full"])
    assert full.size == (256, 256)  # the 4x Lanczos step
    assert shapes.dominant_colour(full) == "red"


DEMO_SLUG = "shapes-demo"
NOT_SITE = {"_site", ".jekyll-cache", ".jekyll-metadata", ".sass-cache", "lock"}  # git-ignored there


def site_files(site: Path) -> set[str]:
    return {
        p.relative_to(site).as_posix()
        for p in site.rglob("*")
        if p.is_file() and not NOT_SITE.intersection(p.relative_to(site).parts)
    }


def differences(fresh: Path, committed: Path) -> list[str]:
    """How `committed` differs from `fresh` (a site `make demo` just made): files missing or extra,
    text that differs, images of another size (not their bytes, which differ between CPUs; nor the
    record's byte counts of them). Other galleries built into it (your prompts.yaml's, by `make
    build`) are left out, with the files they share with the demo (they write the same ones, or own
    the site's settings)."""
    others = {
        rel
        for record in (committed / RECORDS).glob("*.json")
        if record.stem != DEMO_SLUG
        for rel in [f"{RECORDS}/{record.name}", *json.loads(record.read_text(encoding="utf-8"))["files"]]
    }

    def comparable(site: Path, rel: str):
        path = site / rel
        if rel.endswith(".webp"):
            with Image.open(path) as image:
                return image.format, image.size
        if rel == f"{RECORDS}/{DEMO_SLUG}.json":
            record = json.loads(path.read_text(encoding="utf-8"))
            files = record["files"].items()
            record["files"] = {f: None if f.endswith(".webp") else n for f, n in files if f not in others}
            return record
        return path.read_text(encoding="utf-8")

    made, found = site_files(fresh) - others, site_files(committed) - others
    problems = [f"not in site/: {rel}" for rel in sorted(made - found)]
    problems += [f"not made by make demo: {rel}" for rel in sorted(found - made)]
    return problems + [
        f"differs: {rel}" for rel in sorted(made & found) if comparable(fresh, rel) != comparable(committed, rel)
    ]


def test_the_committed_site_is_what_make_demo_makes(demo_build):
    """site/ (committed, published by .github/workflows/pages.yml) holds the demo gallery as the
    code makes it now, so it cannot go stale."""
    config, _ = demo_build
    fresh, committed = config.site_dir, REPO / "site"
    assert fresh == config.source.resolve().parent.parent / "site", fresh  # demo/prompts.yaml writes ../site
    if not (committed / RECORDS / f"{DEMO_SLUG}.json").is_file():
        assert list((committed / RECORDS).glob("*.json")), "site/ has no gallery: run `make demo` and commit site/"
        pytest.skip("site/ holds your galleries, and the demo was taken out of it: nothing to compare")
    assert len(site_files(fresh)) > 1000
    problems = differences(fresh, committed)
    assert not problems, (
        f"site/ is not what `make demo` makes now ({len(problems)} differences: {', '.join(problems[:8])}); "
        "run `make demo` and commit site/"
    )


def test_the_site_comparison_sees_text_and_files_not_image_bytes_or_other_galleries(tmp_path):
    """The committed site against a changed copy of itself: what `make demo` on another CPU or
    `make build` of your own gallery change passes, a stale file does not."""
    site = REPO / "site"
    copy = shutil.copytree(site, tmp_path / "site", ignore=shutil.ignore_patterns(*NOT_SITE))
    record_path = copy / RECORDS / f"{DEMO_SLUG}.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    thumb = next(rel for rel in record["files"] if rel.endswith("-thumb.webp"))
    with Image.open(copy / thumb) as image:  # other bytes, as another CPU's render makes them
        image.convert("RGB").save(copy / thumb, format="WEBP", quality=10)
    record["files"][thumb] = (copy / thumb).stat().st_size
    # your own gallery beside it, whose prompts.yaml owns the site's settings (and _config.yml)
    del record["files"]["_config.yml"]
    record_path.write_text(json.dumps(record), encoding="utf-8")
    (copy / "_projects/mine.md").write_text("---\ntitle: Mine\n---\n", encoding="utf-8")
    (copy / "_config.yml").write_text("title: Mine\n", encoding="utf-8")
    mine = {"slug": "mine", "config": "../prompts.yaml", "files": {"_projects/mine.md": 20, "_config.yml": 12}}
    (copy / RECORDS / "mine.json").write_text(json.dumps(mine), encoding="utf-8")
    assert differences(site, copy) == []

    stale = "assets/js/prompt-gallery.js"  # a template changed since the site was made
    (copy / stale).write_text((copy / stale).read_text(encoding="utf-8") + "// old\n", encoding="utf-8")
    full = thumb.replace("-thumb.webp", "-full.webp")
    (copy / full).unlink()
    (copy / "assets/img/shapes-demo/left-over.json").write_text("{}", encoding="utf-8")
    assert differences(site, copy) == [
        f"not in site/: {full}",
        "not made by make demo: assets/img/shapes-demo/left-over.json",
        f"differs: {stale}",
    ]


@needs_jekyll
def test_the_committed_site_builds_with_jekyll_and_its_index_lists_the_demo(tmp_path):
    """What .github/workflows/pages.yml publishes, on a project site (baseurl /repo): the index
    links the demo gallery by its title, and every local URL on the gallery's page resolves."""
    source = shutil.copytree(REPO / "site", tmp_path / "site", ignore=shutil.ignore_patterns(*NOT_SITE))
    dest = tmp_path / "repo"
    result = jekyll_build(source, dest, "/repo")
    assert result.returncode == 0, result.stdout + result.stderr
    index = (dest / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<a href="/repo/projects/shapes-demo/">.*?<h2 class="card-title">Shapes</h2>', index, re.S)
    page = (dest / "projects/shapes-demo/index.html").read_text(encoding="utf-8")
    urls = re.findall(r'(?:src|href|data-manifest|data-root)="(/[^"]*)"', page)
    assert len(urls) > 10
    for url in urls:
        assert url.startswith("/repo/"), url
        target = dest / url.removeprefix("/repo/")
        assert target.is_file() or (target / "index.html").is_file(), url


def test_demo_model_is_small_and_plain_safetensors():
    files = [p for p in (DEMO / "model").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20 * 1024 * 1024
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    index = json.loads((DEMO / "model/model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert (DEMO / "model/README.md").is_file()
