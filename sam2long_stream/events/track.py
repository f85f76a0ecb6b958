"""Track events: what an object did, derived from each published frame's per-object state.

Consumers (alarms, home automation, NVRs) act on changes, not on per-frame state, so
the node derives them once, here, instead of every subscriber doing it for itself.
A pure state machine per stream: `StreamEvents.frame` takes a tracker result and its
frame, `StreamEvents.end` ends objects; both return the events as plain dicts in the
order they happened. No I/O, no clock of its own (time is the frames' capture time), so
it is tested without a node.

Per object:

* ``new``: the first frame on which it is present after its prompt;
* ``lost``: absent for ``lost_after`` (seconds of capture time since its first absent
  frame, or a number of frames in a row), after ``new`` or ``found``;
* ``found``: present again after ``lost`` (an absence shorter than ``lost_after`` is
  flicker and says nothing);
* ``zone_enter`` / ``zone_leave``: the share of its mask inside a zone reached the
  zone's ``enter`` threshold / fell below its ``leave`` threshold (hysteresis). Judged
  on frames where it is present; being lost, ended, or the zone being removed leaves
  every zone it was in (``zone_leave`` first, with a ``reason``);
* ``end``: removed (``removed``), its stream reset (``reset``), its stream removed
  (``stream_removed``) or ended (``stream_ended``); only for an object that had ``new``.

Each event has ``before`` (the object's state after its previous event; None for
``new``) and ``after``: ``present``, ``box``, ``area``, ``score`` (predicted IoU) and
``zones`` (sorted names of the zones it is in).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sam2long_stream.events.zones import Zone, check_zone_set
from sam2long_stream.limits import quote

EVENT_TYPES = ("new", "lost", "found", "end", "zone_enter", "zone_leave")
END_REASONS = ("removed", "reset", "stream_removed", "stream_ended")
DEFAULT_LOST_AFTER = "1s"
_LOST_RE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|sec|f|frames?)?\s*")


@dataclass(frozen=True)
class LostAfter:
    """How long an object must be absent to be ``lost``: seconds or whole frames."""

    seconds: float | None = None
    frames: int | None = None

    def __str__(self) -> str:
        return f"{self.frames}f" if self.frames is not None else f"{self.seconds:g}s"


def parse_lost_after(text: Any) -> LostAfter:
    """``"1.5"`` or ``"1.5s"`` (seconds, >= 0) or ``"10f"`` / ``"10 frames"`` (>= 1);
    a bare number is seconds. ValueError in one sentence."""
    if type(text) in (int, float):
        text = f"{text}s"
    m = _LOST_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"lost_after must be seconds (1.5, 1.5s) or frames (10f), got {quote(text)}"
        )
    value, unit = float(m.group(1)), (m.group(2) or "s")
    if unit.startswith("f"):
        if value != int(value) or not 1 <= value <= 1e9:
            raise ValueError(f"lost_after in frames must be a whole number >= 1, got {quote(text)}")
        return LostAfter(frames=int(value))
    if not math.isfinite(value) or value > 86400:
        raise ValueError(f"lost_after must be at most 86400 s, got {quote(text)}")
    return LostAfter(seconds=value)


class FrameLike(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def pts(self) -> float | None: ...
    @property
    def capture_time_ns(self) -> int: ...


class ResultLike(Protocol):
    @property
    def frame_index(self) -> int: ...
    @property
    def masks(self) -> Mapping[int, np.ndarray]: ...
    @property
    def scores(self) -> Mapping[int, Any]: ...


class _Track:
    """One object's memory between frames (loop thread only)."""

    __slots__ = ("absent_frames", "absent_since_ns", "announced", "lost", "state", "zones")

    def __init__(self) -> None:
        self.announced = False  # `new` was sent
        self.lost = False
        self.absent_since_ns: int | None = None
        self.absent_frames = 0
        self.zones: set[str] = set()
        self.state: dict[str, Any] | None = None  # `after` of its last event


def _state(present: bool, score: Any, zones: Iterable[str]) -> dict[str, Any]:
    box = getattr(score, "bbox", None)
    iou = getattr(score, "iou", None)
    return {
        "present": bool(present),
        "box": None if box is None else [int(v) for v in box],
        "area": int(getattr(score, "area", 0) or 0),
        "score": None if iou is None or not math.isfinite(iou) else round(float(iou), 4),
        "zones": sorted(zones),
    }


