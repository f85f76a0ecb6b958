"""Control requests: JSON in, typed dataclasses out, every mistake a clear ControlError.

Parsing checks everything that does not need the frame size (types, finiteness, box
order, labels, mask size and RLE); the handler checks the rest with ``Prompt.validate``.
Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": "<sentence>"}``.
See docs/wire-format.md ("Control socket").

Every request may name the stream it is about (``"stream": "cam1"``); a node with
several streams requires it (except ``status``, which then describes the whole node),
a node with one stream takes it as optional. ``add_stream``/``remove_stream`` change the
node's streams at run time.

A prompt for an object that is already tracked re-conditions it, as SAM 2 does: the
object keeps its id and its best pathway's memory, the new prompt joins its
conditioning frames, and its pool restarts from that pathway (score reset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sam2long_stream.events.zones import Zone, zone_from_table
from sam2long_stream.limits import quote
from sam2long_stream.tracker.config import Prompt  # torch-free, as is tracker/__init__
from sam2long_stream.transport import wire

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
MAX_REQUEST_BYTES = 8 << 20
MAX_POINTS = 64
MAX_COORD = 65536.0  # |x|, |y| in pixels; larger than any frame the wire format allows
MAX_MASK_PIXELS = 1 << 26  # 8192 x 8192
MAX_OBJECT_ID = wire.MAX_OBJECT_ID
MAX_FRAME_SEQ = wire.MAX_INT


class ControlError(ValueError):
    """A request that cannot be carried out; the message is the reply's ``error``."""


@dataclass(frozen=True)
class AddObject:
    """Prompt an object (or re-prompt a tracked one: see the module docstring).
    ``object_id`` None lets the node pick the smallest free id; ``frame_seq`` is the
    source frame the prompt was drawn on (informative: the node applies the prompt to
    its next frame)."""

    object_id: int | None
    prompt: Prompt
    frame_seq: int | None = None
    stream: str | None = None


@dataclass(frozen=True)
class RemoveObject:
    object_id: int
    stream: str | None = None


@dataclass(frozen=True)
class Reset:
    """Forget every object of the stream."""

    stream: str | None = None


@dataclass(frozen=True)
class Status:
    """Ask for a stream's state (or, with several streams and no ``stream``, the node's)."""

    stream: str | None = None


@dataclass(frozen=True)
class SetOption:
    key: str
    value: Any
    stream: str | None = None


@dataclass(frozen=True)
class AddStream:
    """Start tracking one more camera. ``stream`` None: the node picks ``camN``;
    ``prompts`` (object id -> Prompt) go with the new stream's first frame."""

    source: str
    stream: str | None = None
    prompts: Mapping[int, Prompt] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoveStream:
    """Stop one stream (its source, its objects); the others go on."""

    stream: str


@dataclass(frozen=True)
class AddZone:
    """Add (or replace) a named polygon zone of a stream; judged from its next frame."""

    zone: Zone
    stream: str | None = None


@dataclass(frozen=True)
class RemoveZone:
    name: str
    stream: str | None = None


Request = (
    AddObject
    | RemoveObject
    | Reset
    | Status
    | SetOption
    | AddStream
    | RemoveStream
    | AddZone
    | RemoveZone
)


