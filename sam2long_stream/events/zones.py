"""Named polygon zones of a stream, and whether an object's mask is in one.

A zone is entered by the object's pixels, not by a box centre: the fraction of the
mask inside the polygon decides. Two thresholds give hysteresis, so a mask that
flickers around one value does not flap: an object enters when the fraction reaches
``enter`` and leaves only when it drops below ``leave`` (< ``enter``).

Polygons are in frame pixels (x right, y down); a pixel belongs to the zone when its
centre is inside (even-odd rule). Each zone is rasterised once per frame size and
cached. Numpy only: the settings loader and the control socket check zones with it
before anything heavy is imported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam2long_stream.limits import quote

MAX_VERTICES = 256
MAX_ZONES = 64  # per stream
MAX_COORD = 65536.0  # as the control socket's prompts
DEFAULT_ENTER = 0.5
DEFAULT_LEAVE = 0.25
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # an MQTT topic level, an HA id
ZONE_KEYS = ("name", "polygon", "enter", "leave")


@dataclass(frozen=True)
class Zone:
    """One named polygon and its thresholds; validated on construction (ValueError)."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    enter: float = DEFAULT_ENTER
    leave: float = DEFAULT_LEAVE
    _masks: dict[tuple[int, int], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"zone name must be 1-64 characters of A-Z a-z 0-9 _ - (not starting with "
                f"_ or -), got {quote(self.name)}"
            )
        object.__setattr__(self, "polygon", check_polygon(self.polygon, self.name))
        for key in ("enter", "leave"):
            v = getattr(self, key)
            if type(v) not in (int, float) or not math.isfinite(v) or not 0 <= v <= 1:
                raise ValueError(
                    f"zone {self.name}: {key} must be a number in 0..1, got {quote(v)}"
                )
            object.__setattr__(self, key, float(v))
        if self.enter <= 0 or not self.leave < self.enter:
            raise ValueError(
                f"zone {self.name}: need 0 <= leave < enter <= 1 (hysteresis), got "
                f"enter {self.enter:g}, leave {self.leave:g}"
            )

    def mask(self, height: int, width: int) -> np.ndarray:
        """The zone's pixels at this frame size (bool (H, W)), computed once per size."""
        key = (int(height), int(width))
        cached = self._masks.get(key)
        if cached is None:
            if len(self._masks) >= 8:  # a stream changes size rarely; stay bounded
                self._masks.clear()
            cached = rasterise(self.polygon, *key)
            self._masks[key] = cached
        return cached

    def fraction(self, mask: np.ndarray, box: Sequence[int] | None, area: int) -> float:
        """Share of the object's mask pixels inside the zone (0 for an empty mask);
        ``box`` (x0, y0, x1, y1 inclusive) limits the work to the mask's extent."""
        if area <= 0 or box is None:
            return 0.0
        h, w = mask.shape
        zone = self.mask(h, w)
        x0, y0, x1, y1 = (int(v) for v in box)
        inside = np.count_nonzero(mask[y0 : y1 + 1, x0 : x1 + 1] & zone[y0 : y1 + 1, x0 : x1 + 1])
        return inside / area

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "polygon": [[x, y] for x, y in self.polygon],
            "enter": self.enter,
            "leave": self.leave,
        }


def check_polygon(points: Any, name: str = "?") -> tuple[tuple[float, float], ...]:
    """3..256 finite [x, y] vertices enclosing a non-zero area; ValueError says why not."""
    where = f"zone {name}: polygon"
    if not isinstance(points, list | tuple) or not 3 <= len(points) <= MAX_VERTICES:
        raise ValueError(f"{where} must be a list of 3..{MAX_VERTICES} [x, y] points")
    out = []
    for p in points:
        if not isinstance(p, list | tuple) or len(p) != 2:
            raise ValueError(f"{where}: each point must be [x, y], got {quote(p)}")
        for v in p:
            if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > MAX_COORD:
                raise ValueError(
                    f"{where}: coordinates must be finite numbers within ±{MAX_COORD:g}, "
                    f"got {quote(v)}"
                )
        out.append((float(p[0]), float(p[1])))
    xs = np.array([x for x, _ in out])
    ys = np.array([y for _, y in out])
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
    if area < 1e-9:
        raise ValueError(f"{where} encloses no area (its points are on one line)")
    return tuple(out)


def rasterise(polygon: Sequence[tuple[float, float]], height: int, width: int) -> np.ndarray:
    """Pixels whose centres are inside the polygon (even-odd), as bool (H, W). One pass
    per row over the edges: O(H * edges) plus the fill."""
    out = np.zeros((height, width), dtype=bool)
    pts = np.asarray(polygon, dtype=np.float64)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    ylo, yhi = max(0, math.floor(y0.min())), min(height, math.ceil(y0.max()) + 1)
    for row in range(ylo, yhi):
        yc = row + 0.5
        crosses = (y0 <= yc) != (y1 <= yc)  # half-open: a vertex is counted once
        if not crosses.any():
            continue
        a, b, c, d = x0[crosses], y0[crosses], x1[crosses], y1[crosses]
        xs = np.sort(a + (yc - b) * (c - a) / (d - b))
        for left, right in zip(xs[0::2], xs[1::2], strict=False):
            # pixel k's centre k + 0.5 in [left, right)
            lo = max(0, math.ceil(left - 0.5))
            hi = min(width, math.ceil(right - 0.5))
            if hi > lo:
                out[row, lo:hi] = True
    return out


def zone_from_table(table: Any, where: str) -> Zone:
    """A ``[[streams.zones]]`` table or a control request's zone: ``name``, ``polygon``
    ``[[x, y], ...]``, optional ``enter`` and ``leave``. ValueError in one line."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: a zone must be a table with name and polygon")
    unknown = sorted(set(table) - set(ZONE_KEYS))
    if unknown:
        named = ", ".join(quote(k) for k in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ValueError(
            f"{where}: unknown zone key(s) {named}{more}; expected {', '.join(ZONE_KEYS)}"
        )
    if "name" not in table or "polygon" not in table:
        raise ValueError(f"{where}: a zone needs a name and a polygon")
    try:
        return Zone(
            name=table["name"],
            polygon=table["polygon"],
            enter=table.get("enter", DEFAULT_ENTER),
            leave=table.get("leave", DEFAULT_LEAVE),
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_zones(tables: Any, where: str) -> tuple[Zone, ...]:
    """``[[zones]]`` tables -> zones, names unique, at most MAX_ZONES."""
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise ValueError(f"{where}: zones must be [[zones]] tables (name, polygon)")
    zones = tuple(zone_from_table(t, f"{where}: zone #{n}") for n, t in enumerate(tables, 1))
    check_zone_set(zones, where)
    return zones


def check_zone_set(zones: Sequence[Zone], where: str) -> None:
    names = [z.name for z in zones]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{where}: zone name(s) given twice: {', '.join(dupes)}")
    if len(zones) > MAX_ZONES:
        raise ValueError(f"{where}: {len(zones)} zones, at most {MAX_ZONES} per stream")
