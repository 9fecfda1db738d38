"""Checks of a page in the browser that any view's tests can call: axe-core's rules, and the
contrast of text against what is really behind it.

    from accessibility import axe_violations, contrasts
    assert axe_violations(page) == []                    # no serious or critical violation
    assert axe_violations(page, context=".pg-lightbox") == []

axe-core is the npm package, installed into tests/axe/node_modules by `make axe` (make test runs
it; the version is pinned in tests/axe/package-lock.json). Where it is missing the calling test is
skipped, unless GALLERY_REQUIRE_BROWSER is set (CI): then it fails."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


def axe_violations(page, context: str | None = None, impacts: tuple[str, ...] = SERIOUS) -> list[str]:
    """axe-core's violations of `impacts` on the page as it is now (or inside the elements that the
    CSS selector `context` matches), one line each: rule, impact, what it asks, and where."""
    if not AXE_JS.exists():
        message = f"axe-core is not installed ({AXE_JS} is missing): run `make axe`"
        if os.environ.get("GALLERY_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    found = page.evaluate(
        """async (context) => {
            const result = await axe.run(context ?? document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                where: v.nodes.map(n => `${n.target.join(" ")}${n.failureSummary ? ": " + n.failureSummary : ""}`),
            }));
        }""",
        context,
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {'; '.join(v['where'])}" for v in found if v["impact"] in impacts
    ]


# The contrast of an element's text against its effective background: the element's own background
# and those of its ancestors, composited from the first opaque one up (white where none is).
CONTRAST_JS = """(selectors) => {
    const parse = (css) => {
        const m = css.match(/^rgba?\\(([^)]*)\\)$/);
        if (!m) throw new Error(`a colour this check cannot read: ${css}`);
        const [r, g, b, a = 1] = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
        return [r, g, b, a];
    };
    const over = (top, below) => [0, 1, 2].map(i => top[i] * top[3] + below[i] * (1 - top[3])).concat(1);
    const background = (element) => {
        const layers = [];
        for (let e = element; e; e = e.parentElement) {
            const colour = parse(getComputedStyle(e).backgroundColor);
            if (colour[3] > 0) layers.push(colour);
            if (colour[3] >= 1) break;
        }
        return layers.reduceRight((below, top) => over(top, below), [255, 255, 255, 1]);
    };
    const luminance = ([r, g, b]) => {
        const lin = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    };
    const ratio = (x, y) => {
        const [hi, lo] = [luminance(x), luminance(y)].sort((p, q) => q - p);
        return (hi + 0.05) / (lo + 0.05);
    };
    return selectors.map((selector) => {
        const element = document.querySelector(selector);
        if (!element) throw new Error(`nothing matches ${selector}`);
        const style = getComputedStyle(element);
        const bg = background(element);
        const text = over(parse(style.color), bg);
        const border = over(parse(style.borderTopColor), bg);
        return {
            selector, text: style.color, background: `rgb(${bg.slice(0, 3).map(Math.round).join(", ")})`,
            ratio: ratio(text, bg), border_ratio: ratio(border, bg), background_luminance: luminance(bg),
        };
    });
}"""


def contrasts(page, selectors: list[str]) -> list[dict]:
    """For the first element each selector matches: its text colour, effective background,
    contrast ratio (WCAG), the ratio of its top border against that background, and the
    background's relative luminance (0 black, 1 white)."""
    return page.evaluate(CONTRAST_JS, selectors)


def contrast_ratio(colour: str, other: str) -> float:
    """WCAG's contrast ratio of two opaque CSS colours as getComputedStyle gives them (rgb(r, g, b))."""

    def luminance(css: str) -> float:
        r, g, b = (float(c) / 255 for c in re.findall(r"[\d.]+", css)[:3])
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(colour), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)