class StreamEvents:
    """The event state of one stream. `frame`/`end` run on the node's loop thread; the
    zone methods may be called from any thread (the control socket)."""

    def __init__(
        self,
        stream_id: str,
        lost_after: LostAfter | str = DEFAULT_LOST_AFTER,
        zones: Sequence[Zone] = (),
    ) -> None:
        self.stream_id = stream_id
        self.lost_after = (
            lost_after if isinstance(lost_after, LostAfter) else parse_lost_after(lost_after)
        )
        self._lock = threading.Lock()
        self._zones: dict[str, Zone] = {z.name: z for z in zones}
        check_zone_set(tuple(zones), f"stream {stream_id}")
        self._tracks: dict[int, _Track] = {}
        self._frame: dict[str, Any] | None = None  # the last frame's seq, index, pts, time
        self.emitted = 0

    # -- zones (any thread) ---------------------------------------------------------------

    def set_zone(self, zone: Zone) -> list[str]:
        """Add or replace a zone (judged from the next frame on); the zone names."""
        with self._lock:
            zones = {**self._zones, zone.name: zone}
            check_zone_set(tuple(zones.values()), f"stream {self.stream_id}")
            self._zones = zones
            return sorted(zones)

    def remove_zone(self, name: str) -> list[str]:
        """Remove a zone (objects in it leave it on the next frame); the zone names left."""
        with self._lock:
            if name not in self._zones:
                known = ", ".join(sorted(self._zones)) or "none"
                raise ValueError(f"unknown zone {name!r}; zones: {known}")
            self._zones = {k: z for k, z in self._zones.items() if k != name}
            return sorted(self._zones)

    def zones(self) -> list[Zone]:
        with self._lock:
            return list(self._zones.values())

    def zone_names(self) -> list[str]:
        with self._lock:
            return sorted(self._zones)

    # -- loop thread ----------------------------------------------------------------------

    def frame(self, result: ResultLike, frame: FrameLike) -> list[dict[str, Any]]:
        """The events of one tracked frame (its live result), in order."""
        self._frame = {
            "seq": int(frame.seq),
            "frame_index": int(result.frame_index),
            "pts": None if frame.pts is None else float(frame.pts),
            "capture_time_ns": int(frame.capture_time_ns),
        }
        now = int(frame.capture_time_ns)
        zones = self.zones()
        names = {z.name for z in zones}
        out: list[dict[str, Any]] = []
        for oid in [o for o in self._tracks if o not in result.masks]:
            out += self._end(oid, "removed")  # removed without `end` being called
        for oid in sorted(result.masks):
            score = result.scores.get(oid)
            present = bool(getattr(score, "present", False))
            track = self._tracks.setdefault(oid, _Track())
            for gone in sorted(track.zones - names):
                out.append(self._zone(oid, track, gone, False, score, "zone_removed"))
            if present:
                track.absent_since_ns, track.absent_frames = None, 0
                if not track.announced:
                    track.announced = True
                    out.append(self._emit("new", oid, track, _state(True, score, track.zones)))
                elif track.lost:
                    track.lost = False
                    out.append(self._emit("found", oid, track, _state(True, score, track.zones)))
                out += self._judge_zones(oid, track, zones, result.masks[oid], score)
            elif track.announced and not track.lost:
                if track.absent_since_ns is None:
                    track.absent_since_ns = now
                track.absent_frames += 1
                if self._is_lost(track, now):
                    for name in sorted(track.zones):
                        out.append(self._zone(oid, track, name, False, score, "lost"))
                    track.lost = True
                    out.append(self._emit("lost", oid, track, _state(False, score, ())))
        return out

    def end(self, object_ids: Iterable[int] | None, reason: str) -> list[dict[str, Any]]:
        """``end`` (after leaving its zones) for the given objects, or all (None);
        objects that never had ``new`` are forgotten silently."""
        if reason not in END_REASONS:
            raise ValueError(f"end reason must be one of {END_REASONS}, got {reason!r}")
        ids = list(self._tracks) if object_ids is None else list(object_ids)
        out: list[dict[str, Any]] = []
        for oid in sorted(ids):
            out += self._end(oid, reason)
        return out

    # -- helpers ----------------------------------------------------------------------------

    def _is_lost(self, track: _Track, now_ns: int) -> bool:
        la = self.lost_after
        if la.frames is not None:
            return track.absent_frames >= la.frames
        assert track.absent_since_ns is not None and la.seconds is not None
        return now_ns - track.absent_since_ns >= la.seconds * 1e9

    def _judge_zones(
        self, oid: int, track: _Track, zones: list[Zone], mask: np.ndarray, score: Any
    ) -> list[dict[str, Any]]:
        area = int(getattr(score, "area", 0) or 0)
        box = getattr(score, "bbox", None)
        leaving, entering = [], []
        for zone in zones:
            frac = zone.fraction(np.asarray(mask, dtype=bool), box, area)
            inside = zone.name in track.zones
            if not inside and frac >= zone.enter:
                entering.append(zone.name)
            elif inside and frac < zone.leave:
                leaving.append(zone.name)
        out = [self._zone(oid, track, n, False, score, None) for n in sorted(leaving)]
        out += [self._zone(oid, track, n, True, score, None) for n in sorted(entering)]
        return out

    def _zone(
        self, oid: int, track: _Track, name: str, enter: bool, score: Any, reason: str | None
    ) -> dict[str, Any]:
        if enter:
            track.zones.add(name)
        else:
            track.zones.discard(name)
        if reason in (None, "zone_removed") and bool(getattr(score, "present", False)):
            after = _state(True, score, track.zones)  # judged on this frame
        else:  # the object is not seen now: its last state, with the zone gone
            after = {**(track.state or _state(False, None, ())), "zones": sorted(track.zones)}
        return self._emit("zone_enter" if enter else "zone_leave", oid, track, after, name, reason)

    def _end(self, oid: int, reason: str) -> list[dict[str, Any]]:
        track = self._tracks.pop(oid, None)
        if track is None or not track.announced:
            return []
        out = []
        last = track.state or _state(False, None, ())
        for name in sorted(track.zones):
            track.zones.discard(name)
            after = {**last, "zones": sorted(track.zones)}
            out.append(self._emit("zone_leave", oid, track, after, name, reason))
            last = after
        after = {**last, "present": False, "zones": []}
        out.append(self._emit("end", oid, track, after, None, reason))
        return out

    def _emit(
        self,
        kind: str,
        oid: int,
        track: _Track,
        after: dict[str, Any],
        zone: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        before, track.state = track.state, after
        self.emitted += 1
        frame = self._frame or {"seq": 0, "frame_index": 0, "pts": None, "capture_time_ns": 0}
        return {
            "event": kind,
            "object_id": int(oid),
            "zone": zone,
            "reason": reason,
            "before": before,
            "after": after,
            **frame,
        }