def _int_range(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if type(v) is not int or not lo <= v <= hi:
            raise ControlError(f"{name} must be an integer in {lo}..{hi}, got {_show(v)}")
        return v

    return check


# Runtime options accepted by "set": name -> validator. num_pathways is taken up when the
# stream's next add_object is applied; from that frame on it holds for every object of
# the stream (existing pools grow from copies of their pathways or keep their best).
SETTABLE: dict[str, Callable[[str, Any], Any]] = {
    "num_pathways": _int_range(1, 16),
}

_OPS = (
    "add_object",
    "remove_object",
    "reset",
    "status",
    "set",
    "add_stream",
    "remove_stream",
    "add_zone",
    "remove_zone",
)
MAX_SOURCE_CHARS = 4096
MAX_STREAM_PROMPTS = wire.MAX_OBJECTS


def _show(v: Any) -> str:
    """A short rendering of a bad value for an error message (limits.quote)."""
    return quote(v)


def _keys(req: Mapping[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    unknown = sorted(set(req) - set(allowed) - {"op", "stream"})
    if unknown:
        more = f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""
        raise ControlError(
            f"unknown field(s) {', '.join(map(_show, unknown[:4]))}{more} for op "
            f"{req['op']!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    missing = [k for k in required if k not in req]
    if missing:
        raise ControlError(f"op {req['op']!r} needs field(s) {', '.join(map(repr, missing))}")


def _number(name: str, v: Any) -> float:
    if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > MAX_COORD:
        raise ControlError(f"{name} must be a finite number within ±{MAX_COORD:g}, got {_show(v)}")
    return float(v)


def _object_id(v: Any) -> int:
    return _int_range(0, MAX_OBJECT_ID)("object_id", v)


def _box(v: Any) -> tuple[float, float, float, float]:
    if not isinstance(v, list) or len(v) != 4:
        raise ControlError(f"box must be a list of 4 numbers [x0, y0, x1, y1], got {_show(v)}")
    x0, y0, x1, y1 = (_number("box values", c) for c in v)
    if not (x0 < x1 and y0 < y1):
        raise ControlError(f"box must have x0 < x1 and y0 < y1, got {_show(v)}")
    return x0, y0, x1, y1


def _points(points: Any, labels: Any) -> tuple[tuple[tuple[float, float], ...], tuple[int, ...]]:
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_POINTS:
        raise ControlError(f"points must be a list of 1..{MAX_POINTS} [x, y] pairs")
    pts = []
    for p in points:
        if not isinstance(p, list) or len(p) != 2:
            raise ControlError(f"each point must be [x, y], got {_show(p)}")
        pts.append((_number("point coordinates", p[0]), _number("point coordinates", p[1])))
    if not isinstance(labels, list) or len(labels) != len(pts):
        raise ControlError(
            f"labels must be a list with one label per point ({len(pts)}), got {_show(labels)}"
        )
    if any(type(lab) is not int or lab not in (0, 1) for lab in labels):
        raise ControlError(f"labels must be 1 (positive) or 0 (negative), got {_show(labels)}")
    return tuple(pts), tuple(labels)


FrameSize = Callable[[str | None], tuple[int, int] | None]  # stream -> (height, width)


def _mask(v: Any, frame: tuple[int, int] | None = None) -> Any:
    if not isinstance(v, dict) or set(v) != {"size", "counts"}:
        raise ControlError('mask must be {"size": [height, width], "counts": "<COCO RLE>"}')
    size = v["size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or any(type(s) is not int or not 1 <= s <= wire.MAX_SIDE for s in size)
    ):
        raise ControlError(f"mask size must be [height, width] in 1..{wire.MAX_SIDE}")
    h, w = size
    if h * w > MAX_MASK_PIXELS:
        raise ControlError(f"mask of {w}x{h} exceeds the limit of {MAX_MASK_PIXELS} pixels")
    counts = v["counts"]
    if not isinstance(counts, str):
        raise ControlError("mask counts must be a COCO compressed RLE string")
    if frame is not None and (h, w) != frame:  # refused before any decoding work
        raise ControlError(f"mask prompt is {w}x{h}, the frame is {frame[1]}x{frame[0]}")
    try:
        mask = wire.mask_from_rle(counts, h, w)
    except ValueError as e:
        raise ControlError(f"mask counts are not a valid RLE for {w}x{h}: {e}") from None
    if not mask.any():
        raise ControlError("mask prompt is empty")
    return mask


def _add_object(req: Mapping[str, Any], frame_size: FrameSize | None = None) -> AddObject:
    _keys(req, ("object_id", "box", "points", "labels", "mask", "frame_seq", "stream"), ())
    oid = req.get("object_id")
    if oid is not None:
        oid = _object_id(oid)
    seq = req.get("frame_seq")
    if seq is not None:
        seq = _int_range(0, MAX_FRAME_SEQ)("frame_seq", seq)
    box, points, labels, mask = (req.get(k) for k in ("box", "points", "labels", "mask"))
    if box is None and points is None and mask is None:
        raise ControlError("add_object needs a box, points (with labels) or a mask")
    if mask is not None and (box is not None or points is not None):
        raise ControlError("a mask prompt cannot be combined with a box or points")
    if (points is None) != (labels is None):
        raise ControlError("points and labels must be given together")
    pts, labs = _points(points, labels) if points is not None else (None, None)
    prompt = Prompt(
        box=None if box is None else _box(box),
        points=pts,
        labels=labs,
        mask=None if mask is None else _mask(mask, frame_size and frame_size(_stream(req))),
    )
    return AddObject(oid, prompt, seq, _stream(req))


def _set(req: Mapping[str, Any]) -> SetOption:
    _keys(req, ("key", "value", "stream"), ("key", "value"))
    key = req["key"]
    if not isinstance(key, str) or key not in SETTABLE:
        raise ControlError(f"key must be one of {', '.join(SETTABLE)}, got {_show(key)}")
    return SetOption(key, SETTABLE[key](key, req["value"]), _stream(req))


def _stream(req: Mapping[str, Any], required: bool = False) -> str | None:
    """The request's ``stream`` (a topic-safe stream id), or None when not given."""
    sid = req.get("stream")
    if sid is None:
        if required:
            raise ControlError(f"op {req['op']!r} needs field 'stream' (a stream id)")
        return None
    if not isinstance(sid, str):
        raise ControlError(f"stream must be a stream id (a string), got {_show(sid)}")
    try:
        return wire.check_stream_id(sid)
    except ValueError as e:
        raise ControlError(f"bad stream {_show(sid)}: {e}") from None


def _add_stream(req: Mapping[str, Any]) -> AddStream:
    _keys(req, ("source", "stream", "prompts"), ("source",))
    source = req["source"]
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS:
        raise ControlError(
            f"source must be a non-empty URL or path of at most {MAX_SOURCE_CHARS} characters"
        )
    tables = req.get("prompts", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ControlError('prompts must be a list of {"object_id": N, "box": [...]} objects')
    if len(tables) > MAX_STREAM_PROMPTS:
        raise ControlError(f"at most {MAX_STREAM_PROMPTS} prompts, got {len(tables)}")
    prompts: dict[int, Prompt] = {}
    for n, table in enumerate(tables, 1):
        if "object_id" not in table:
            raise ControlError(f"prompt #{n} needs an object_id")
        if "frame_seq" in table or "stream" in table:
            raise ControlError(f"prompt #{n}: frame_seq and stream do not apply here")
        try:
            add = _add_object({**table, "op": "add_object"})
        except ControlError as e:
            raise ControlError(f"prompt #{n}: {e}") from None
        assert add.object_id is not None
        if add.object_id in prompts:
            raise ControlError(f"two prompts for object {add.object_id}")
        prompts[add.object_id] = add.prompt
    return AddStream(source.strip(), _stream(req), prompts)


def decode_request(data: bytes | str, max_bytes: int = MAX_REQUEST_BYTES) -> dict[str, Any]:
    """Strict JSON object from raw bytes, at most ``max_bytes`` long."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise ControlError(f"request is {size} bytes, the limit is {max_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        req = wire.loads_json(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ControlError(f"request is not valid JSON ({e})") from None
    if not isinstance(req, dict):
        raise ControlError(f"request must be a JSON object, got {type(req).__name__}")
    return req


def parse_request(
    data: bytes | str | Mapping[str, Any], frame_size: FrameSize | None = None
) -> Request:
    """Validate a request (raw JSON or an already decoded dict) into a typed Request.
    `frame_size` tells a stream's current frame size, so that a mask prompt of another
    size is refused before its RLE is decoded."""
    req = decode_request(data) if isinstance(data, bytes | bytearray | str) else data
    if not isinstance(req, Mapping):
        raise ControlError(f"request must be a JSON object, got {type(req).__name__}")
    op = req.get("op")
    if not isinstance(op, str) or op not in _OPS:
        raise ControlError(f"op must be one of {', '.join(_OPS)}, got {_show(op)}")
    if op == "add_object":
        return _add_object(req, frame_size)
    if op == "remove_object":
        _keys(req, ("object_id",), ("object_id",))
        return RemoveObject(_object_id(req["object_id"]), _stream(req))
    if op == "set":
        return _set(req)
    if op == "add_stream":
        return _add_stream(req)
    if op == "add_zone":
        _keys(req, ("name", "polygon", "enter", "leave"), ("name", "polygon"))
        fields = {k: v for k, v in req.items() if k not in ("op", "stream")}
        try:
            return AddZone(zone_from_table(fields, "add_zone"), _stream(req))
        except ControlError:
            raise
        except ValueError as e:
            raise ControlError(str(e)) from None
    if op == "remove_zone":
        _keys(req, ("name",), ("name",))
        if not isinstance(req["name"], str):
            raise ControlError(f"name must be a zone name, got {_show(req['name'])}")
        return RemoveZone(req["name"], _stream(req))
    _keys(req, (), ())
    if op == "remove_stream":
        sid = _stream(req, required=True)
        assert sid is not None
        return RemoveStream(sid)
    return Reset(_stream(req)) if op == "reset" else Status(_stream(req))
