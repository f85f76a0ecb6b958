"""Textured shapes drawn in their own coordinates, so texture moves, turns and scales
with the object, and every pixel's ownership is exact (no anti-aliasing: the ground
truth is the drawn pixels, nothing else)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SHAPE_KINDS = ("ellipse", "rectangle", "polygon", "star", "blob")
TEXTURE_KINDS = ("solid", "stripes", "checker", "gradient", "spots")
TILE = 32  # texture tile side, sampled by the object's own (u, v) coordinates


@dataclass(frozen=True)
class Shape:
    """A closed shape of unit radius: `inside(u, v)` in its own frame, where the object
    is scaled by `aspect` (x) and 1/aspect (y) so the area does not depend on it."""

    kind: str
    aspect: float = 1.0
    sides: int = 5  # polygon / star points
    depth: float = 0.35  # star: how deep the notches go
    harmonics: tuple[tuple[float, float], ...] = ()  # blob: (amplitude, phase) for k = 2, 3, ...

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        u, v = u / self.aspect, v * self.aspect
        if self.kind == "rectangle":
            return np.maximum(np.abs(u), np.abs(v)) <= 0.8
        rho = np.hypot(u, v)
        if self.kind == "ellipse":
            return rho <= 1.0
        phi = np.arctan2(v, u)
        if self.kind == "polygon":
            sector = 2 * math.pi / self.sides
            return rho * np.cos(np.mod(phi, sector) - sector / 2) <= math.cos(sector / 2)
        if self.kind == "star":
            return rho <= 1.0 - self.depth * (0.5 - 0.5 * np.cos(self.sides * phi))
        radius = np.ones_like(phi)
        for k, (amp, phase) in enumerate(self.harmonics, start=2):
            radius += amp * np.cos(k * phi + phase)
        return rho <= 0.9 * radius

    @property
    def reach(self) -> float:
        """How far (in radii) the shape extends from its centre at most."""
        bump = 1.0 + sum(a for a, _ in self.harmonics)
        return max(self.aspect, 1 / self.aspect) * max(1.0, 0.9 * bump) * 1.15


def random_shape(rng: np.random.Generator, kind: str | None = None) -> Shape:
    kind = kind or str(rng.choice(SHAPE_KINDS))
    aspect = float(np.exp(rng.uniform(-0.45, 0.45))) if kind != "star" else 1.0
    harmonics = tuple(
        (float(rng.uniform(0.03, 0.14)), float(rng.uniform(0, 2 * math.pi))) for _ in range(3)
    )
    return Shape(
        kind=kind,
        aspect=aspect,
        sides=int(rng.integers(3, 8)),
        depth=float(rng.uniform(0.25, 0.45)),
        harmonics=harmonics,
    )


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour of random hue, saturation and value (not too dark, not grey only)."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0.25, 1.0), rng.uniform(0.35, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (rgb * 255).astype(np.float32)


def texture_tile(
    rng: np.random.Generator, kind: str | None = None, base: np.ndarray | None = None
) -> np.ndarray:
    """A TILE x TILE x 3 float texture of one kind, around colour `base`."""
    kind = kind or str(rng.choice(TEXTURE_KINDS))
    a = random_colour(rng) if base is None else base
    b = np.clip(a * rng.uniform(0.3, 0.7) + rng.uniform(0, 90, 3), 0, 255)
    y, x = np.mgrid[0:TILE, 0:TILE].astype(np.float32) / TILE
    if kind == "stripes":
        f = int(rng.integers(1, 4))
        t = (np.sin(2 * math.pi * f * (x * math.cos(rng.uniform(0, 3)) + y)) > 0)[..., None]
    elif kind == "checker":
        f = int(rng.integers(1, 4))
        t = ((np.floor(x * 2 * f) + np.floor(y * 2 * f)) % 2)[..., None]
    elif kind == "gradient":
        t = x[..., None]
    elif kind == "spots":
        t = (rng.uniform(size=(8, 8)) > 0.6).repeat(TILE // 8, 0).repeat(TILE // 8, 1)[..., None]
    else:
        t = np.zeros((TILE, TILE, 1), np.float32)
    tile = a * (1 - t) + b * t + rng.normal(0, 6, (TILE, TILE, 3))
    return np.clip(tile, 0, 255).astype(np.float32)


@dataclass(frozen=True)
class Look:
    """What an object looks like: its shape, its texture, and its size in pixels (the
    radius at scale 1)."""

    shape: Shape
    tile: np.ndarray = field(compare=False)
    radius: float


def draw(
    look: Look, cx: float, cy: float, scale: float, angle: float, height: int, width: int
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Rasterise an object: (the frame window it touches, its mask there, its colours
    there), or None when it lies wholly outside the frame."""
    r = look.radius * scale
    reach = r * look.shape.reach
    x0, x1 = max(0, int(cx - reach)), min(width, math.ceil(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(height, math.ceil(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = (xx - cx) / r, (yy - cy) / r
    u, v = c * dx + s * dy, -s * dx + c * dy
    mask = look.shape.inside(u, v)
    if not mask.any():
        return None
    iu = np.mod(((u + 1) * TILE / 2).astype(np.int64), TILE)
    iv = np.mod(((v + 1) * TILE / 2).astype(np.int64), TILE)
    return (slice(y0, y1), slice(x0, x1)), mask, look.tile[iv, iu]
