"""`gallery sheet`: the grid picture's pixels (each tile is its cached render, scaled; each label
by its row or column; placeholders for what is not rendered), its size within the formats'
limits (scaled or split), its `parameters` text, and its errors. Cached renders are stand-ins
stored through the cache API (tests/fake_cache.py): no model runs."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import write_prompts
from fake_cache import put_fake
from gallery import sheet
from gallery.cli import main
from gallery.project import open_project
from gallery.sheet import BACKGROUND, PLACEHOLDER, Request, arrange, read_parameters

PROMPTS = """
    prompt: "{subject}, {style}, {colour}"
    render: {model: hub/x, samples: 2, seed: 7, width: 96, height: 64, steps: 20, guidance: 6}
    axes:
      subject:
        cat: a cat
        dog: {label: "Dög, a very long label that has to wrap over several lines of its band", prompt: a dog}
        bird: bird
      style:
        oil: {label: "Oil painting, thick impasto, after Van Gogh and his friends in Arles", prompt: oil}
        ink: ink
        zen: zen
      colour: {red: Red, blue: Blue}
"""
MISSING = 2  # the job left out of the cache: a placeholder tile


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project, its cache filled with noise pictures (Lanczos shows in every pixel) but one."""
    prompts = write_prompts(tmp_path_factory.mktemp("sheet"), PROMPTS)
    project = open_project(prompts)
    for n, job in enumerate(project.plan.jobs):
        if n != MISSING:
            pixels = np.random.default_rng(n).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            put_fake(project.cache, job, Image.fromarray(pixels))
    return project


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def ink(region: np.ndarray) -> np.ndarray:
    """Where a region holds anything but the background (text, pictures)."""
    return np.any(region != BACKGROUND, axis=-1)


def crop(image: np.ndarray, box) -> np.ndarray:
    left, top, right, bottom = box
    return image[top:bottom, left:right]


def sheet_of(project, tmp_path, name="sheet.png", **request):
    request = {"rows": "subject", "cols": "style", "sample": 1, **request}
    return sheet.make_sheet(project.plan, project.cache, Request(**request), tmp_path / name)


def test_tiles_are_the_cached_renders_scaled_and_labels_sit_by_their_row_and_column(project, tmp_path):
    report = sheet_of(project, tmp_path, tile=72, where=("colour=blue",))
    [(path, page)] = report.files
    image = pixels(path)
    assert image.shape == (page.size[1], page.size[0], 3) and report.how == "whole" and report.tile == 72
    plan, cache = project.plan, project.cache
    blue = [job for job in plan.jobs if job.cell[2] == "blue" and job.sample == 0]
    assert [job for job, _ in page.tiles] == blue  # rows x columns, the fixed option, sample 1
    for job, box in page.tiles:
        tile = crop(image, box)
        assert tile.shape == (48, 72, 3)  # 96 x 64 scaled to a 72 px long side
        if job is plan.jobs[MISSING]:
            assert np.mean(np.all(tile == PLACEHOLDER, axis=-1)) > 0.6 and np.any(tile.sum(-1) < 400)
        else:
            with Image.open(cache.png_path(job.key)) as source:
                expected = source.convert("RGB").resize((72, 48), Image.Resampling.LANCZOS)
            assert np.array_equal(tile, np.asarray(expected))
    assert plan.jobs[MISSING] in [job for job, _ in page.tiles]
    # between the tiles: background only
    (_, y0, x1, y1), (x2, _, _, _) = page.tiles[0][1], page.tiles[1][1]
    assert not ink(image[y0:y1, x1:x2]).any() and x2 > x1

    # each column's label over its column, and only there; the long one wraps to more lines
    band_top, band_bottom = page.col_labels[0][1], page.col_labels[0][3]
    band = ink(image[band_top:band_bottom])
    columns = np.flatnonzero(band.any(axis=0))
    spans = [(left, right) for left, _, right, _ in page.col_labels]
    assert all(any(left <= x < right for left, right in spans) for x in columns)
    heights = []
    for box in page.col_labels:
        lines = np.flatnonzero(ink(crop(image, box)).any(axis=1))
        assert lines.size, "a column label is drawn"
        heights.append(lines[-1] - lines[0])
    assert heights[0] > 2 * max(heights[1:])  # "Oil painting ..." wraps; "ink", "zen" do not
    # each row's label beside its row, left of the tiles
    assert page.row_labels and all(box[2] <= page.tiles[0][1][0] for box in page.row_labels)
    heights = []
    for box in page.row_labels:
        lines = np.flatnonzero(ink(crop(image, box)).any(axis=1))
        assert lines.size and lines[0] > 0 and lines[-1] < box[3] - box[1] - 1  # within its row
        heights.append(lines[-1] - lines[0])
    assert heights[1] > 2 * max(heights[0], heights[2])  # the dog's long label wraps (to the row's height)
    # the title above: ink, and nothing between it and the labels but background
    assert ink(crop(image, page.title)).any()


