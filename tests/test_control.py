"""Control socket: request parsing, every op over a real REQ/REP pair, and malformed or
hostile requests that must get an ok:false reply while the server keeps answering."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
import zmq

from sam2long_stream.control import (
    AddObject,
    ControlClient,
    ControlError,
    ControlServer,
    RemoveObject,
    Request,
    Reset,
    SetOption,
    Status,
    parse_request,
)
from sam2long_stream.transport.wire import rle_from_mask

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis is optional
    HAVE_HYPOTHESIS = False

H, W = 48, 64


class FakeNode:
    """A handler like the node's: validates prompts against its frame size."""

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self.options: dict[str, Any] = {"num_pathways": 3}
        self.requests: list[Request] = []
        self.delay_s = 0.0
        self.explode = False
        self.known_size: tuple[int, int] | None = None

    def frame_size(self, stream: str | None) -> tuple[int, int] | None:
        return self.known_size  # None: as before the first frame

    def handle(self, req: Request) -> dict[str, Any]:
        self.requests.append(req)
        time.sleep(self.delay_s)
        if self.explode:
            raise RuntimeError("boom: secret internals")
        if isinstance(req, AddObject):
            req.prompt.validate(H, W)
            oid = req.object_id
            if oid is None:
                oid = next(i for i in range(len(self.objects) + 1) if i not in self.objects)
            self.objects[oid] = req.prompt
            return {"object_id": oid, "frame_seq": req.frame_seq}
        if isinstance(req, RemoveObject):
            if req.object_id not in self.objects:
                raise ValueError(f"no object {req.object_id}")
            del self.objects[req.object_id]
            return {"object_id": req.object_id}
        if isinstance(req, Reset):
            self.objects.clear()
            return {}
        if isinstance(req, Status):
            return {"objects": sorted(self.objects), "width": W, "height": H, "fps": np.float32(30)}
        if isinstance(req, SetOption):
            self.options[req.key] = req.value
            return {"key": req.key, "value": req.value}
        raise AssertionError(req)


@pytest.fixture
def node():
    return FakeNode()


@pytest.fixture
def server(node):
    s = ControlServer("tcp://127.0.0.1:*", node, max_message_bytes=64 << 10).start()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    c = ControlClient(server.endpoint, timeout_s=5)
    yield c
    c.close()


# --------------------------------------------------------------------------- parsing


def test_parse_every_op():
    a = parse_request({"op": "add_object", "object_id": 3, "box": [1, 2, 30, 40.5], "frame_seq": 9})
    assert isinstance(a, AddObject) and a.object_id == 3 and a.frame_seq == 9
    assert tuple(a.prompt.box) == (1.0, 2.0, 30.0, 40.5)
    p = parse_request(b'{"op":"add_object","points":[[1,2],[3,4]],"labels":[1,0]}')
    assert isinstance(p, AddObject) and p.object_id is None
    assert p.prompt.points == ((1.0, 2.0), (3.0, 4.0)) and p.prompt.labels == (1, 0)
    m = np.zeros((H, W), bool)
    m[5:9, 7:20] = True
    mk = parse_request({"op": "add_object", "mask": {"size": [H, W], "counts": rle_from_mask(m)}})
    np.testing.assert_array_equal(mk.prompt.mask, m)
    assert parse_request('{"op":"remove_object","object_id":0}') == RemoveObject(0)
    assert parse_request({"op": "reset"}) == Reset()
    assert parse_request({"op": "status"}) == Status()
    assert parse_request({"op": "set", "key": "num_pathways", "value": 16}) == SetOption(
        "num_pathways", 16
    )


