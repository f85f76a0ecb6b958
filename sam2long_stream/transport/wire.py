"""The wire format shared by the node's publisher and the subscriber SDK.

One module on purpose: the node encodes and the client decodes with the same code, so the
two cannot drift. It depends on numpy and the standard library only (no torch, no
pycocotools) so that a subscriber stays light. See docs/wire-format.md for the spec.

Masks message, multipart: ``[topic, header JSON, one mask frame per object]`` where the
topic is ``masks/<stream-id>`` (``masks-lagged/<stream-id>`` when ``lag > 0``).
Status message: ``[topic, JSON]`` with topic ``status/<stream-id>``.
Event message: ``[topic, JSON]`` with topic ``events/<stream-id>`` (track events:
new, lost, found, end, zone_enter, zone_leave; `sam2long_stream.events`).
"""

from __future__ import annotations

import json
import math
import operator
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from sam2long_stream.boxes import mask_box
from sam2long_stream.limits import MAX_FRAME_SIDE, quote

if TYPE_CHECKING:  # annotations only
    from sam2long_stream.tracker.results import StepResult

SCHEMA_VERSION = 1

MASKS_PREFIX = "masks"
LAGGED_PREFIX = "masks-lagged"
STATUS_PREFIX = "status"
EVENTS_PREFIX = "events"
# The track events a node sends on events/<stream-id> (docs/wire-format.md, "Event
# message"). Readers must accept event kinds they do not know.
EVENT_KINDS = ("new", "lost", "found", "end", "zone_enter", "zone_leave")

ENCODINGS = ("rle", "bits")
# Every `state` a node publishes on status/<stream-id> (docs/wire-format.md, "Status
# message"): the node starting; the source's events (connected, disconnected,
# reconnecting, resolution, error, eos); the periodic health (waiting: no frame yet or
# the source is down, running, unhealthy: consecutive tracker failures); the end
# (error, then stopped). Readers must accept states they do not know.
STATES = (
    "starting",
    "waiting",
    "connected",
    "disconnected",
    "reconnecting",
    "resolution",
    "running",
    "unhealthy",
    "eos",
    "error",
    "rejected",
    "stopped",
)

# Limits enforced on decode (and on encode, so a node never sends what a client rejects).
MAX_SIDE = MAX_FRAME_SIDE  # width and height each (limits.py: the node's one rule)
MAX_PIXELS = MAX_SIDE * MAX_SIDE
MAX_OBJECTS = 1024
MAX_OBJECT_ID = 2**31 - 1
MAX_HEADER_BYTES = 1 << 20
MAX_INT = 2**63 - 1  # seq, timestamps, counters: what a signed 64-bit reader can hold
_RLE_MAX_CHARS_PER_VALUE = 8  # 40 bits: any run length of a MAX_PIXELS mask fits in 7

_STREAM_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_STATE_RE = re.compile(r"[a-z][a-z_]{0,31}")


class WireFormatError(ValueError):
    """A message that does not follow the wire format (or exceeds its limits)."""


# --------------------------------------------------------------------------- COCO RLE


