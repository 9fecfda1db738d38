"""`gallery sheet`: one labelled grid picture of cached renders, like AUTOMATIC1111's X/Y plot.

Two axes make the rows and the columns; every other axis keeps one option (chosen, or the page's
default cell). Each cell shows one sample, or all of them in a small block. The renders are
scaled into tiles; a render not made yet is a grey tile that says so. Above the grid: a title
naming the axes, the fixed options and the settings the cells share; beside it, each row's and
each column's label, wrapped. The file carries the same in a `parameters` text (PNG text chunk,
or EXIF UserComment in JPEG and WebP, as AUTOMATIC1111 writes them).

A picture must stay within what its readers open: WebP's 16383 px side, JPEG's 65535 px side,
and Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS, 89,478,485 px) for every format.
A sheet that would not fit is scaled down (its tiles, down to MIN_TILE px) or split into several
files (fit="split", or when even MIN_TILE px tiles do not fit); the report says which.
"""

from __future__ import annotations

import importlib.util
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from gallery import metadata
from gallery.cache import Cache
from gallery.config import Axis, Option
from gallery.errors import UsageError
from gallery.fsutil import atomic_write_bytes
from gallery.manifest import settings_of
from gallery.plan import Cell, Job, Plan

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
MAX_SIDE = {"PNG": 2**31 - 1, "JPEG": 65535, "WEBP": 16383}
LIMIT_NAMES = {"PNG": "PNG's", "JPEG": "JPEG's", "WEBP": "WebP's"}
BOMB_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS: opening a larger picture warns (twice that: refused)
MIN_TILE = 64  # scaling stops here; a sheet that still does not fit is split
MAX_LABEL_LINES = 4  # a longer label ends in an ellipsis
MAX_TITLE_LINES = 8
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
PLACEHOLDER = (224, 224, 224)
PLACEHOLDER_INK = (96, 96, 96)
NOT_RENDERED = "not rendered yet"
# DejaVu Sans, which matplotlib ships (the `sheet` extra): Latin, Greek, Cyrillic, Hebrew, Arabic ...
DEJAVU = ("mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
GLUE = "\u00a0"  # in a title: a space that wrap() does not break at (drawn as a space)
SPACES = re.compile(r"[^\S\u00a0]+")  # where wrap() may break: any white space but GLUE
MAX_PARAMETERS = 20_000  # characters; JPEG's EXIF segment holds 64 KiB, UTF-16 takes two bytes each


@dataclass(frozen=True)
class Request:
    """What `gallery sheet` was asked for; names as given on the command line, checked by `choose`."""

    rows: str | None  # an axis name; None: one row
    cols: str
    sample: int | None  # from 1; None: every sample
    where: tuple[str, ...] = ()  # AXIS=OPTION
    tile: int | None = None  # the long side of a tile in px; None: the renders' own size
    fit: str = "scale"  # "scale" or "split"
    font: Path | None = None


@dataclass(frozen=True)
class Selection:
    """The grid: which axes, which options of the others, which samples."""

    rows: Axis | None
    cols: Axis
    fixed: tuple[tuple[Axis, Option], ...]  # every other axis, in axis order
    samples: tuple[int, ...]  # 0-based
    axes: tuple[Axis, ...]  # all of them, in order
    cells: dict[tuple[str, ...], Cell] = field(repr=False, compare=False)  # the plan's, by their options

    def cell(self, row: Option | None, col: Option) -> Cell:
        chosen = {axis.name: option.key for axis, option in self.fixed}
        chosen[self.cols.name] = col.key
        if self.rows and row:
            chosen[self.rows.name] = row.key
        return self.cells[tuple(chosen[axis.name] for axis in self.axes)]


@dataclass
class Page:
    """One file of a sheet: its rows and columns, and where everything is drawn."""

    rows: Sequence[Option | None]
    cols: Sequence[Option]
    size: tuple[int, int] = (0, 0)
    title: tuple[int, int, int, int] = (0, 0, 0, 0)  # boxes: left, top, right, bottom
    col_labels: list[tuple[int, int, int, int]] = field(default_factory=list)
    row_labels: list[tuple[int, int, int, int]] = field(default_factory=list)
    tiles: list[tuple[Job, tuple[int, int, int, int]]] = field(default_factory=list)


@dataclass
class Report:
    files: list[tuple[Path, Page]]
    tile: int  # the long side of a tile, as drawn
    asked_tile: int
    how: str  # "whole", "scaled" or "split"
    limit: str  # what made it scale or split ("" when whole)
    images: int
    missing: int
    font: str
    unshown: str  # characters of the labels and title that the font has no glyph for


def choose(plan: Plan, request: Request) -> Selection:
    """The request checked against the plan; each mistake is one UsageError (exit 2)."""
    axes = {axis.name: axis for axis in plan.config.axes}
    names = ", ".join(axes)

    def axis(flag: str, name: str) -> Axis:
        if name not in axes:
            raise UsageError(f"sheet: {flag} {name}: no such axis; the axes are {names}")
        return axes[name]

    cols = axis("--cols", request.cols)
    rows = axis("--rows", request.rows) if request.rows is not None else None
    if rows is cols:
        raise UsageError(f"sheet: --rows and --cols both name {cols.name}; give two different axes ({names})")
    chosen = dict(zip(axes, plan.config.page.default, strict=True))
    for given in request.where:
        name, sep, key = given.partition("=")
        if not sep:
            example = axes.get(name.strip(), plan.config.axes[-1])
            raise UsageError(
                f"sheet: --where {given}: write AXIS=OPTION, e.g. --where {example.name}={example.options[0].key}"
            )
        where = axis("--where", name.strip())
        if where in (rows, cols):
            raise UsageError(
                f"sheet: --where {given}: {where.name} is the sheet's {'rows' if where is rows else 'columns'}"
            )
        if key.strip() not in {o.key for o in where.options}:
            keys = ", ".join(o.key for o in where.options)
            raise UsageError(f"sheet: --where {given}: {where.name} has no option {key.strip()!r}; its options: {keys}")
        chosen[where.name] = key.strip()
    fixed = tuple((a, a.option(chosen[a.name])) for a in plan.config.axes if a not in (rows, cols))
    samples = plan.config.runtime.samples
    if request.sample is None:
        picked = tuple(range(samples))
    elif 1 <= request.sample <= samples:
        picked = (request.sample - 1,)
    else:
        raise UsageError(f"sheet: --sample {request.sample}: the cells have {samples} samples (1 to {samples})")
    if request.tile is not None and request.tile < 16:
        raise UsageError(f"sheet: --tile {request.tile}: give 16 px or more")
    return Selection(rows, cols, fixed, picked, plan.config.axes, {cell.keys: cell for cell in plan.cells})


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"sheet: -o {path}: the file must end in .png, .jpg (.jpeg) or .webp")
    return fmt


