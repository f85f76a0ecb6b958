"""A seeded scene of the long-tracking family: targets to track, and what long videos
throw at a tracker (occluders, look-alike distractors, exits and re-entries, clutter, a
moving background, scale and speed changes, noise). `make_scene(seed, ...)` fixes
everything; `Scene.frame(i)` draws frame i with the exact visible-pixel ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from sam2long_stream.boxes import mask_box
from sam2long_stream.scenes.motion import Path, crossing, escort, wander
from sam2long_stream.scenes.shapes import Look, draw, random_colour, random_shape, texture_tile

EVENT_KINDS = ("occlusion", "distractor", "exit")
# Held-out sets (`scenes`, the default) start at this seed; training draws below it.
HELD_OUT_SEED_START = 1_000_000_000


@dataclass(frozen=True)
class Event:
    """One hard moment for target `target`: frames [start, end) of the scene."""

    kind: str  # one of EVENT_KINDS
    target: int
    start: int
    end: int

    def as_dict(self) -> dict:
        return {"kind": self.kind, "object": self.target, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Actor:
    """Anything drawn over the background. Targets have an id (1, 2, ...), others 0."""

    look: Look
    path: Path
    z: float
    target: int = 0


@dataclass
class Scene:
    seed: int
    width: int
    height: int
    num_frames: int
    actors: list[Actor]
    events: list[Event]
    background: np.ndarray = field(repr=False)  # padded canvas, panned over
    pan: np.ndarray = field(repr=False)  # (num_frames, 2) top-left corner of the view
    noise: float = 4.0

    @property
    def targets(self) -> list[int]:
        return sorted(a.target for a in self.actors if a.target)

    def boxes(self, i: int) -> dict[int, tuple[int, int, int, int]]:
        """Each visible target's box (x0, y0, x1, y1), exclusive end, on frame i: the
        prompts a user would draw."""
        inclusive = {obj: mask_box(mask) for obj, mask in self.frame(i)[1].items()}
        return {o: (b[0], b[1], b[2] + 1, b[3] + 1) for o, b in inclusive.items() if b is not None}

    def frame(self, i: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Frame i: (RGB uint8 HxWx3, {target id: visible mask bool HxW}). A target that is
        hidden or out of the frame has an all-False mask."""
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} outside 0..{self.num_frames - 1}")
        h, w = self.height, self.width
        ox, oy = (int(v) for v in self.pan[i])
        rgb = self.background[oy : oy + h, ox : ox + w].copy()
        owner = np.zeros((h, w), dtype=np.int16)  # index + 1 of the topmost actor
        for k, actor in sorted(enumerate(self.actors), key=lambda ka: ka[1].z):
            drawn = _draw_at(actor.look, actor.path, i, h, w)
            if drawn is None:
                continue
            window, mask, colours = drawn
            rgb[window][mask] = colours[mask]
            owner[window][mask] = k + 1
        rng = np.random.default_rng((self.seed, i))
        rgb += rng.normal(0, self.noise, rgb.shape).astype(np.float32)
        masks = {a.target: owner == k + 1 for k, a in enumerate(self.actors) if a.target}
        return np.clip(rgb, 0, 255).astype(np.uint8), dict(sorted(masks.items()))


def make_scene(
    seed: int,
    width: int = 192,
    height: int = 144,
    num_frames: int = 64,
    num_targets: int | None = None,
    events: tuple[str, ...] | None = None,
) -> Scene:
    """The scene of `seed`. `events` names the event kinds the first target must meet
    (None: a random mix, at least one); other targets meet random ones."""
    rng = np.random.default_rng(seed)
    size = min(width, height)
    n_targets = num_targets or int(rng.choice([1, 1, 2, 2, 3]))
    actors: list[Actor] = []
    scene_events: list[Event] = []
    for t in range(1, n_targets + 1):
        kinds = _event_kinds(rng, events if t == 1 else None, first=t == 1)
        radius = size * rng.uniform(0.07, 0.16)
        look = Look(random_shape(rng), texture_tile(rng), radius)
        speed = size * rng.uniform(0.006, 0.03)
        slots = _slots(rng, num_frames, len(kinds))
        exits, hold_of = [], {}
        for kind, (start, hold) in zip(kinds, slots, strict=True):
            hold_of[kind] = (start, hold)
            if kind == "exit":
                exits.append((start, hold))
        path = wander(rng, num_frames, width, height, radius * look.shape.reach, speed, exits)
        actors.append(Actor(look, path, z=rng.uniform(1, 2), target=t))
        for kind, (start, hold) in hold_of.items():
            actor, event = _event(
                kind, t, start, hold, look, path, rng, size, num_frames, (width, height)
            )
            if actor is not None:
                actors.append(actor)
            if event is not None:
                scene_events.append(event)
    for _ in range(int(rng.integers(0, 4))):  # moving clutter: other objects about
        look = Look(random_shape(rng), texture_tile(rng), size * rng.uniform(0.05, 0.14))
        path = wander(rng, num_frames, width, height, look.radius, size * rng.uniform(0.005, 0.03))
        actors.append(Actor(look, path, z=rng.uniform(0, 2.5)))
    background, pan = _background(rng, width, height, num_frames)
    return Scene(
        seed=seed,
        width=width,
        height=height,
        num_frames=num_frames,
        actors=actors,
        events=sorted(scene_events, key=lambda e: (e.start, e.target)),
        background=background,
        pan=pan,
        noise=float(rng.uniform(1, 8)),
    )


