"""Wire format: COCO RLE compatibility with pycocotools both ways, header roundtrip and
strict rejection of malformed messages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pycocotools import mask as coco

from sam2long_stream.tracker.results import ObjectScore, StepResult
from sam2long_stream.transport import wire
from sam2long_stream.transport.wire import MasksMessage, StatusMessage, WireFormatError

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis is optional
    HAVE_HYPOTHESIS = False

# pycocotools' decode trips a numpy 2 deprecation inside its own code; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def coco_counts(mask: np.ndarray) -> str:
    return coco.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def random_masks(seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 7), (7, 1), (2, 3), (3, 2), (5, 5), (17, 31), (31, 17), (64, 48)]
    shapes += [tuple(int(v) for v in rng.integers(1, 80, 2)) for _ in range(40)]
    for h, w in shapes:
        yield np.zeros((h, w), bool)
        yield np.ones((h, w), bool)
        for p in (0.02, 0.5, 0.97):
            yield rng.random((h, w)) < p
        blob = np.zeros((h, w), bool)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        blob[y0 : y0 + 1 + h // 2, x0 : x0 + 1 + w // 3] = True
        yield blob
        corner = np.zeros((h, w), bool)
        corner[0, 0] = corner[-1, -1] = True
        yield corner


def test_rle_encoder_matches_pycocotools_exactly():
    n = 0
    for m in random_masks():
        assert wire.rle_from_mask(m) == coco_counts(m), m.shape
        n += 1
    assert n > 300


def test_rle_roundtrip_both_directions():
    for m in random_masks(1):
        h, w = m.shape
        ours = wire.rle_from_mask(m)
        # pycocotools decodes what we send (as the bytes of the frame) ...
        back = coco.decode({"size": [h, w], "counts": ours.encode("ascii")})
        np.testing.assert_array_equal(back.astype(bool), m)
        # ... and we decode what pycocotools produces, from str or bytes.
        theirs = coco.encode(np.asfortranarray(m.astype(np.uint8)))["counts"]
        for counts in (theirs, theirs.decode()):
            dec = wire.mask_from_rle(counts, h, w)
            assert dec.dtype == bool and dec.shape == (h, w) and dec.flags.c_contiguous
            np.testing.assert_array_equal(dec, m)


def test_rle_large_mask_and_numpy_sizes():
    m = np.zeros((1080, 1920), bool)
    m[200:700, 300:900] = True
    m[900:, 1800:] = True
    s = wire.rle_from_mask(m)
    assert s == coco_counts(m)
    np.testing.assert_array_equal(wire.mask_from_rle(s, np.int64(1080), np.int32(1920)), m)


def test_worked_example_from_docs():
    m = np.zeros((3, 4), bool)
    m[1, 1:3] = True
    assert wire.rle_counts(m).tolist() == [4, 1, 2, 1, 4]
    assert wire.rle_from_mask(m) == "41202" == coco_counts(m)
    assert wire.mask_to_bits(m) == bytes([0b00000110, 0b00000000])
    assert wire.rle_from_mask(np.zeros((3, 4), bool)) == "<"
    assert wire.rle_from_mask(np.ones((3, 4), bool)) == "0<"


@pytest.mark.parametrize(
    "counts,h,w",
    [
        ("", 3, 4),  # empty
        ("41201", 3, 4),  # covers 11 pixels, not 12
        ("412023", 3, 4),  # covers more
        ("4120\x7f", 3, 4),  # char outside '0'..'o'
        ("4120p", 3, 4),  # 'p' = 64 is outside too
        ("412 02", 3, 4),
        ("41202`", 3, 4),  # ends with a continuation char
        ("4O", 3, 4),  # negative run (0x1f | 0x10 sign)
        ("ooooooooo0", 3, 4),  # absurdly long value
        ("é", 3, 4),
        ("<", 0, 4),
        ("<", 3, 20000),
    ],
)
def test_rle_decoder_rejects_garbage(counts, h, w):
    with pytest.raises(WireFormatError):
        wire.mask_from_rle(counts, h, w)


def test_bits_roundtrip_and_length_check():
    for m in random_masks(2):
        h, w = m.shape
        data = wire.mask_to_bits(m)
        assert data == np.packbits(m.ravel()).tobytes()
        np.testing.assert_array_equal(wire.mask_from_bits(data, h, w), m)
    with pytest.raises(WireFormatError):
        wire.mask_from_bits(b"\x00" * 3, 3, 4)


# --------------------------------------------------------------------------- messages


def make_result(h: int = 37, w: int = 53, n: int = 3, seed: int = 0) -> StepResult:
    rng = np.random.default_rng(seed)
    masks, scores = {}, {}
    for k in range(n):
        oid = [0, 7, 3, 12][k % 4] + 20 * (k // 4)
        m = rng.random((h, w)) < (0.3 if k else 0.0)  # object 0 absent (empty mask)
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        bbox = (
            None if rows.size == 0 else (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
        )
        masks[oid] = m
        scores[oid] = ObjectScore(
            object_id=oid,
            iou=np.float32(0.25 * k),
            object_score_logit=float(k - 1.5),
            cumulative_score=-math.inf if k == 1 else -0.5 * k,
            pathway_id=k,
            pathway_switched=k == 2,
            present=bool(m.any()),
            area=int(m.sum()),
            bbox=bbox,
        )
    return StepResult(frame_index=41, height=h, width=w, masks=masks, scores=scores)


@pytest.mark.parametrize("encoding", ["rle", "bits"])
def test_masks_header_roundtrip(encoding):
    r = make_result()
    parts = wire.encode_masks(
        "cam0",
        r,
        seq=1234,
        pts=1.5,
        capture_time_ns=1_000_000_000,
        dropped_frames=5,
        encoding=encoding,
        publish_time_ns=1_004_000_000,
    )
    assert parts[0] == b"masks/cam0" and len(parts) == 2 + 3
    header = json.loads(parts[1])  # strict JSON a non-Python reader can load
    assert list(header)[:2] == ["schema", "type"]
    msg = wire.decode(parts, received_time_ns=1_010_000_000)
    assert isinstance(msg, MasksMessage)
    assert msg.header["schema"] == wire.SCHEMA_VERSION and msg.header["type"] == "masks"
    assert (msg.stream_id, msg.seq, msg.frame_index, msg.pts) == ("cam0", 1234, 41, 1.5)
    assert (msg.width, msg.height, msg.dropped_frames, msg.lag) == (53, 37, 5, 0)
    assert msg.header["pathway_switched"] is True
    assert msg.node_latency_ms == pytest.approx(4.0)
    assert msg.latency_ms == pytest.approx(10.0)
    assert msg.object_ids == [0, 3, 7]  # ascending, frames in the same order
    for obj in msg.objects:
        s = r.scores[obj["id"]]
        assert obj["encoding"] == encoding
        assert obj["present"] == s.present and obj["area"] == s.area
        assert obj["bbox"] == (None if s.bbox is None else list(s.bbox))
        assert obj["pathway_id"] == s.pathway_id
        assert obj["pathway_switched"] == s.pathway_switched
        assert obj["iou"] == pytest.approx(float(s.iou))
        if math.isfinite(s.cumulative_score):
            assert obj["cumulative_score"] == pytest.approx(s.cumulative_score)
        else:
            assert obj["cumulative_score"] is None  # non-finite numbers go out as null
    assert set(msg.masks) == set(r.masks)
    for oid, m in r.masks.items():
        np.testing.assert_array_equal(msg.masks[oid], m)
        assert msg.mask(oid).dtype == bool


def test_masks_without_scores_lagged_and_null_pts():
    m = np.zeros((4, 6), bool)
    m[1:3, 2:5] = True
    r = StepResult(frame_index=0, height=4, width=6, masks={5: m})
    parts = wire.encode_masks("a.b-c_1", r, seq=0, pts=None, capture_time_ns=1, lag=8)
    assert parts[0] == b"masks-lagged/a.b-c_1"
    msg = wire.decode(parts)
    assert msg.lag == 8 and msg.pts is None
    (obj,) = msg.objects
    assert obj == {
        "id": 5,
        "present": True,
        "iou": None,
        "object_score_logit": None,
        "cumulative_score": None,
        "bbox": [2, 1, 4, 2],
        "area": 6,
        "pathway_id": None,
        "pathway_switched": False,
        "encoding": "rle",
    }
    # pycocotools decodes the frame as sent
    np.testing.assert_array_equal(coco.decode({"size": [4, 6], "counts": parts[2]}), m)


def test_encode_rejects_bad_input():
    r = make_result()
    with pytest.raises(ValueError):
        wire.encode_masks("cam/0", r, seq=0, pts=None, capture_time_ns=0)
    with pytest.raises(ValueError):
        wire.encode_masks("cam0", r, seq=0, pts=None, capture_time_ns=0, encoding="png")
    bad = StepResult(frame_index=0, height=5, width=5, masks={1: np.zeros((4, 5), bool)})
    with pytest.raises(ValueError):
        wire.encode_masks("cam0", bad, seq=0, pts=None, capture_time_ns=0)
    with pytest.raises(ValueError):
        wire.encode_status("cam0", "running", schema=2)
    with pytest.raises(ValueError):
        wire.encode_status("cam0", "Running!")


def test_status_roundtrip():
    parts = wire.encode_status(
        "cam0", "running", width=640, height=480, fps=np.float64(29.97), latency_ms=float("nan"),
        dropped_frames=3, dropped_messages=0, objects=[1, 2], error=None, extra={"k": [1]},
    )  # fmt: skip
    assert parts[0] == b"status/cam0" and len(parts) == 2
    msg = wire.decode(parts)
    assert isinstance(msg, StatusMessage)
    assert (msg.stream_id, msg.state) == ("cam0", "running")
    assert msg.time_ns > 0 and msg.get("width") == 640 and msg.get("fps") == pytest.approx(29.97)
    assert msg.get("latency_ms") is None and msg.get("objects") == [1, 2]
    assert msg.get("extra") == {"k": [1]}  # unknown fields pass through
    assert wire.decode(wire.encode_status("cam0", "stopped", time_ns=5)).time_ns == 5


# --------------------------------------------------------------------------- rejection


def good_parts(encoding: str = "rle") -> list[bytes]:
    return wire.encode_masks(
        "cam0", make_result(n=2), seq=1, pts=0.5, capture_time_ns=10, encoding=encoding
    )


def with_header(parts: list[bytes], **changes) -> list[bytes]:
    h = json.loads(parts[1])
    for k, v in changes.items():
        if v is KeyError:
            del h[k]
        else:
            h[k] = v
    return [parts[0], json.dumps(h).encode(), *parts[2:]]


def with_object(parts: list[bytes], i: int, **changes) -> list[bytes]:
    h = json.loads(parts[1])
    for k, v in changes.items():
        if v is KeyError:
            del h["objects"][i][k]
        else:
            h["objects"][i][k] = v
    return [parts[0], json.dumps(h).encode(), *parts[2:]]


def corrupt_cases():
    p = good_parts()
    b = good_parts("bits")
    yield "too few frames", p[:1]
    yield "extra frame", [*p, b"<"]
    yield "missing frame", p[:-1]
    yield "not json", [p[0], b"{nope", *p[2:]]
    yield "json array", [p[0], b"[1, 2]", *p[2:]]
    yield "not utf-8", [p[0], b"\xff\xfe", *p[2:]]
    yield "NaN in header", [p[0], p[1].replace(b'"pts":0.5', b'"pts":NaN'), *p[2:]]
    yield "1e999 in header", [p[0], p[1].replace(b'"pts":0.5', b'"pts":1e999'), *p[2:]]
    yield "schema 2", with_header(p, schema=2)
    yield "schema missing", with_header(p, schema=KeyError)
    yield "schema as string", with_header(p, schema="1")
    yield "unknown type", with_header(p, type="video")
    yield "topic of another stream", [b"masks/cam1", *p[1:]]
    yield "lagged topic with lag 0", [b"masks-lagged/cam0", *p[1:]]
    yield "bad stream id", with_header([b"masks/../x", *p[1:]], stream_id="../x")
    yield "missing seq", with_header(p, seq=KeyError)
    yield "negative seq", with_header(p, seq=-1)
    yield "float seq", with_header(p, seq=1.0)
    yield "bool seq", with_header(p, seq=True)
    yield "string width", with_header(p, width="53")
    yield "zero height", with_header(p, height=0)
    yield "huge size", with_header(p, width=16385, height=16385)
    yield "size does not match rle", with_header(p, width=54)
    yield "size does not match bits", with_header(b, height=38)
    yield "objects not a list", with_header(p, objects={})
    yield "too many objects", with_header(p, objects=[{}] * 1025)
    yield "object not a dict", with_header(p, objects=[1, 2])
    yield "duplicate ids", with_object(p, 1, id=0)
    yield "negative id", with_object(p, 0, id=-3)
    yield "id too large", with_object(p, 0, id=2**31)
    yield "present not bool", with_object(p, 0, present=1)
    yield "iou string", with_object(p, 0, iou="high")
    yield "area too large", with_object(p, 0, area=37 * 53 + 1)
    yield "bbox outside", with_object(p, 1, bbox=[0, 0, 53, 10])
    yield "bbox inverted", with_object(p, 1, bbox=[5, 5, 4, 6])
    yield "bbox float", with_object(p, 1, bbox=[0.0, 0, 1, 1])
    yield "unknown encoding", with_object(p, 0, encoding="png")
    yield "missing encoding", with_object(p, 0, encoding=KeyError)
    yield "rle labelled bits", with_object(p, 1, encoding="bits")
    yield "truncated rle", [*p[:-1], p[-1][:-1]]
    yield "bits too short", [*b[:-1], b[-1][:-1]]
    yield "status with a frame too many", [*wire.encode_status("cam0", "running"), b""]
    yield (
        "status without time",
        [b"status/cam0", b'{"schema":1,"type":"status","stream_id":"cam0","state":"running"}'],
    )
    bad_width = {"schema": 1, "type": "status", "stream_id": "cam0", "state": "running",
                 "time_ns": 1, "width": -1}  # fmt: skip
    yield "status bad width", [b"status/cam0", json.dumps(bad_width).encode()]
    yield "status topic mismatch", [b"status/cam9", wire.encode_status("cam0", "running")[1]]


@pytest.mark.parametrize("name,parts", list(corrupt_cases()), ids=[c[0] for c in corrupt_cases()])
def test_decode_rejects_corrupt_messages(name, parts):
    with pytest.raises(WireFormatError):
        wire.decode(parts)


def test_decode_accepts_the_unmodified_messages():
    for enc in ("rle", "bits"):
        assert isinstance(wire.decode(good_parts(enc)), MasksMessage)


def test_random_corruption_never_escapes_as_another_error():
    rng = np.random.default_rng(3)
    base = good_parts()
    for _ in range(600):
        parts = [bytearray(x) for x in base]
        i = int(rng.integers(0, len(parts)))
        if len(parts[i]) and rng.random() < 0.7:
            j = int(rng.integers(0, len(parts[i])))
            parts[i][j] = int(rng.integers(0, 256))
        else:
            parts[i] = parts[i][: int(rng.integers(0, len(parts[i]) + 1))]
        try:
            msg = wire.decode([bytes(x) for x in parts])
        except WireFormatError:
            continue
        if isinstance(msg, MasksMessage):
            for m in msg.masks.values():  # a message that passed decode must expand
                assert m.shape == (msg.height, msg.width)


if HAVE_HYPOTHESIS:

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24)))
    def test_fuzz_rle_matches_pycocotools(m):
        s = wire.rle_from_mask(m)
        assert s == coco_counts(m)
        np.testing.assert_array_equal(wire.mask_from_rle(s, *m.shape), m)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=24), st.integers(1, 6), st.integers(1, 6))
    def test_fuzz_rle_decoder_agrees_with_pycocotools(data, h, w):
        try:
            ours = wire.mask_from_rle(data, h, w)
        except WireFormatError:
            return
        theirs = coco.decode({"size": [h, w], "counts": data})
        np.testing.assert_array_equal(ours, theirs.astype(bool))