def rle_counts(mask: np.ndarray) -> np.ndarray:
    """Run lengths of a 2-D mask in column-major order, starting with a run of zeros
    (possibly empty): exactly the counts COCO's ``rleEncode`` produces."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    flat = m.astype(bool, copy=False).ravel(order="F")
    n = flat.size
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [n]))
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.int64, copy=False)


def rle_string_from_counts(counts: np.ndarray | Sequence[int]) -> str:
    """COCO's compressed counts string (``rleToString``): each count, after index 2 as a
    difference to the count two places before, in 5-bit groups with a continuation bit,
    as chars 48..111."""
    x = np.array(counts, dtype=np.int64)
    if x.ndim != 1:
        raise ValueError("counts must be 1-D")
    if x.size > 3:
        x[3:] -= np.asarray(counts, dtype=np.int64)[1:-2]
    n = x.size
    chars = np.zeros((n, _RLE_MAX_CHARS_PER_VALUE + 6), dtype=np.uint8)
    valid = np.zeros(chars.shape, dtype=bool)
    active = np.ones(n, dtype=bool)
    step = 0
    while active.any():
        c = x & 0x1F
        x >>= 5  # arithmetic shift, as in C on a signed long
        more = np.where(c & 0x10, x != -1, x != 0)
        chars[:, step] = (c | (more.astype(np.int64) << 5)) + 48
        valid[:, step] = active
        active &= more
        step += 1
    return chars[valid].tobytes().decode("ascii")


def counts_from_rle_string(counts: bytes | str, height: int, width: int) -> np.ndarray:
    """Parse and validate a COCO compressed counts string (``rleFrString``) for an
    ``height`` x ``width`` mask; raise WireFormatError unless it describes exactly
    ``height * width`` pixels."""
    if isinstance(counts, str):
        try:
            raw = counts.encode("ascii")
        except UnicodeEncodeError:
            raise WireFormatError("RLE counts must be ASCII") from None
    elif isinstance(counts, bytes | bytearray | memoryview):
        raw = bytes(counts)
    else:
        raise WireFormatError(f"RLE counts must be a string, got {type(counts).__name__}")
    height, width = _dims(height, width)
    total = height * width
    if len(raw) == 0:
        raise WireFormatError("RLE counts string is empty")
    if len(raw) > _RLE_MAX_CHARS_PER_VALUE * (total + 1):
        raise WireFormatError(f"RLE counts string too long for a {width}x{height} mask")
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if ((c < 0) | (c > 63)).any():
        raise WireFormatError("RLE counts contain characters outside '0'..'o'")
    ends = np.flatnonzero((c & 0x20) == 0)
    if ends.size == 0 or ends[-1] != c.size - 1:
        raise WireFormatError("RLE counts string ends inside a value")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _RLE_MAX_CHARS_PER_VALUE:
        raise WireFormatError("RLE counts contain a value too large for any mask")
    value_of_char = np.repeat(np.arange(ends.size), lengths)
    k = np.arange(c.size) - starts[value_of_char]
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.int64(1) << (5 * lengths[negative])
    # Undo the deltas: count[m] = x[m] + count[m - 2] for m > 2.
    out = x.copy()
    out[1::2] = np.cumsum(x[1::2])
    out[2::2] = np.cumsum(x[2::2])
    if (out < 0).any():
        raise WireFormatError("RLE counts decode to a negative run length")
    if out.size > total + 1 or int(out.sum()) != total:
        raise WireFormatError(
            f"RLE counts cover {int(out.sum())} pixels, a {width}x{height} mask has {total}"
        )
    return out


def mask_from_counts(counts: np.ndarray, height: int, width: int) -> np.ndarray:
    """Expand validated run lengths (column-major, zeros first) into a bool (H, W) mask."""
    values = (np.arange(counts.size) % 2).astype(bool)
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def rle_from_mask(mask: np.ndarray) -> str:
    """COCO compressed RLE counts string of a 2-D mask, byte-identical to what
    ``pycocotools.mask.encode(np.asfortranarray(mask.astype(np.uint8)))`` gives."""
    return rle_string_from_counts(rle_counts(mask))


def mask_from_rle(counts: bytes | str, height: int, width: int) -> np.ndarray:
    """Decode a COCO compressed RLE counts string to a bool (H, W) mask; raises
    WireFormatError (a ValueError) on anything malformed."""
    return mask_from_counts(counts_from_rle_string(counts, height, width), height, width)


def mask_to_bits(mask: np.ndarray) -> bytes:
    """``np.packbits`` of the row-major mask: fixed size, fast for noisy masks."""
    return np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes()


def mask_from_bits(data: bytes, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`mask_to_bits`; the frame must be exactly ceil(H*W/8) bytes."""
    height, width = _dims(height, width)
    need = (height * width + 7) // 8
    if len(data) != need:
        raise WireFormatError(f"bits frame has {len(data)} bytes, {width}x{height} needs {need}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


# --------------------------------------------------------------------------- JSON


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, non-finite floats as None."""
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_json(value: Any) -> bytes:
    """Compact strict JSON (UTF-8): numpy values unwrapped, NaN/inf sent as null."""
    return json.dumps(_jsonable(value), separators=(",", ":"), allow_nan=False).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_json(data: bytes | str) -> Any:
    """Strict JSON: NaN/Infinity rejected, out-of-range floats (1e999) rejected."""
    value = json.loads(data, parse_constant=_reject_constant)
    _check_finite(value)
    return value


def _check_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, dict):
        for v in value.values():
            _check_finite(v)
    elif isinstance(value, list):
        for v in value:
            _check_finite(v)


# --------------------------------------------------------------------------- messages


def check_stream_id(stream_id: str) -> str:
    """Stream ids are topic suffixes: 1-64 chars of [A-Za-z0-9._-], no slash."""
    if not isinstance(stream_id, str) or not _STREAM_ID_RE.fullmatch(stream_id):
        raise ValueError(
            f"stream id must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with "
            f". _ -), got {quote(stream_id)}"
        )
    return stream_id


def masks_topic(stream_id: str, lag: int = 0) -> str:
    return f"{LAGGED_PREFIX if lag > 0 else MASKS_PREFIX}/{stream_id}"


def status_topic(stream_id: str) -> str:
    return f"{STATUS_PREFIX}/{stream_id}"


def events_topic(stream_id: str) -> str:
    return f"{EVENTS_PREFIX}/{stream_id}"


def _check_size(height: Any, width: Any) -> None:
    for name, v in (("height", height), ("width", width)):
        if type(v) is not int or not 1 <= v <= MAX_SIDE:
            raise WireFormatError(f"{name} must be an int in 1..{MAX_SIDE}, got {v!r}")
    if height * width > MAX_PIXELS:
        raise WireFormatError(f"{width}x{height} exceeds {MAX_PIXELS} pixels")


def _dims(height: Any, width: Any) -> tuple[int, int]:
    """Accept numpy ints from callers; header values are checked strictly elsewhere."""
    try:
        h, w = operator.index(height), operator.index(width)
    except TypeError:
        raise WireFormatError(f"mask size must be ints, got {height!r} x {width!r}") from None
    _check_size(h, w)
    return h, w


def encode_masks(
    stream_id: str,
    result: StepResult,
    *,
    seq: int,
    pts: float | None,
    capture_time_ns: int,
    dropped_frames: int = 0,
    lag: int = 0,
    encoding: str = "rle",
    publish_time_ns: int | None = None,
    pub_seq: int | None = None,
) -> list[bytes]:
    """Multipart masks message for one tracker result; objects in ascending id order.
    ``pub_seq`` is the publisher's number for this message on its topic (0, 1, 2, ...):
    a subscriber's own losses are the gaps in it."""
    check_stream_id(stream_id)
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    h, w = int(result.height), int(result.width)
    _check_size(h, w)
    if len(result.masks) > MAX_OBJECTS:
        raise ValueError(f"{len(result.masks)} objects exceed the limit of {MAX_OBJECTS}")
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    objects: list[dict[str, Any]] = []
    frames: list[bytes] = []
    for oid in sorted(result.masks):
        mask = np.asarray(result.masks[oid])
        if mask.shape != (h, w):
            raise ValueError(f"mask of object {oid} has shape {mask.shape}, result is {(h, w)}")
        if not 0 <= int(oid) <= MAX_OBJECT_ID:
            raise ValueError(f"object id {oid} outside 0..{MAX_OBJECT_ID}")
        mask = mask.astype(bool, copy=False)
        s = result.scores.get(oid)
        if s is not None:
            area, bbox = int(s.area), s.bbox
            obj: dict[str, Any] = {
                "id": int(oid),
                "present": bool(s.present),
                "iou": s.iou,
                "object_score_logit": s.object_score_logit,
                "cumulative_score": s.cumulative_score,
                "bbox": None if bbox is None else [int(v) for v in bbox],
                "area": area,
                "pathway_id": None if s.pathway_id is None else int(s.pathway_id),
                "pathway_switched": bool(s.pathway_switched),
            }
        else:  # a mask without scores: describe what can be measured
            area = int(mask.sum())
            bbox = mask_box(mask)
            obj = {
                "id": int(oid),
                "present": area > 0,
                "iou": None,
                "object_score_logit": None,
                "cumulative_score": None,
                "bbox": None if bbox is None else list(bbox),
                "area": area,
                "pathway_id": None,
                "pathway_switched": False,
            }
        obj["encoding"] = encoding
        objects.append(obj)
        frames.append(
            rle_from_mask(mask).encode("ascii") if encoding == "rle" else mask_to_bits(mask)
        )
    header = {
        "schema": SCHEMA_VERSION,
        "type": "masks",
        "stream_id": stream_id,
        "seq": int(seq),
        "frame_index": int(result.frame_index),
        "pts": None if pts is None else float(pts),
        "capture_time_ns": int(capture_time_ns),
        "publish_time_ns": time.time_ns() if publish_time_ns is None else int(publish_time_ns),
        "width": w,
        "height": h,
        "dropped_frames": int(dropped_frames),
        "pathway_switched": any(o["pathway_switched"] for o in objects),
        "lag": int(lag),
        "objects": objects,
    }
    if pub_seq is not None:
        header["pub_seq"] = int(pub_seq)
    return [masks_topic(stream_id, lag).encode(), dumps_json(header), *frames]


_STATUS_RESERVED = ("schema", "type", "stream_id", "state")


def encode_status(stream_id: str, state: str, **fields: Any) -> list[bytes]:
    """Two-part status message; ``time_ns`` defaults to now, other fields are free-form
    JSON values (known ones: width, height, fps, latency_ms, dropped_frames,
    dropped_messages, error, objects)."""
    check_stream_id(stream_id)
    if not isinstance(state, str) or not _STATE_RE.fullmatch(state):
        raise ValueError(f"state must be a short lowercase word, got {state!r}")
    bad = [k for k in fields if k in _STATUS_RESERVED]
    if bad:
        raise ValueError(f"status fields {bad} are set by encode_status itself")
    body = {"schema": SCHEMA_VERSION, "type": "status", "stream_id": stream_id, "state": state}
    body["time_ns"] = int(fields.pop("time_ns", None) or time.time_ns())
    body.update(fields)
    data = dumps_json(body)
    if len(data) > MAX_HEADER_BYTES:
        raise ValueError(f"status message of {len(data)} bytes exceeds {MAX_HEADER_BYTES}")
    return [status_topic(stream_id).encode(), data]


_EVENT_FIELDS = (
    "event",
    "object_id",
    "zone",
    "reason",
    "before",
    "after",
    "seq",
    "frame_index",
    "pts",
    "capture_time_ns",
)


def encode_event(
    stream_id: str, event: Mapping[str, Any], *, event_seq: int, time_ns: int | None = None
) -> list[bytes]:
    """Two-part event message from a `sam2long_stream.events` event dict; ``event_seq``
    numbers the stream's events (0, 1, 2, ...: a reader's gaps are its losses)."""
    check_stream_id(stream_id)
    missing = [k for k in _EVENT_FIELDS if k not in event]
    if missing:
        raise ValueError(f"event lacks {missing}")
    body: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "type": "event",
        "stream_id": stream_id,
        "event_seq": int(event_seq),
        "time_ns": time.time_ns() if time_ns is None else int(time_ns),
    }
    body.update({k: event[k] for k in _EVENT_FIELDS})
    return [events_topic(stream_id).encode(), dumps_json(body)]