def test_all_samples_make_a_block_per_cell(project, tmp_path):
    report = sheet_of(project, tmp_path, sample=None, tile=32, where=("colour=blue",))
    [(path, page)] = report.files
    assert len(page.tiles) == 3 * 3 * 2 and report.images == 18 and report.missing == 1
    image = pixels(path)
    (a, b) = page.tiles[0][1], page.tiles[1][1]
    assert b[0] - a[2] < page.tiles[2][1][0] - b[2]  # samples sit closer than cells
    for job, box in page.tiles[1:4]:  # the first is not rendered
        with Image.open(project.cache.png_path(job.key)) as source:
            expected = source.convert("RGB").resize((32, 21), Image.Resampling.LANCZOS)
        assert np.array_equal(crop(image, box)[:21], np.asarray(expected))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_the_parameters_text_names_the_grid(project, tmp_path, suffix):
    report = sheet_of(project, tmp_path, name=f"sheet{suffix}", cols="colour", where=("style=ink",), tile=24)
    [(path, _)] = report.files
    with Image.open(path) as image:
        assert image.format == {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP"}[suffix]
        if suffix == ".png":
            text = image.text["parameters"]
        else:  # EXIF UserComment, as AUTOMATIC1111 writes it: "UNICODE\0" and UTF-16 big-endian
            comment = image.getexif().get_ifd(0x8769)[0x9286]
            assert comment.startswith(b"UNICODE\0")
            text = comment[8:].decode("utf-16-be")
    assert text == read_parameters(path)
    prompt, settings = text.split("\n")
    assert prompt == "a cat, ink, Red"
    for field in (
        "Steps: 20",
        "CFG scale: 6",
        "Size: 96x64",
        "Model: hub/x",
        "Seed: 7",
        "Script: X/Y plot",
        "X Type: Colour",
        'X Values: "Red, Blue"',
        "Y Type: Subject",
        'Fixed: "Style: ink"',
    ):
        assert field in settings
    assert "Dög" in settings  # the rows' labels, as written


def test_the_parameters_are_read_by_sd_parsers(project, tmp_path):
    sd_parsers = pytest.importorskip("sd_parsers")
    for suffix in (".png", ".jpg", ".webp"):
        [(path, _)] = sheet_of(project, tmp_path, name=f"s{suffix}", tile=24).files
        with Image.open(path) as image:
            found = sd_parsers.ParserManager().parse(image)
        assert found is not None and found.generator.name == "AUTOMATIC1111", suffix
        assert found.full_prompt == "a cat, oil, Red" and found.metadata["Script"] == "X/Y plot"


def test_a_large_matrix_is_scaled_within_the_limits(tmp_path):
    options = "\n".join(f"    o{n}: option number {n}" for n in range(120))
    prompts = write_prompts(
        tmp_path,
        f"render: {{model: hub/x, samples: 1, width: 512, height: 512}}\naxes:\n  a:\n{options}\n  b:\n{options}\n",
    )
    project = open_project(prompts, any_size=True)
    request = Request(rows="a", cols="b", sample=1)
    for fmt, side in (("WEBP", 16383), ("JPEG", 65535), ("PNG", 2**31 - 1)):
        laid = arrange(project.plan, project.cache, request, fmt)
        [page] = laid.pages
        width, height = page.size
        assert laid.how == "scaled" and 64 <= laid.layout.tile < 512 and laid.asked == 512
        assert width <= side and height <= side and width * height <= Image.MAX_IMAGE_PIXELS == sheet.BOMB_PIXELS
        assert "decompression-bomb" in laid.limit or "side" in laid.limit
        assert len(page.tiles) == 120 * 120
        # and not smaller than it must be: one pixel more a tile would pass a limit
        bigger = Request(rows="a", cols="b", sample=1, tile=laid.layout.tile + 1)
        assert arrange(project.plan, project.cache, bigger, fmt).how != "whole"
    assert "WebP's 16,383 px side" in arrange(project.plan, project.cache, request, "WEBP").limit

    # split: every cell once, at the size asked, each page within WebP's limits
    laid = arrange(project.plan, project.cache, Request(rows="a", cols="b", sample=1, fit="split"), "WEBP")
    assert laid.how == "split" and laid.layout.tile == 512 and len(laid.pages) > 1
    assert all(max(p.size) <= 16383 and p.size[0] * p.size[1] <= sheet.BOMB_PIXELS for p in laid.pages)
    shown = [job.key for p in laid.pages for job, _ in p.tiles]
    assert sorted(shown) == sorted(job.key for job in project.plan.jobs)


def test_a_sheet_too_large_is_scaled_or_split_when_drawn(project, tmp_path, monkeypatch):
    monkeypatch.setitem(sheet.MAX_SIDE, "PNG", 360)  # small limits: the same code paths, drawn fast
    scaled = sheet_of(project, tmp_path, name="scaled.png", tile=96)
    [(path, page)] = scaled.files
    assert scaled.how == "scaled" and 64 <= scaled.tile < 96 and max(page.size) <= 360
    with Image.open(path) as image:
        assert max(image.size) <= 360
    monkeypatch.setattr(sheet, "MIN_TILE", 90)
    split = sheet_of(project, tmp_path, name="split.png", tile=96)
    assert split.how == "split" and split.tile == 90 and len(split.files) > 1
    names = [path.name for path, _ in split.files]
    assert names == [f"split-{n}.png" for n in range(1, len(names) + 1)]
    shown = []
    for path, page in split.files:
        with Image.open(path) as image:
            assert max(image.size) <= 360 and image.size == page.size
        assert read_parameters(path) == read_parameters(tmp_path / "scaled.png")
        assert page.col_labels and page.row_labels  # every page labelled
        shown += [job for job, _ in page.tiles]
    assert sorted(j.key for j in shown) == sorted(
        j.key for j in project.plan.jobs if j.sample == 0 and j.cell[2] == "red"
    )
    assert not list(tmp_path.glob(".tmp-*"))  # written through temp files, none left


def test_the_command_says_what_it_did(project, tmp_path, capsys, monkeypatch):
    out = tmp_path / "grid.webp"
    args = ["sheet", "-c", str(project.config.source), "--rows", "subject", "--cols", "style", "-o", str(out)]
    assert main(args + ["--samples", "all", "--where", "colour=blue"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and "3 rows x 3 columns" in said and "nothing scaled or split" in said
    assert "1 not rendered yet" in said
    monkeypatch.setitem(sheet.MAX_SIDE, "WEBP", 380)  # as a large matrix would, drawn fast
    assert main(args + ["--sample", "2", "--fit", "split"]) == 0
    said = capsys.readouterr().out
    assert "split into 4 files, tiles at 96 px, as one file would pass WebP's 380 px side" in said
    assert all(f"wrote {tmp_path / f'grid-{n}.webp'}: " in said for n in range(1, 5))
    assert "2 rows x 2 columns" in said and "1 row x 1 column" in said


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "nope", "--cols", "style"], "--rows nope: no such axis; the axes are subject, style, colour"),
        (["--rows", "style", "--cols", "style"], "--rows and --cols both name style"),
        (["--cols", "style", "--where", "colour=green"], "colour has no option 'green'; its options: red, blue"),
        (["--cols", "style", "--where", "colour"], "write AXIS=OPTION, e.g. --where colour=red"),
        (["--cols", "style", "--where", "style=oil"], "style is the sheet's columns"),
        (["--cols", "style", "--where", "size=big"], "--where size: no such axis"),
        (["--cols", "style", "--sample", "3"], "the cells have 2 samples (1 to 2)"),
        (["--cols", "style", "-o", "{dir}/grid.gif"], "must end in .png, .jpg (.jpeg) or .webp"),
    ],
)
def test_mistakes_are_one_message_and_exit_2(project, tmp_path, capsys, args, message):
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "grid.png")]
    capsys.readouterr()
    assert main(["sheet", "-c", str(project.config.source), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sheet: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_font_ships_with_a_dependency_and_says_what_it_cannot_draw(project, tmp_path, monkeypatch):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib (the sheet extra, in the test extra) is not installed: DejaVu Sans is not here")
    report = sheet_of(project, tmp_path, tile=24)
    assert report.font.startswith("DejaVu Sans") and report.unshown == ""  # "Dög" drawn
    font = sheet.load_font(None)[0](40)
    assert font.getbbox("Dög")[3] > sheet.load_font(None)[0](12).getbbox("Dög")[3] * 2  # it scales
    assert sheet.unshown_characters(font, "Dalí Жя שלום 猫") == "猫"

    monkeypatch.setattr(sheet, "DEJAVU", ("no-such-font.ttf",))  # without matplotlib: Pillow's own
    report = sheet_of(project, tmp_path, name="plain.png", tile=24)
    assert report.font.startswith("Aileron") and report.unshown == "ö"


def test_the_sheet_imports_no_torch(project, tmp_path):
    code = (
        "import sys; from gallery.cli import main; "
        "rc = main(['sheet', '-c', sys.argv[1], '--cols', 'style', '--tile', '24', '-o', sys.argv[2]]); "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'matplotlib') if m in sys.modules]; "
        "print('heavy:', heavy); sys.exit(rc)"
    )
    args = [sys.executable, "-c", code, str(project.config.source), str(tmp_path / "row.png")]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    assert "heavy: []" in result.stdout and (tmp_path / "row.png").is_file()
