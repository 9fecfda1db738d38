"""The demo model's world: simple shapes in flat colours, drawn with Pillow, and their captions.

The training script draws its data here, and the tests judge the demo gallery with the same
definitions: which colours exist and what each looks like (`dominant_colour`), which shapes
(`ShapeClassifier`, trained on these drawings).
"""

from __future__ import annotations

import colorsys
import math
import random

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64  # pixels, the model's output
_SUPERSAMPLE = 4  # drawn 4x larger, then downsampled: smooth edges

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {  # name -> RGB; hues far apart so that one can tell them from the pixels
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 215, 30),
    "green": (40, 170, 60),
    "blue": (40, 90, 220),
    "purple": (150, 50, 200),
}
FILLS = ("filled", "outline", "striped")
BACKGROUNDS = {"white": (245, 245, 240), "black": (20, 20, 25)}


def caption(shape: str, colour: str, fill: str | None, background: str | None) -> str:
    """'a red circle, striped, on a black background' (the fill and background phrases optional)."""
    text = f"a {colour} {shape}"
    if fill:
        text += f", {fill}"
    if background:
        text += f", on a {background} background"
    return text


def draw(shape: str, colour: str, fill: str, background: str, rng: random.Random) -> Image.Image:
    """One picture: the shape at a random size, place and turn."""
    big = SIZE * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[background])
    radius = rng.uniform(0.28, 0.42) * big
    cx = big / 2 + rng.uniform(-0.08, 0.08) * big
    cy = big / 2 + rng.uniform(-0.08, 0.08) * big
    turn = 0.0 if shape == "circle" else rng.uniform(-0.3, 0.3)
    outline = _outline(shape, cx, cy, radius, turn)
    rgb = COLOURS[colour]

    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    if fill == "outline":
        width = int(0.075 * big)
        inner = Image.new("L", (big, big), 0)
        ImageDraw.Draw(inner).line(outline + outline[:1], fill=255, width=width, joint="curve")
        mask = inner
    elif fill == "striped":
        stripes = Image.new("L", (big, big), 0)
        pen = ImageDraw.Draw(stripes)
        period = big / 6  # two latent pixels or more per band: the VAE keeps them
        for k in range(-16, 17):  # diagonal bands, half of each period coloured
            x0 = k * period
            pen.polygon([(x0, 0), (x0 + period / 2, 0), (x0 + period / 2 + big, big), (x0 + big, big)], fill=255)
        mask = Image.fromarray(np.minimum(np.asarray(mask), np.asarray(stripes)))
        ring = Image.new("L", (big, big), 0)  # a thin edge keeps the outline readable
        ImageDraw.Draw(ring).line(outline + outline[:1], fill=255, width=int(0.03 * big), joint="curve")
        mask = Image.fromarray(np.maximum(np.asarray(mask), np.asarray(ring)))
    image.paste(Image.new("RGB", (big, big), rgb), (0, 0), mask)
    return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def _outline(shape: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    def ring(radii: list[float], start: float) -> list[tuple[float, float]]:
        n = len(radii)
        return [
            (
                cx + rr * math.cos(start + turn + 2 * math.pi * i / n),
                cy + rr * math.sin(start + turn + 2 * math.pi * i / n),
            )
            for i, rr in enumerate(radii)
        ]

    up = -math.pi / 2
    if shape == "circle":
        return ring([r] * 64, 0.0)
    if shape == "square":
        return ring([r] * 4, math.pi / 4)
    if shape == "triangle":
        return [(x, y + 0.2 * r) for x, y in ring([r * 1.15] * 3, up)]  # centred by area, not by vertex circle
    if shape == "star":
        return ring([r * 1.1, r * 0.45] * 5, up)
    if shape == "cross":
        a, b = r, r * 0.36  # arm half-length, half-width
        corners = [
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
            (-b, -a),
        ]
        c, s = math.cos(turn), math.sin(turn)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]
    raise ValueError(f"unknown shape {shape!r}")


def dominant_colour(image: Image.Image) -> str | None:
    """The named colour most of the image's saturated pixels are nearest to (None: nothing saturated).

    Backgrounds are white or black, so saturated pixels belong to the shape; each votes for the
    named colour nearest in hue.
    """
    hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.float32) / 255.0
    saturated = (hsv[..., 1] > 0.45) & (hsv[..., 2] > 0.35)
    if saturated.sum() < 8:
        return None
    hues = hsv[..., 0][saturated]
    names = list(COLOURS)
    centres = np.array([colorsys.rgb_to_hsv(*(c / 255 for c in COLOURS[n]))[0] for n in names], dtype=np.float32)
    distance = np.abs(hues[:, None] - centres[None, :])
    distance = np.minimum(distance, 1.0 - distance)  # hue is a circle
    votes = np.bincount(distance.argmin(axis=1), minlength=len(names))
    return names[int(votes.argmax())]


def sample_labels(rng: random.Random) -> tuple[str, str, str, str]:
    return rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(FILLS), rng.choice(list(BACKGROUNDS))


class ShapeClassifier:
    """A tiny CNN that names the shape in a 64x64 picture; trained by demo/train.py on drawings."""

    def __init__(self, weights: str | None = None):
        import torch
        from torch import nn

        self.torch = torch
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, len(SHAPES)),
        )
        if weights:
            from safetensors.torch import load_file

            self.net.load_state_dict(load_file(weights))
        self.net.eval()

    @staticmethod
    def tensor(images: list[Image.Image]):
        """Pictures -> a batch, grey-level relative to the corner colour so that colour and background do not matter."""
        import torch

        arrays = np.stack(
            [np.asarray(im.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32) / 255.0 for im in images]
        )
        corners = np.concatenate(
            [arrays[:, :4, :4], arrays[:, :4, -4:], arrays[:, -4:, :4], arrays[:, -4:, -4:]], axis=1
        )
        background = np.median(corners.reshape(len(images), -1, 3), axis=1)[:, None, None, :]
        return torch.from_numpy((arrays - background).transpose(0, 3, 1, 2).copy())

    def predict(self, images: list[Image.Image]) -> list[str]:
        with self.torch.no_grad():
            logits = self.net(self.tensor(images))
        return [SHAPES[i] for i in logits.argmax(dim=1).tolist()]