def load_font(path: Path | None) -> tuple[Callable[[int], ImageFont.FreeTypeFont | ImageFont.ImageFont], str]:
    """(size -> font, its name): the file given, else DejaVu Sans from matplotlib where it is
    installed (found without importing it), else Pillow's own (Aileron: ASCII only)."""
    if path is not None:
        try:
            ImageFont.truetype(str(path), 12)
        except OSError as err:
            raise UsageError(f"sheet: --font {path}: not a font file Pillow reads ({err})") from None
        return (lambda size: ImageFont.truetype(str(path), size)), path.name
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        dejavu = str(Path(folder).joinpath(*DEJAVU))
        if Path(dejavu).is_file():
            return (lambda size, file=dejavu: ImageFont.truetype(file, size)), "DejaVu Sans (matplotlib's)"
    return (lambda size: ImageFont.load_default(size=size)), "Aileron (Pillow's built-in font: ASCII only)"


def unshown_characters(font, text: str) -> str:
    """The characters of `text` that `font` has no glyph for (drawn as its empty box)."""

    def drawn(c: str) -> bytes:
        size = max(8, int(getattr(font, "size", 12)) * 2)
        image = Image.new("L", (size, size))
        ImageDraw.Draw(image).text((0, 0), c, font=font, fill=255)
        return image.tobytes()

    box = drawn("\uffff")
    return "".join(sorted(c for c in set(text) if not c.isspace() and c.isprintable() and drawn(c) == box))