BAD_REQUESTS = [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"add_object"', "JSON object"),
    (b"{}", "op must be"),
    (b'{"op": 5}', "op must be"),
    (b'{"op": "dance"}', "op must be"),
    (b'{"op": "reset", "everything": true}', "unknown field"),
    (b'{"op": "add_object"}', "needs a box"),
    (b'{"op": "add_object", "box": [NaN, 0, 10, 10]}', "JSON"),
    (b'{"op": "add_object", "box": [Infinity, 0, 10, 10]}', "JSON"),
    (b'{"op": "add_object", "box": [1e999, 0, 10, 10]}', "finite"),
    (b'{"op": "add_object", "box": [1e300, 0, 1e301, 10]}', "finite number within"),
    (b'{"op": "add_object", "box": [20, 0, 10, 10]}', "x0 < x1"),
    (b'{"op": "add_object", "box": [0, 10, 10, 10]}', "y0 < y1"),
    (b'{"op": "add_object", "box": [0, 0, 10]}', "4 numbers"),
    (b'{"op": "add_object", "box": "0 0 10 10"}', "4 numbers"),
    (b'{"op": "add_object", "box": [0, 0, "10", 10]}', "finite number"),
    (b'{"op": "add_object", "box": [true, 0, 10, 10]}', "finite number"),
    (b'{"op": "add_object", "points": [[1, 2]]}', "together"),
    (b'{"op": "add_object", "points": [[1, 2]], "labels": [1, 0]}', "one label per point"),
    (b'{"op": "add_object", "points": [[1, 2]], "labels": [2]}', "1 (positive) or 0"),
    (b'{"op": "add_object", "points": [[1, 2]], "labels": [true]}', "1 (positive) or 0"),
    (b'{"op": "add_object", "points": [[1, 2, 3]], "labels": [1]}', "[x, y]"),
    (b'{"op": "add_object", "points": [], "labels": []}', "1..64"),
    (b'{"op": "add_object", "object_id": -1, "box": [0, 0, 5, 5]}', "object_id"),
    (b'{"op": "add_object", "object_id": 1.5, "box": [0, 0, 5, 5]}', "object_id"),
    (b'{"op": "add_object", "object_id": true, "box": [0, 0, 5, 5]}', "object_id"),
    (b'{"op": "add_object", "object_id": 99999999999999, "box": [0, 0, 5, 5]}', "object_id"),
    (b'{"op": "add_object", "object_id": 1' + b"0" * 5000 + b', "box": [0, 0, 5, 5]}', "JSON"),
    (b'{"op": "add_object", "frame_seq": -2, "box": [0, 0, 5, 5]}', "frame_seq"),
    (b'{"op": "add_object", "mask": {"size": [100000, 100000], "counts": "0"}}', "mask size"),
    (b'{"op": "add_object", "mask": {"size": [16384, 16384], "counts": "0"}}', "exceeds"),
    (b'{"op": "add_object", "mask": {"size": [4, 4], "counts": "5"}}', "not a valid RLE"),
    (b'{"op": "add_object", "mask": {"size": [4, 4], "counts": [16]}}', "RLE string"),
    (b'{"op": "add_object", "mask": {"size": [4, 4], "counts": "`0"}}', "empty"),
    (b'{"op": "add_object", "mask": {"size": [4, 4]}}', "mask must be"),
    (b'{"op": "add_object", "mask": {"size": [4, 4], "counts": "0`0"}, "box": [0,0,1,1]}',
     "cannot be combined"),
    (b'{"op": "remove_object"}', "needs field"),
    (b'{"op": "remove_object", "object_id": "3"}', "object_id"),
    (b'{"op": "set", "key": "lag", "value": 3}', "key must be one of num_pathways"),
    (b'{"op": "set", "key": "num_pathways", "value": 0}', "1..16"),
    (b'{"op": "set", "key": "num_pathways", "value": 3.0}', "1..16"),
    (b'{"op": "set", "key": "num_pathways"}', "needs field"),
    (b"[" * 100000 + b"]" * 100000, "JSON"),
]  # fmt: skip


@pytest.mark.parametrize("raw,needle", BAD_REQUESTS, ids=range(len(BAD_REQUESTS)))
def test_parse_rejects_with_a_clear_error(raw, needle):
    with pytest.raises(ControlError) as e:
        parse_request(raw)
    assert needle in str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


# --------------------------------------------------------------------------- over zmq


def test_every_op_roundtrip(client, node):
    assert client.add_object(4, box=[1, 2, 30, 40], frame_seq=12) == {
        "ok": True,
        "object_id": 4,
        "frame_seq": 12,
    }
    r = client.add_object(points=[(5, 6), (7, 8)], labels=[1, 0])
    assert r["ok"] and r["object_id"] == 0
    m = np.zeros((H, W), bool)
    m[10:20, 30:50] = True
    assert client.add_object(9, mask=m)["object_id"] == 9
    np.testing.assert_array_equal(node.objects[9].mask, m)
    assert client.status() == {
        "ok": True,
        "objects": [0, 4, 9],
        "width": W,
        "height": H,
        "fps": 30.0,
    }
    assert client.remove_object(4) == {"ok": True, "object_id": 4}
    assert client.set("num_pathways", 5) == {"ok": True, "key": "num_pathways", "value": 5}
    assert node.options["num_pathways"] == 5
    assert client.reset() == {"ok": True}
    assert client.status()["objects"] == []


def test_handler_refusals_become_errors(client, node):
    with pytest.raises(ControlError, match="outside the 64x48 frame"):
        client.add_object(1, box=[100, 100, 200, 200])
    with pytest.raises(ControlError, match="outside the 64x48 frame"):
        client.add_object(1, points=[(70, 10)], labels=[1])
    with pytest.raises(ControlError, match="shape"):
        client.add_object(1, mask=np.ones((10, 10), bool))  # not the frame size
    assert client.request({"op": "remove_object", "object_id": 77}) == {
        "ok": False,
        "error": "no object 77",
    }
    assert node.objects == {}


@pytest.mark.parametrize("raw,needle", BAD_REQUESTS[:-1], ids=range(len(BAD_REQUESTS) - 1))
def test_malformed_requests_get_ok_false_and_change_nothing(client, node, raw, needle):
    reply = client.request(raw)
    assert reply["ok"] is False and needle in reply["error"]
    assert node.requests == []  # never reached the handler
    assert client.status()["ok"] is True  # and the server still answers