class _FrameFields:
    """Header fields a masks message and an event message share (the frame they are of)."""

    header: dict[str, Any]

    @property
    def stream_id(self) -> str:
        return self.header["stream_id"]

    @property
    def seq(self) -> int:
        return self.header["seq"]

    @property
    def frame_index(self) -> int:
        return self.header["frame_index"]

    @property
    def pts(self) -> float | None:
        return self.header["pts"]

    @property
    def capture_time_ns(self) -> int:
        return self.header["capture_time_ns"]


@dataclass(eq=False)
class MasksMessage(_FrameFields):
    """A decoded masks message. ``masks`` is expanded on first access (the frames were
    validated by :func:`decode`, so it does not raise)."""

    topic: str
    header: dict[str, Any]
    frames: list[bytes] = field(repr=False)
    received_time_ns: int = field(default_factory=time.time_ns)
    _counts: list[np.ndarray | None] = field(default_factory=list, repr=False)

    @property
    def objects(self) -> list[dict[str, Any]]:
        return self.header["objects"]

    @property
    def object_ids(self) -> list[int]:
        return [o["id"] for o in self.header["objects"]]

    @property
    def width(self) -> int:
        return self.header["width"]

    @property
    def height(self) -> int:
        return self.header["height"]

    @property
    def lag(self) -> int:
        return self.header["lag"]

    @property
    def dropped_frames(self) -> int:
        return self.header["dropped_frames"]

    @property
    def pub_seq(self) -> int | None:
        """The publisher's number for this message on its topic; None from a publisher
        that does not number its messages."""
        return self.header.get("pub_seq")

    @property
    def publish_time_ns(self) -> int:
        return self.header["publish_time_ns"]

    @property
    def latency_ms(self) -> float:
        """Capture to receipt, in ms (wall clocks: meaningful across hosts only if synced)."""
        return (self.received_time_ns - self.capture_time_ns) / 1e6

    @property
    def node_latency_ms(self) -> float:
        """Capture to publish inside the node, in ms (one clock, always meaningful)."""
        return (self.publish_time_ns - self.capture_time_ns) / 1e6

    def mask(self, object_id: int) -> np.ndarray:
        """The bool (H, W) mask of one object (KeyError if absent)."""
        return self.masks[object_id]

    @cached_property
    def masks(self) -> dict[int, np.ndarray]:
        h, w = self.height, self.width
        out: dict[int, np.ndarray] = {}
        for i, obj in enumerate(self.objects):
            counts = self._counts[i] if i < len(self._counts) else None
            if counts is not None:
                out[obj["id"]] = mask_from_counts(counts, h, w)
            else:
                out[obj["id"]] = mask_from_bits(self.frames[i], h, w)
        return out


