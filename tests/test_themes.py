"""Light and dark, and accessibility, in Chromium: the gallery follows the site's own theme switch
(al-folio's html[data-theme=dark|light]) over the system's setting, with readable text either way;
axe-core finds no serious or critical violation in the cell view and the open lightbox, at phone
and desktop sizes, light and dark. On the standalone site and in an al-folio-like site."""

import pytest

from accessibility import axe_violations, contrast_ratio, contrasts
from gallery.cli import main
from gallery.config import load_config
from test_browser import Visit, browser_prompts, serve_static
from test_browser import pytestmark as browser_mark
from test_into import ALFOLIO_FILES
from test_site import jekyll_build

pytestmark = browser_mark

# What al-folio does with colour, in little: its theme's custom properties on :root, overridden
# under html[data-theme='dark'] (_sass/_themes.scss), and text colour set on elements by name
# (_sass/_base.scss), which reaches into anything a page includes.
ALFOLIO_CSS = """
:root { --global-bg-color: #ffffff; --global-text-color: #000000; --global-theme-color: #0000ffcc; }
html[data-theme='dark'] { --global-bg-color: #1c1c1d; --global-text-color: #e8e8e8; --global-theme-color: #2698ba; }
body { background-color: var(--global-bg-color); color: var(--global-text-color); }
p, h1, h2, h3, h4, h5, h6, em, div, li, span, strong { color: var(--global-text-color); }
a { color: var(--global-theme-color); }
"""
ALFOLIO_LAYOUT = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{ page.title }}</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
    '<link rel="stylesheet" href="{{ \'/assets/css/main.css\' | relative_url }}"></head>'
    '<body><main class="container">{{ content }}</main></body></html>\n'
)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def sites(tmp_path_factory, tiny_sd):
    """{"standalone": URL, "alfolio": URL} of one gallery's page, on its own generated site and
    inside an al-folio-like site, both built by Jekyll and served over HTTP."""
    work = tmp_path_factory.mktemp("themes")
    prompts = browser_prompts(work, tiny_sd, "themes", samples=4)
    assert main(["build", "-c", str(prompts)]) == 0
    alfolio = work / "my-site"
    files = {**ALFOLIO_FILES, "_layouts/default.html": ALFOLIO_LAYOUT, "assets/css/main.css": ALFOLIO_CSS}
    for rel, text in files.items():
        (alfolio / rel).parent.mkdir(parents=True, exist_ok=True)
        (alfolio / rel).write_text(text)
    assert main(["site", "-c", str(prompts), "--into", str(alfolio)]) == 0
    root = work / "www"
    for name, source in (("standalone", load_config(prompts).site_dir), ("alfolio", alfolio)):
        result = jekyll_build(source, root / name, f"/{name}")
        assert result.returncode == 0, result.stderr
    with serve_static(root) as base:
        yield {name: f"{base}/{name}/projects/themes/" for name in ("standalone", "alfolio")}


def visit(browser, url: str, system: str, site_theme: str | None = None, viewport: dict = DESKTOP) -> Visit:
    """The page with the system's colour scheme `system`, and the site's switch at `site_theme`
    (None: no mark, as al-folio's "system" setting leaves it in older versions)."""
    v = Visit(browser, url, color_scheme=system, viewport=viewport)
    if site_theme:
        v.page.evaluate("theme => { document.documentElement.dataset.theme = theme; }", site_theme)
    return v


def open_lightbox(v: Visit, index: int = 1) -> None:
    v.page.locator(".pg-grid a.pg-link").nth(index).click()
    v.page.wait_for_function("document.querySelector('dialog.pg-lightbox').open")
    v.page.wait_for_function("document.querySelector('.pg-lb-img').complete")


LIGHTBOX_TEXT = [
    ".pg-lb-title",
    ".pg-lb-prev",
    ".pg-lb-next",
    ".pg-lb-close",
    ".pg-recipe dt",
    ".pg-recipe dd",
]
PAGE_TEXT = [".pg-label", ".pg-prompt-label", ".pg-prompt-text"]


@pytest.mark.parametrize(
    "site,site_theme,system,expect",
    [
        ("alfolio", "dark", "light", "dark"),  # the site's switch wins over the system...
        ("alfolio", "light", "dark", "light"),  # ...both ways
        ("alfolio", None, "dark", "dark"),  # no mark: the system's setting
        ("alfolio", None, "light", "light"),
        ("standalone", None, "dark", "dark"),
        ("standalone", None, "light", "light"),
    ],
)
def test_the_lightbox_follows_the_theme_and_its_text_reads(sites, browser, site, site_theme, system, expect):
    v = visit(browser, sites[site], system, site_theme)
    open_lightbox(v)
    found = contrasts(v.page, LIGHTBOX_TEXT + PAGE_TEXT)
    low = [f for f in found if f["ratio"] < 4.5]
    assert low == [], low  # WCAG AA for text
    box = contrasts(v.page, [".pg-lightbox"])[0]
    assert (box["background_luminance"] < 0.05) if expect == "dark" else (box["background_luminance"] > 0.9), box
    buttons = [f for f in found if f["selector"].startswith(".pg-lb-") and "title" not in f["selector"]]
    assert all(b["border_ratio"] >= 3 for b in buttons), buttons  # a button's edge shows (non-text 3:1)
    # the switch flipped while the lightbox is open: it follows at once
    flipped = "light" if expect == "dark" else "dark"
    v.page.evaluate("theme => { document.documentElement.dataset.theme = theme; }", flipped)
    box = contrasts(v.page, [".pg-lightbox"])[0]
    assert (box["background_luminance"] < 0.05) if flipped == "dark" else (box["background_luminance"] > 0.9), box
    assert [f for f in contrasts(v.page, LIGHTBOX_TEXT) if f["ratio"] < 4.5] == []
    v.page.keyboard.press("Escape")
    v.close()