def wrap(text: str, font, width: float, max_lines: int) -> list[str]:
    """`text` in lines no wider than `width`, broken at spaces (GLUE joins words without a break;
    a word too long for a line is broken anywhere), at most
    `max_lines`, the last ending in an ellipsis where text was left out."""
    lines: list[str] = []
    line = ""
    for word in (w.replace(GLUE, " ") for w in SPACES.split(text) if w):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width and len(lines) <= max_lines:
            cut = _fitting_prefix(word, font, width)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
        if len(lines) > max_lines:
            break
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines = lines[: max_lines - 1] + [last.rstrip() + "…"]
    return lines or [""]


def _fitting_prefix(word: str, font, width: float) -> int:
    lo, hi = 1, len(word)  # at least one character a line
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(word[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Layout:
    """Where everything goes at one tile size; the label bands are sized for every row and column
    label, so the pages of a split sheet line up."""

    def __init__(self, selection: Selection, base: tuple[int, int], tile: int, font_of, title: str):
        self.selection, self.title_text = selection, title
        bw, bh = base
        self.tile = tile
        self.tw, self.th = max(1, round(bw * tile / max(bw, bh))), max(1, round(bh * tile / max(bw, bh)))
        self.font_size = min(64, max(12, round(tile / 12)))
        self.font = font_of(self.font_size)
        ascent, descent = self.font.getmetrics()
        self.line_h = ascent + descent + max(1, self.font_size // 5)
        self.pad = max(2, self.font_size // 2)
        self.gap = max(4, tile // 24)
        n = len(selection.samples)
        self.sub_cols = math.ceil(math.sqrt(n))
        self.sub_rows = math.ceil(n / self.sub_cols)
        self.sub_gap = max(1, self.gap // 4)
        self.cell_w = self.sub_cols * self.tw + (self.sub_cols - 1) * self.sub_gap
        self.cell_h = self.sub_rows * self.th + (self.sub_rows - 1) * self.sub_gap
        cols = selection.cols.options
        self.col_lines = {o.key: wrap(o.label, self.font, self.cell_w - 2, MAX_LABEL_LINES) for o in cols}
        self.col_band = max(len(lines) for lines in self.col_lines.values()) * self.line_h + 2 * self.pad
        self.row_band = 0
        self.row_lines: dict[str, list[str]] = {}
        if selection.rows:
            rows = selection.rows.options
            natural = max(self.font.getlength(o.label) for o in rows) + 2 * self.pad
            self.row_band = int(min(natural, max(self.cell_w, 8 * self.font_size)))
            fit_lines = max(1, min(MAX_LABEL_LINES, self.cell_h // self.line_h))  # within the row's height
            self.row_lines = {o.key: wrap(o.label, self.font, self.row_band - 2 * self.pad, fit_lines) for o in rows}
            self.row_band = max(
                self.row_band,
                int(max(self.font.getlength(t) for v in self.row_lines.values() for t in v)) + 2 * self.pad,
            )

    def width(self, ncols: int) -> int:
        return self.row_band + self.gap + ncols * (self.cell_w + self.gap)

    def title_lines(self, width: int) -> list[str]:
        return wrap(self.title_text, self.font, width - 2 * self.pad, MAX_TITLE_LINES)

    def size(self, nrows: int, ncols: int) -> tuple[int, int]:
        width = self.width(ncols)
        title_h = len(self.title_lines(width)) * self.line_h + 2 * self.pad
        return width, title_h + self.col_band + nrows * (self.cell_h + self.gap)

    def page(self, rows: Sequence[Option | None], cols: Sequence[Option]) -> Page:
        page = Page(rows, cols, self.size(len(rows), len(cols)))
        width = page.size[0]
        title_h = len(self.title_lines(width)) * self.line_h + 2 * self.pad
        page.title = (0, 0, width, title_h)
        x0, y0 = self.row_band + self.gap, title_h + self.col_band
        for j, _ in enumerate(cols):
            x = x0 + j * (self.cell_w + self.gap)
            page.col_labels.append((x, title_h, x + self.cell_w, y0))
        for i, row in enumerate(rows):
            y = y0 + i * (self.cell_h + self.gap)
            if row is not None:
                page.row_labels.append((0, y, self.row_band, y + self.cell_h))
            for j, col in enumerate(cols):
                x = x0 + j * (self.cell_w + self.gap)
                cell = self.selection.cell(row, col)
                for n, sample in enumerate(self.selection.samples):
                    sx = x + (n % self.sub_cols) * (self.tw + self.sub_gap)
                    sy = y + (n // self.sub_cols) * (self.th + self.sub_gap)
                    page.tiles.append((cell.jobs[sample], (sx, sy, sx + self.tw, sy + self.th)))
        return page


def fits(size: tuple[int, int], fmt: str) -> bool:
    width, height = size
    return width <= MAX_SIDE[fmt] and height <= MAX_SIDE[fmt] and width * height <= BOMB_PIXELS


def why_not(size: tuple[int, int], fmt: str) -> str:
    if max(size) > MAX_SIDE[fmt]:
        return f"{LIMIT_NAMES[fmt]} {MAX_SIDE[fmt]:,} px side"
    return f"Pillow's decompression-bomb limit of {BOMB_PIXELS:,} px"


@dataclass
class Arrangement:
    """A sheet laid out, nothing drawn yet: its pages and why it has that many, at that tile size."""

    layout: Layout
    pages: list[Page]
    how: str  # "whole", "scaled" or "split"
    limit: str  # the limit that made it scale or split ("" when whole)
    asked: int  # the tile size asked for (or the renders' own)
    parameters: str
    jobs: list[Job]
    entries: dict[str, dict]  # the whole cache entries among jobs'
    font: str


def arrange(plan: Plan, cache: Cache, request: Request, fmt: str) -> Arrangement:
    """The sheet's pages at the largest tile size (up to the one asked) that keeps each within
    the format's limits, or split at that size (request.fit "split", or below MIN_TILE)."""
    selection = choose(plan, request)
    font_of, font_name = load_font(request.font)
    rows: list[Option | None] = list(selection.rows.options) if selection.rows else [None]
    cols = list(selection.cols.options)
    cells = [selection.cell(row, col) for row in rows for col in cols]
    jobs = [cell.jobs[s] for cell in cells for s in selection.samples]
    entries = cache.whole_entries(job.key for job in jobs)
    base = (max(c.picture.width for c in cells), max(c.picture.height for c in cells))
    title, parameters = describe(plan, selection, cells, entries)
    asked = request.tile or max(base)

    def layout_at(tile: int) -> Layout:
        return Layout(selection, base, tile, font_of, title)

    layout = layout_at(asked)
    how, limit = "whole", ""
    full = layout.size(len(rows), len(cols))
    if not fits(full, fmt):
        limit = why_not(full, fmt)
        smallest = layout_at(min(MIN_TILE, asked))
        if request.fit == "scale" and fits(smallest.size(len(rows), len(cols)), fmt):
            lo, hi = smallest.tile, asked - 1  # the largest tile that fits
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if fits(layout_at(mid).size(len(rows), len(cols)), fmt):
                    lo = mid
                else:
                    hi = mid - 1
            layout, how = layout_at(lo), "scaled"
        else:
            if request.fit == "scale":
                layout = smallest
            how = "split"
    pages = _split(layout, rows, cols, fmt) if how == "split" else [layout.page(rows, cols)]
    return Arrangement(layout, pages, how, limit, asked, parameters, jobs, entries, font_name)


def make_sheet(plan: Plan, cache: Cache, request: Request, output: Path) -> Report:
    """Draw the sheet and write it (atomically: temp file + rename) to `output`, or, split, to
    OUTPUT-1.EXT, OUTPUT-2.EXT ..."""
    fmt = output_format(output)
    sheet = arrange(plan, cache, request, fmt)
    files = []
    digits = len(str(len(sheet.pages)))
    for n, page in enumerate(sheet.pages, 1):
        path = output if len(sheet.pages) == 1 else output.with_name(f"{output.stem}-{n:0{digits}d}{output.suffix}")
        image = draw(page, sheet.layout, cache, sheet.entries)
        atomic_write_bytes(path, encode(image, fmt, sheet.parameters))
        files.append((path, page))
    layout = sheet.layout
    labels = [o.label for o in layout.selection.cols.options]
    labels += [o.label for o in layout.selection.rows.options] if layout.selection.rows else []
    return Report(
        files,
        layout.tile,
        sheet.asked,
        sheet.how,
        sheet.limit,
        len(sheet.jobs),
        sum(job.key not in sheet.entries for job in sheet.jobs),
        sheet.font,
        unshown_characters(layout.font, " ".join([layout.title_text, *labels])),
    )


def _split(layout: Layout, rows: list, cols: list, fmt: str) -> list[Page]:
    """Pages of as many columns, then as many rows, as fit."""
    per_row = 1
    while per_row < len(cols) and fits(layout.size(1, per_row + 1), fmt):
        per_row += 1
    last = len(cols) % per_row or per_row  # the last pages' columns: fewer, so a taller title

    def tall_fits(nrows: int) -> bool:
        return fits(layout.size(nrows, per_row), fmt) and fits(layout.size(nrows, last), fmt)

    per_col = 1
    while per_col < len(rows) and tall_fits(per_col + 1):
        per_col += 1
    if not fits(layout.size(1, 1), fmt):
        raise UsageError(
            f"sheet: one cell at {layout.tile} px tiles passes {why_not(layout.size(1, 1), fmt)}; pass a smaller --tile"
        )
    return [
        layout.page(rows[r : r + per_col], cols[c : c + per_row])
        for r in range(0, len(rows), per_col)
        for c in range(0, len(cols), per_row)
    ]


def draw(page: Page, layout: Layout, cache: Cache, entries: dict) -> Image.Image:
    image = Image.new("RGB", page.size, BACKGROUND)
    pen = ImageDraw.Draw(image)
    font = layout.font

    def text_block(lines: list[str], box: tuple[int, int, int, int], fill=INK) -> None:
        left, top, right, bottom = box
        y = top + (bottom - top - len(lines) * layout.line_h) / 2 + max(1, layout.font_size // 10)
        for line in lines:
            pen.text((left + (right - left - font.getlength(line)) / 2, y), line, font=font, fill=fill)
            y += layout.line_h

    text_block(layout.title_lines(page.size[0]), page.title)
    for col, box in zip(page.cols, page.col_labels, strict=True):
        text_block(layout.col_lines[col.key], box)
    for row, box in zip((r for r in page.rows if r is not None), page.row_labels, strict=True):
        text_block(layout.row_lines[row.key], box)
    placeholder = wrap(NOT_RENDERED, font, layout.tw - 4, 3)
    for job, box in page.tiles:
        if job.key in entries:
            with Image.open(cache.png_path(job.key)) as source:
                tile = fit_into(source.convert("RGB"), box)
            left = box[0] + (box[2] - box[0] - tile.width) // 2
            top = box[1] + (box[3] - box[1] - tile.height) // 2
            image.paste(tile, (left, top))
        else:
            pen.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=PLACEHOLDER)
            text_block(placeholder, box, PLACEHOLDER_INK)
    return image


def fit_into(picture: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """`picture` scaled (Lanczos) to fit `box`, its proportions kept; as it is where it fits exactly."""
    width, height = box[2] - box[0], box[3] - box[1]
    scale = min(width / picture.width, height / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture if size == picture.size else picture.resize(size, Image.Resampling.LANCZOS)


def describe(plan: Plan, selection: Selection, cells: list[Cell], entries: dict) -> tuple[str, str]:
    """(the title, the `parameters` text): the axes, the fixed options, the samples, and the
    settings every cell shares, as AUTOMATIC1111 names them."""
    shared = shared_settings(plan, cells, entries)
    seeds = [plan.config.runtime.seed + s for s in selection.samples]
    grid = [f"Rows: {selection.rows.label}" if selection.rows else "One row", f"Columns: {selection.cols.label}"]
    grid += [f"{axis.label}: {option.label}" for axis, option in selection.fixed]
    if len(seeds) == 1:
        grid.append(f"Sample {selection.samples[0] + 1} (seed {seeds[0]})")
    else:
        grid.append(f"Samples 1-{len(seeds)} (seeds {seeds[0]}-{seeds[-1]})")
    settings = [f"{name}: {value}" for name, value in shared.items()]
    title = f"{GLUE}· ".join(s.replace(" ", GLUE) if len(s) <= 32 else s for s in grid + settings)
    negatives = {c.picture.negative_prompt if c.effect.negative else "" for c in cells}

    def values(axis: Axis) -> str:
        return ", ".join(o.label for o in axis.options)

    fields = [f"{name}: {metadata.quote(str(value))}" for name, value in shared.items()]
    fields.append(f"Seed: {seeds[0]}")  # the first image's, as AUTOMATIC1111's grids say (Seeds: all of them)
    fields.append("Script: X/Y plot")
    for letter, axis in (("X", selection.cols), ("Y", selection.rows)):
        if axis:
            fields += [
                f"{letter} Type: {metadata.quote(axis.label)}",
                f"{letter} Values: {metadata.quote(values(axis))}",
            ]
    if selection.fixed:
        fixed = ", ".join(f"{axis.label}: {option.label}" for axis, option in selection.fixed)
        fields.append(f"Fixed: {metadata.quote(fixed)}")
    if len(seeds) > 1:
        fields.append(f"Seeds: {seeds[0]}-{seeds[-1]}")
    fields.append("Sheet: prompt-gallery")
    lines = [cells[0].prompt]
    if len(negatives) == 1 and (negative := negatives.pop()):
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(fields))
    parameters = "\n".join(lines)
    if len(parameters) > MAX_PARAMETERS:  # hundreds of long labels: name the axes, not every option
        parameters = parameters[: MAX_PARAMETERS - 1] + "…"
    return title, parameters


def shared_settings(plan: Plan, cells: list[Cell], entries: dict) -> dict[str, object]:
    """The settings (AUTOMATIC1111's names) that every cell shown has alike."""
    each = []
    for cell in cells:
        made = next((metadata.sampler_of(entries[j.key]) for j in cell.jobs if j.key in entries), None)
        s = settings_of(cell, None, made)
        named: dict[str, object] = {
            "Steps": s["steps"],
            "Sampler": s["scheduler"],
            "Size": f"{s['width']}x{s['height']}",
            "Model": s["model"],
        }
        if "cfg" in s:
            named["CFG scale"] = metadata.number(s["cfg"])
        if "distilled_cfg" in s:
            named["Distilled CFG Scale"] = metadata.number(s["distilled_cfg"])
        if "quantize" in s:
            named["Diffusion in Low Bits"] = metadata.LOW_BITS[s["quantize"]]
        if "loras" in s:
            named["LoRAs"] = ", ".join(f"{lora['name']}: {metadata.number(lora['scale'])}" for lora in s["loras"])
        for name, value in sorted(s.get("call", {}).items()):
            named[name] = value
        each.append(named)
    return {k: v for k, v in each[0].items() if all(k in other and other[k] == v for other in each[1:])}


def encode(image: Image.Image, fmt: str, parameters: str) -> bytes:
    """The picture in `fmt` with `parameters`: a PNG text chunk, or EXIF UserComment (UTF-16,
    big-endian, as AUTOMATIC1111 writes it) in JPEG and WebP."""
    buffer = io.BytesIO()
    if fmt == "PNG":
        info = PngInfo()
        info.add_text("parameters", parameters)
        image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    else:
        exif = Image.Exif()
        exif.endian = ">"  # the byte order UTF-16 (big-endian) in UserComment is read with
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + parameters.encode("utf-16-be")
        image.save(buffer, format=fmt, quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def read_parameters(path: Path) -> str | None:
    """The `parameters` text of a sheet (or of any PNG, JPEG or WebP that carries one the same way)."""
    with Image.open(path) as image:
        text = getattr(image, "text", {}).get("parameters") if image.format == "PNG" else None
        if text is None:
            comment = image.getexif().get_ifd(0x8769).get(0x9286)
            if isinstance(comment, bytes) and comment.startswith(b"UNICODE\0"):
                text = comment[8:].decode("utf-16-be")
        return text