@dataclass(eq=False)
class StatusMessage:
    """A decoded status message; extra fields are in ``header`` (and ``get``)."""

    topic: str
    header: dict[str, Any]
    received_time_ns: int = field(default_factory=time.time_ns)

    @property
    def stream_id(self) -> str:
        return self.header["stream_id"]

    @property
    def state(self) -> str:
        return self.header["state"]

    @property
    def time_ns(self) -> int:
        return self.header["time_ns"]

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)


@dataclass(eq=False)
class EventMessage(_FrameFields):
    """A decoded track event (``event``: new, lost, found, end, zone_enter, zone_leave
    or a kind this reader does not know); every field is in ``header``."""

    topic: str
    header: dict[str, Any]
    received_time_ns: int = field(default_factory=time.time_ns)

    @property
    def event(self) -> str:
        return self.header["event"]

    @property
    def object_id(self) -> int:
        return self.header["object_id"]

    @property
    def zone(self) -> str | None:
        return self.header["zone"]

    @property
    def reason(self) -> str | None:
        return self.header["reason"]

    @property
    def before(self) -> dict[str, Any] | None:
        return self.header["before"]

    @property
    def after(self) -> dict[str, Any]:
        return self.header["after"]

    @property
    def event_seq(self) -> int:
        return self.header["event_seq"]

    @property
    def time_ns(self) -> int:
        return self.header["time_ns"]

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)