THEMES = [("standalone", None, "light"), ("standalone", None, "dark"), ("alfolio", "dark", "light")]
THEME_IDS = ["light", "dark", "alfolio-dark-on-light-system"]


def focus_ring(v: Visit, behind: str) -> tuple[str, str, float]:
    """The focused element's outline style and width, and the contrast of its colour against the
    effective background of `behind` (what the ring, drawn outside the element, lies on)."""
    style, width, colour = v.page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth,"
        " s.outlineColor] }"
    )
    return style, width, round(contrast_ratio(colour, contrasts(v.page, [behind])[0]["background"]), 1)


@pytest.mark.parametrize("site,site_theme,system", THEMES, ids=THEME_IDS)
def test_the_focus_ring_shows_on_the_page_and_in_the_lightbox(sites, browser, site, site_theme, system):
    v = visit(browser, sites[site], system, site_theme)
    v.page.locator(".pg-grid a.pg-link").first.focus()
    v.page.keyboard.press("Shift+Tab")
    v.page.keyboard.press("Tab")  # focus by keyboard: :focus-visible
    style, width, ratio = focus_ring(v, ".pg-grid")
    assert (style, width) == ("solid", "3px") and ratio >= 3, (style, width, ratio)
    v.page.keyboard.press("Enter")  # the lightbox, by keyboard: its close button has the focus
    v.page.wait_for_function("document.querySelector('dialog.pg-lightbox').open")
    assert v.page.evaluate("document.activeElement.className") == "pg-lb-close"
    v.page.keyboard.press("Shift+Tab")  # to the next-image button, and its ring
    style, width, ratio = focus_ring(v, ".pg-lb-bar")
    assert (style, width) == ("solid", "3px") and ratio >= 3, (style, width, ratio)
    v.page.keyboard.press("Escape")
    v.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("site,site_theme,system", THEMES, ids=THEME_IDS)
def test_axe_finds_nothing_serious_in_the_cell_view_and_the_lightbox(
    sites, browser, viewport, site, site_theme, system
):
    v = visit(browser, sites[site], system, site_theme, viewport)
    v.page.select_option("select[data-axis=subject]", "evil")  # the hostile label and prompt on the page
    v.page.wait_for_function("document.querySelector('.pg-prompt-text').textContent.includes('onerror')")
    assert axe_violations(v.page) == []
    open_lightbox(v)
    assert axe_violations(v.page) == []
    v.page.keyboard.press("Escape")
    v.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("site,site_theme,system", THEMES, ids=THEME_IDS)
def test_axe_finds_nothing_serious_in_the_grid_and_compare_views(sites, browser, viewport, site, site_theme, system):
    """The grid (with the hostile label among its headers) and the compare dialog (both recipes),
    in every theme, at phone and desktop sizes."""
    v = visit(browser, sites[site] + "?view=grid&rows=subject&cols=style&sample=1", system, site_theme, viewport)
    v.page.wait_for_selector(".pg-table a.pg-glink img[src]")
    assert axe_violations(v.page) == []
    v.close()
    v = visit(browser, sites[site] + "?compare=cat/oil:1,evil/ink:2", system, site_theme, viewport)
    v.page.wait_for_function("document.querySelector('dialog.pg-compare')?.open === true", timeout=10_000)
    assert axe_violations(v.page) == []
    v.page.keyboard.press("Escape")
    v.close()


def test_the_axe_check_sees_a_violation(sites, browser):
    """The check above can fail: a lightbox button stripped of its name is reported."""
    v = visit(browser, sites["standalone"], "light")
    open_lightbox(v)
    v.page.evaluate(
        "() => { const b = document.querySelector('.pg-lb-close');"
        " b.removeAttribute('aria-label'); b.textContent = '' }"
    )
    found = axe_violations(v.page)
    assert any(line.startswith("button-name (critical)") and ".pg-lb-close" in line for line in found), found
    v.page.keyboard.press("Escape")
    v.close()


@pytest.mark.parametrize(
    "site,site_theme,system",
    [*THEMES, ("alfolio", "light", "dark")],
    ids=[*THEME_IDS, "alfolio-light-on-dark-system"],
)
def test_the_search_results_follow_the_theme_and_read(sites, browser, site, site_theme, system):
    v = visit(browser, sites[site], system, site_theme)
    v.page.locator(".pg-search-input").focus()
    v.page.keyboard.type("ink")
    v.page.wait_for_selector(".pg-search-results:not([hidden]) li")
    v.page.keyboard.press("ArrowDown")  # the first result marked, the others not
    found = contrasts(
        v.page,
        [".pg-search-results li[aria-selected=true]", ".pg-search-results li[aria-selected=false]"],
    )
    assert [f for f in found if f["ratio"] < 4.5] == [], found
    listbox = contrasts(v.page, [".pg-search-results"])[0]
    dark = (site_theme or system) == "dark"
    assert (listbox["background_luminance"] < 0.05) if dark else (listbox["background_luminance"] > 0.9), listbox
    assert axe_violations(v.page) == []  # with the list open
    v.page.keyboard.press("Escape")
    v.close()
