"""Paths of objects over a whole scene, computed up front as arrays so that any frame is
a pure function of (scene, index).

A target wanders with momentum, bounces off the borders, and changes speed and scale
now and then. The long-tracking events are built into the paths: an *exit* drives the
target out through the nearest border, keeps it out for a while and brings it back;
an *occluder* rides along the target while it covers it completely; a *distractor*
(a look-alike) crosses the target's path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Path:
    """Centre x, y, scale and angle of an object on every frame."""

    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    angle: np.ndarray

    def at(self, i: int) -> tuple[float, float, float, float]:
        return float(self.x[i]), float(self.y[i]), float(self.scale[i]), float(self.angle[i])


def wander(
    rng: np.random.Generator,
    n: int,
    width: int,
    height: int,
    radius: float,
    speed: float,
    exits: Sequence[tuple[int, int]] = (),
) -> Path:
    """A path with momentum that stays inside the frame except during `exits`, given as
    (start frame, frames spent wholly outside)."""
    margin = radius
    x, y = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
    heading = rng.uniform(0, 2 * math.pi)
    vx, vy = speed * math.cos(heading), speed * math.sin(heading)
    scale = _scale_profile(rng, n)
    spin = rng.uniform(-0.05, 0.05)
    xs, ys = np.empty(n), np.empty(n)
    exit_at = {start: hold for start, hold in exits}
    i = 0
    while i < n:
        if i in exit_at:
            reach = radius * float(scale.max()) * 1.3
            i = _exit(xs, ys, i, exit_at[i], x, y, width, height, reach, speed, rng)
            if i >= n:
                break
            x, y = xs[i - 1], ys[i - 1]
            heading = math.atan2(height / 2 - y, width / 2 - x) + rng.uniform(-0.6, 0.6)
            vx, vy = speed * math.cos(heading), speed * math.sin(heading)
            continue
        if rng.uniform() < 0.04:  # a speed change
            f = rng.choice([0.3, 0.6, 1.6, 2.2])
            vx, vy = vx * f, vy * f
            norm = math.hypot(vx, vy)
            if norm > 3 * speed:
                vx, vy = vx * 3 * speed / norm, vy * 3 * speed / norm
        vx += rng.normal(0, 0.12 * speed)
        vy += rng.normal(0, 0.12 * speed)
        x, y = x + vx, y + vy
        if not margin <= x <= width - margin:
            vx, x = -vx, min(max(x, margin), width - margin)
        if not margin <= y <= height - margin:
            vy, y = -vy, min(max(y, margin), height - margin)
        xs[i], ys[i] = x, y
        i += 1
    angle = rng.uniform(0, 2 * math.pi) + spin * np.arange(n)
    return Path(xs, ys, scale, angle)


def _scale_profile(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scale over time: constant, or a ramp between two scales (an object coming closer
    or moving away) over a random stretch of the scene."""
    if rng.uniform() < 0.4:
        return np.ones(n)
    a, b = sorted(rng.integers(0, n, 2))
    target = float(np.exp(rng.uniform(-0.6, 0.6)))
    t = np.clip((np.arange(n) - a) / max(1, b - a), 0, 1)
    return 1 + (target - 1) * t


def _exit(xs, ys, i, hold, x, y, width, height, reach, speed, rng) -> int:
    """Leave through the nearest border, stay out `hold` frames, come back near where the
    object left. Fills xs, ys from frame i and returns the first frame after re-entry."""
    n = len(xs)
    gaps = {"l": x, "r": width - x, "t": y, "b": height - y}
    side = min(gaps, key=gaps.__getitem__)
    out_x = {"l": -reach, "r": width + reach}.get(side, x)
    out_y = {"t": -reach, "b": height + reach}.get(side, y)
    v = max(2 * speed, 0.05 * min(width, height))  # leaving and coming back are brisk
    steps = max(1, int(math.hypot(out_x - x, out_y - y) / v))
    back_x, back_y = x, y  # where it comes back: near where it left, along the border
    if side in "tb":
        back_x = float(np.clip(x + rng.normal(0, width / 6), reach, width - reach))
    else:
        back_y = float(np.clip(y + rng.normal(0, height / 6), reach, height - reach))
    ret_x = out_x if side in "lr" else back_x
    ret_y = out_y if side in "tb" else back_y
    plan = [(x + (out_x - x) * k / steps, y + (out_y - y) * k / steps) for k in range(1, steps + 1)]
    plan += [(out_x, out_y)] * hold
    plan += [
        (ret_x + (back_x - ret_x) * k / steps, ret_y + (back_y - ret_y) * k / steps)
        for k in range(1, steps + 1)
    ]
    for px, py in plan:
        if i >= n:
            break
        xs[i], ys[i] = px, py
        i += 1
    return i


def escort(
    target: Path, start: int, hold: int, approach: int, rng: np.random.Generator, reach: float
) -> Path:
    """A path that comes in from outside the target's neighbourhood, sits exactly on the
    target for `hold` frames from `start`, and moves off the other way (an occluder)."""
    n = len(target.x)
    heading = rng.uniform(0, 2 * math.pi)
    dx, dy = math.cos(heading) * reach, math.sin(heading) * reach
    t = np.arange(n, dtype=np.float64)
    before = np.clip((start - t) / approach, 0, None)  # 1 at start - approach, 0 at start
    after = np.clip((t - (start + hold - 1)) / approach, 0, None)
    off = before - after  # +1 ... 0 (hold) ... -1
    return Path(
        target.x + dx * off,
        target.y + dy * off,
        np.ones(n),
        rng.uniform(0, 2 * math.pi) + np.zeros(n),
    )


def crossing(target: Path, at: int, speed: float, rng: np.random.Generator, miss: float) -> Path:
    """A path that crosses the target's at frame `at` (passing within `miss` pixels of
    its centre), moving relative to it at `speed`, then wanders off."""
    n = len(target.x)
    heading = rng.uniform(0, 2 * math.pi)
    vx, vy = speed * math.cos(heading), speed * math.sin(heading)
    t = np.arange(n, dtype=np.float64) - at
    side = rng.uniform(-miss, miss)
    px, py = -math.sin(heading) * side, math.cos(heading) * side
    return Path(
        target.x + px + vx * t,
        target.y + py + vy * t,
        target.scale * float(np.exp(rng.uniform(-0.15, 0.15))),
        target.angle + rng.uniform(-1, 1),
    )