def test_oversized_and_multipart_requests(server, client, node):
    big = json.dumps({"op": "status", "pad": "x" * (100 << 10)}).encode()
    reply = client.request(big)
    assert reply["ok"] is False and "limit is 65536" in reply["error"]
    # beyond twice the limit zmq drops the connection (MAXMSGSIZE): the client times out
    with pytest.raises(TimeoutError):
        client.request(b"{" + b" " * (200 << 10) + b"}", timeout_s=0.5)
    assert client.status()["ok"]  # the client recreated its socket; the server lives on
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(server.endpoint)
    try:
        req.send_multipart([b'{"op": "status"}', b"more"])
        assert req.poll(5000)
        assert json.loads(req.recv())["error"] == "a request is one JSON frame, got 2 frames"
    finally:
        req.close()
    assert node.requests == [Status()]


def test_internal_errors_are_generic_and_not_fatal(client, node, caplog):
    node.explode = True
    reply = client.request({"op": "status"})
    assert reply["ok"] is False and "internal error" in reply["error"]
    assert "secret" not in reply["error"]
    assert "boom" in caplog.text
    node.explode = False
    assert client.status()["ok"]


def test_non_json_handler_reply_is_an_internal_error(server, client, node):
    node.handle = lambda req: {"thing": object()}
    reply = client.request({"op": "status"})
    assert reply == {"ok": False, "error": reply["error"]} and "internal error" in reply["error"]
    node.handle = lambda req: None
    assert client.request({"op": "reset"}) == {"ok": True}
    assert server.requests == 2 and server.errors == 1


def test_client_timeout_keeps_the_client_usable(client, node):
    node.delay_s = 0.6
    with pytest.raises(TimeoutError):
        client.request({"op": "status"}, timeout_s=0.2)
    node.delay_s = 0.0
    assert client.status()["ok"]  # served after the stale request; its reply went nowhere


def test_nan_from_the_python_client_is_refused(client, node):
    # the client's JSON writer sends NaN as null; the server then refuses the box
    reply = client.request({"op": "add_object", "box": [float("nan"), 0, 10, 10]})
    assert reply["ok"] is False and "box values" in reply["error"]
    with pytest.raises(ControlError):
        client.add_object(1, box=[0, 0, float("inf"), 10])
    assert node.requests == []


def test_concurrent_clients(server, node):
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with ControlClient(server.endpoint, timeout_s=5) as c:
                for i in range(20):
                    c.add_object(k * 100 + i, box=[0, 0, 5, 5])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(node.objects) == 80


def test_stop_is_quick_and_releases_the_port(node):
    s = ControlServer("tcp://127.0.0.1:*", node).start()
    endpoint = s.endpoint
    t0 = time.perf_counter()
    s.stop()
    assert time.perf_counter() - t0 < 0.5
    s.stop()  # idempotent
    # zmq releases the port on its I/O thread, a moment after close
    deadline = time.monotonic() + 2
    while True:
        try:
            again = ControlServer(endpoint, node)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    with again, ControlClient(endpoint, timeout_s=5) as c:
        assert again.endpoint == endpoint and c.status()["ok"]
    with pytest.raises(OSError):
        ControlServer("tcp://256.0.0.1:1", node)


def test_no_server_times_out(node):
    s = ControlServer("tcp://127.0.0.1:*", node)  # bound, never started
    endpoint = s.endpoint
    s.stop()
    with ControlClient(endpoint, timeout_s=0.2) as c, pytest.raises(TimeoutError):
        c.status()


if HAVE_HYPOTHESIS:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
        ),
        max_leaves=20,
    )
    fields = st.sampled_from(
        ["op", "object_id", "box", "points", "labels", "mask", "frame_seq", "key", "value"]
    )
    ops = st.sampled_from(["add_object", "remove_object", "reset", "status", "set"])

    @settings(max_examples=400, deadline=None)
    @given(ops, st.dictionaries(fields, json_values, max_size=5))
    def test_fuzz_parse_only_raises_control_error(op, extra):
        req = {**extra, "op": op}
        try:
            parsed = parse_request(req)
        except ControlError:
            return
        assert isinstance(parsed, AddObject | RemoveObject | Reset | Status | SetOption)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_fuzz_raw_bytes_only_raise_control_error(data):
        with contextlib.suppress(ControlError):
            parse_request(data)


def test_a_mask_of_another_size_is_refused_before_decoding(
    node: FakeNode, server: ControlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 8192x8192 mask in a few RLE bytes costs no decoding: its size is checked against
    the stream's frame first (the handler's frame_size)."""
    from sam2long_stream.transport import wire

    def no_decoding(*_: Any) -> Any:
        raise AssertionError("the RLE was decoded")

    monkeypatch.setattr(wire, "mask_from_rle", no_decoding)
    node.known_size = (H, W)
    with ControlClient(server.endpoint) as client:
        reply = client.request(
            {"op": "add_object", "mask": {"size": [8192, 8192], "counts": "0PPPP0"}}
        )
    assert reply["ok"] is False
    assert "8192x8192" in reply["error"] and f"{W}x{H}" in reply["error"]
    assert not node.requests