Message = MasksMessage | StatusMessage | EventMessage


# --------------------------------------------------------------------------- decoding


def _field(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise WireFormatError(f"{where} lacks field {key!r}")
    return d[key]


def _int(d: Mapping[str, Any], key: str, where: str, lo: int, hi: int = MAX_INT) -> int:
    v = _field(d, key, where)
    if type(v) is not int or not lo <= v <= hi:
        raise WireFormatError(f"{where} field {key!r} must be an int in {lo}..{hi}, got {v!r}")
    return v


def _num_or_null(d: Mapping[str, Any], key: str, where: str) -> None:
    v = _field(d, key, where)
    if v is not None and (type(v) not in (int, float) or not math.isfinite(v)):
        raise WireFormatError(f"{where} field {key!r} must be a finite number or null")


def _bool(d: Mapping[str, Any], key: str, where: str) -> None:
    if type(_field(d, key, where)) is not bool:
        raise WireFormatError(f"{where} field {key!r} must be a boolean")


def _topic(raw: bytes) -> str:
    if not isinstance(raw, bytes | bytearray | memoryview) or len(raw) > 256:
        raise WireFormatError("topic frame is missing or too long")
    try:
        return bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise WireFormatError("topic is not ASCII") from None


def _header(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_HEADER_BYTES:
        raise WireFormatError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = loads_json(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireFormatError(f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise WireFormatError("header must be a JSON object")
    schema = header.get("schema")
    if schema != SCHEMA_VERSION or type(schema) is not int:
        raise WireFormatError(f"unsupported schema {schema!r}; this decoder reads {SCHEMA_VERSION}")
    stream_id = header.get("stream_id")
    try:
        check_stream_id(stream_id)  # type: ignore[arg-type]
    except ValueError as e:
        raise WireFormatError(str(e)) from None
    return header


def decode(parts: Sequence[bytes], *, received_time_ns: int | None = None) -> Message:
    """Decode and validate a multipart message; raise WireFormatError on any violation."""
    if not isinstance(parts, Sequence) or len(parts) < 2:
        raise WireFormatError("a message has at least a topic and a header frame")
    if len(parts) > MAX_OBJECTS + 2:
        raise WireFormatError(f"message has {len(parts)} frames, at most {MAX_OBJECTS + 2}")
    topic = _topic(parts[0])
    header = _header(parts[1])
    recv_ns = time.time_ns() if received_time_ns is None else received_time_ns
    kind = header.get("type")
    if kind == "status":
        return _decode_status(topic, header, parts, recv_ns)
    if kind == "masks":
        return _decode_masks(topic, header, parts, recv_ns)
    if kind == "event":
        return _decode_event(topic, header, parts, recv_ns)
    raise WireFormatError(f"unknown message type {kind!r}")


def _decode_status(topic: str, header: dict, parts: Sequence[bytes], recv_ns: int) -> Message:
    if len(parts) != 2:
        raise WireFormatError(f"status message has {len(parts)} frames, expected 2")
    if topic != status_topic(header["stream_id"]):
        raise WireFormatError(f"topic {topic!r} does not match stream {header['stream_id']!r}")
    state = _field(header, "state", "status")
    if not isinstance(state, str) or not _STATE_RE.fullmatch(state):
        raise WireFormatError(f"status state must be a short lowercase word, got {state!r}")
    _int(header, "time_ns", "status", 0)
    for key in ("width", "height", "dropped_frames", "dropped_messages"):
        if header.get(key) is not None:
            _int(header, key, "status", 0)
    for key in ("fps", "latency_ms"):
        if header.get(key) is not None:
            _num_or_null(header, key, "status")
    if header.get("error") is not None and not isinstance(header["error"], str):
        raise WireFormatError("status field 'error' must be a string")
    return StatusMessage(topic, header, recv_ns)


def _object_state(value: Any, where: str) -> None:
    """An event's ``before``/``after``: present, box, area, score, zones."""
    if not isinstance(value, dict):
        raise WireFormatError(f"{where} must be a JSON object")
    _bool(value, "present", where)
    box = _field(value, "box", where)
    if box is not None and (
        not isinstance(box, list) or len(box) != 4 or any(type(v) is not int for v in box)
    ):
        raise WireFormatError(f"{where} box must be [x0, y0, x1, y1] or null")
    _int(value, "area", where, 0, MAX_PIXELS)
    _num_or_null(value, "score", where)
    zones = _field(value, "zones", where)
    if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
        raise WireFormatError(f"{where} zones must be a list of names")


def _decode_event(topic: str, header: dict, parts: Sequence[bytes], recv_ns: int) -> Message:
    if len(parts) != 2:
        raise WireFormatError(f"event message has {len(parts)} frames, expected 2")
    if topic != events_topic(header["stream_id"]):
        raise WireFormatError(f"topic {topic!r} does not match stream {header['stream_id']!r}")
    kind = _field(header, "event", "event")
    if not isinstance(kind, str) or not _STATE_RE.fullmatch(kind):
        raise WireFormatError(f"event kind must be a short lowercase word, got {kind!r}")
    _int(header, "object_id", "event", 0, MAX_OBJECT_ID)
    for key in ("event_seq", "time_ns", "seq", "frame_index", "capture_time_ns"):
        _int(header, key, "event", 0)
    _num_or_null(header, "pts", "event")
    for key in ("zone", "reason"):
        v = _field(header, key, "event")
        if v is not None and not isinstance(v, str):
            raise WireFormatError(f"event field {key!r} must be a string or null")
    if _field(header, "before", "event") is not None:
        _object_state(header["before"], "event before")
    _object_state(_field(header, "after", "event"), "event after")
    return EventMessage(topic, header, recv_ns)


def _decode_masks(topic: str, header: dict, parts: Sequence[bytes], recv_ns: int) -> Message:
    h, w = _field(header, "height", "header"), _field(header, "width", "header")
    _check_size(h, w)
    for key in ("seq", "frame_index", "capture_time_ns", "publish_time_ns", "dropped_frames"):
        _int(header, key, "header", 0)
    if header.get("pub_seq") is not None:  # optional: absent from older publishers
        _int(header, "pub_seq", "header", 0)
    lag = _int(header, "lag", "header", 0, 1 << 20)
    if topic != masks_topic(header["stream_id"], lag):
        raise WireFormatError(
            f"topic {topic!r} does not match stream {header['stream_id']!r} with lag {lag}"
        )
    _num_or_null(header, "pts", "header")
    _bool(header, "pathway_switched", "header")
    objects = _field(header, "objects", "header")
    if not isinstance(objects, list):
        raise WireFormatError("header field 'objects' must be a list")
    if len(objects) > MAX_OBJECTS:
        raise WireFormatError(f"{len(objects)} objects exceed the limit of {MAX_OBJECTS}")
    if len(parts) != 2 + len(objects):
        raise WireFormatError(
            f"header lists {len(objects)} objects but the message has {len(parts) - 2} mask frames"
        )
    seen: set[int] = set()
    counts: list[np.ndarray | None] = []
    frames = [bytes(p) for p in parts[2:]]
    for i, obj in enumerate(objects):
        where = f"object #{i}"
        if not isinstance(obj, dict):
            raise WireFormatError(f"{where} must be a JSON object")
        oid = _int(obj, "id", where, 0, MAX_OBJECT_ID)
        if oid in seen:
            raise WireFormatError(f"object id {oid} appears twice")
        seen.add(oid)
        _bool(obj, "present", where)
        _bool(obj, "pathway_switched", where)
        for key in ("iou", "object_score_logit", "cumulative_score"):
            _num_or_null(obj, key, where)
        _int(obj, "area", where, 0, h * w)
        pid = _field(obj, "pathway_id", where)
        if pid is not None and type(pid) is not int:
            raise WireFormatError(f"{where} field 'pathway_id' must be an int or null")
        bbox = _field(obj, "bbox", where)
        if bbox is not None and (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or any(type(v) is not int for v in bbox)
            or not (0 <= bbox[0] <= bbox[2] < w and 0 <= bbox[1] <= bbox[3] < h)
        ):
            raise WireFormatError(f"{where} bbox must be [x0, y0, x1, y1] inside the frame")
        enc = _field(obj, "encoding", where)
        if enc == "rle":
            counts.append(counts_from_rle_string(frames[i], h, w))
        elif enc == "bits":
            need = (h * w + 7) // 8
            if len(frames[i]) != need:
                raise WireFormatError(
                    f"{where} bits frame has {len(frames[i])} bytes, {w}x{h} needs {need}"
                )
            counts.append(None)
        else:
            raise WireFormatError(f"{where} has unknown encoding {enc!r}")
    return MasksMessage(topic, header, frames, recv_ns, counts)