def _event_kinds(rng: np.random.Generator, wanted, first: bool) -> list[str]:
    if wanted is not None:
        return list(dict.fromkeys(wanted))
    kinds = [k for k in EVENT_KINDS if rng.uniform() < 0.45]
    if first and not kinds:
        kinds = [str(rng.choice(EVENT_KINDS))]
    return kinds


def _slots(rng: np.random.Generator, n: int, count: int) -> list[tuple[int, int]]:
    """(start, hold) for `count` events, spread over the scene after a calm opening."""
    slots = []
    span = max(1, (n - 10) // max(1, count))
    for k in range(count):
        lo = 8 + k * span
        hold = int(rng.integers(3, max(4, min(14, span // 2))))
        start = int(rng.integers(lo, max(lo + 1, lo + span - hold - 6)))
        slots.append((min(start, max(0, n - hold - 2)), hold))
    return slots


def _event(
    kind, target, start, hold, look, path, rng, size, n, size_wh
) -> tuple[Actor | None, Event | None]:
    reach = look.radius * look.shape.reach * float(path.scale.max())
    if kind == "occlusion":  # a bigger object sits on the target: it is wholly hidden
        shape = random_shape(rng, str(rng.choice(["ellipse", "rectangle", "blob"])))
        shape = type(shape)(shape.kind, 1.0, harmonics=((0.02, 0.0),))
        cover = Look(shape, texture_tile(rng), reach * 1.45 + 2)
        approach = int(rng.integers(3, 8))
        occ = escort(path, start, hold, approach, rng, reach * 4 + cover.radius)
        return Actor(cover, occ, z=10.0), Event(kind, target, start, start + hold)
    if kind == "distractor":  # a look-alike: same shape and texture, a close colour
        tile = np.clip(look.tile + rng.normal(0, 12, 3), 0, 255).astype(np.float32)
        twin = Look(look.shape, tile, look.radius * float(np.exp(rng.uniform(-0.2, 0.2))))
        cross = crossing(path, start + hold // 2, size * rng.uniform(0.01, 0.03), rng, reach * 0.5)
        z = rng.choice([0.5, 3.0])  # passes behind or in front of the target
        return Actor(twin, cross, z=float(z)), Event(kind, target, start, start + hold)
    # exit: the path already leaves and comes back; the event spans leaving to return
    gone = _outside(path, reach, size_wh)
    if not gone[start:].any():  # the scene ends before the target is out: no event
        return None, None
    back = start + int(np.argmax(gone[start:]))
    w, h = size_wh
    while back < n and (gone[back] or _draw_at(look, path, back, h, w) is None):
        back += 1  # until its first pixel is back in the frame
    return None, Event(kind, target, start, back)


def _draw_at(look: Look, path: Path, i: int, height: int, width: int):
    x, y, scale, angle = path.at(i)
    return draw(look, x, y, scale, angle, height, width)


def _outside(path: Path, reach: float, size_wh: tuple[int, int]) -> np.ndarray:
    """Per frame: is the whole object outside the frame?"""
    w, h = size_wh
    return (path.x + reach < 0) | (path.x - reach > w) | (path.y + reach < 0) | (path.y - reach > h)


def _background(
    rng: np.random.Generator, width: int, height: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """A textured canvas larger than the frame, static clutter stamped on it, and the
    view's top-left corner on every frame (a still or a slowly panning camera)."""
    pad = int(0.25 * min(width, height))
    cw, ch = width + 2 * pad, height + 2 * pad
    base = random_colour(rng) * rng.uniform(0.3, 0.8)
    canvas = np.zeros((ch, cw, 3), np.float32) + base
    for octave in (4, 8, 16, 32):
        grid = rng.normal(0, 40 / math.sqrt(octave), (octave, octave, 3)).astype(np.float32)
        img = Image.fromarray(grid[..., 0]).resize((cw, ch), Image.Resampling.BICUBIC)
        canvas += np.asarray(img)[..., None] * (0.6 + 0.4 * grid.mean(axis=(0, 1)) / 40)
    if rng.uniform() < 0.35:  # stripes or a floor pattern
        yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
        f, a = rng.uniform(0.02, 0.15), rng.uniform(0, math.pi)
        canvas += 25 * np.sign(np.sin(f * (xx * math.cos(a) + yy * math.sin(a))))[..., None]
    for _ in range(int(rng.integers(0, 10))):  # static clutter
        look = Look(
            random_shape(rng), texture_tile(rng), min(width, height) * rng.uniform(0.03, 0.1)
        )
        x, y = rng.uniform(0, cw), rng.uniform(0, ch)
        drawn = draw(look, x, y, 1.0, rng.uniform(0, 6.3), ch, cw)
        if drawn is not None:
            window, mask, colours = drawn
            canvas[window][mask] = colours[mask]
    pan = np.zeros((n, 2))
    if rng.uniform() < 0.5:
        t = np.arange(n)
        ax, ay = rng.uniform(0, pad, 2)
        fx, fy = rng.uniform(0.01, 0.06, 2)
        pan[:, 0] = pad + ax * np.sin(fx * t + rng.uniform(0, 6))
        pan[:, 1] = pad + ay * np.sin(fy * t + rng.uniform(0, 6))
    else:
        pan[:] = pad
    pan = np.clip(np.round(pan), 0, [cw - width, ch - height])
    return np.clip(canvas, 0, 255), pan
