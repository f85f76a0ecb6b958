"""The node under faults, bad input and a (short) soak, with real components on
127.0.0.1: the gst-rtsp-server camera killed, frozen, replaced by a silent or a garbage
server, restarted at another size; WHIP publishers that vanish or re-offer; subscribers
that stall, never come or flap; tracker steps that run out of memory; `run` stopped by
SIGINT and SIGTERM; the control socket fuzzed through the real node; a few hundred frames
end to end with nothing lost.

The tracker has random weights at image size 64 (masks mean nothing; the tests check
that the node survives and keeps its objects, not mask quality).
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psutil
import pytest
import torch
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.control import ControlClient
from sam2long_stream.node import Node, NodeConfig
from sam2long_stream.testing import soak as soak_tool
from sam2long_stream.testing.webrtc_peers import WhipPublisher
from sam2long_stream.transport import wire
from sam2long_stream.transport.subscriber import Subscriber
from tests.conftest import free_port, wait_for
from tests.test_cli import spawn
from tests.test_node import Inbox, assert_masks_sane, running, start_whip_publisher
from tests.test_security import http_get, port_is_free

ANY = "tcp://127.0.0.1:*"
BOX_320 = (40.0, 30.0, 140.0, 130.0)
BOX2_320 = (200.0, 120.0, 300.0, 220.0)


@pytest.fixture(scope="module")
def tracker() -> Iterator[Tracker]:
    """One small tracker for the module; one torch thread: the camera, the node and
    the test share 2 cores, and oversubscribed threads are far slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Tracker(TrackerConfig(model="sam2.1_hiera_t", image_size=64))
    finally:
        torch.set_num_threads(threads)


pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")


def masks_after(inbox: Inbox, start: int, wall_ns: int) -> list[Any]:
    """Masks messages from index `start` on whose frame was captured after `wall_ns`."""
    return [m for m in inbox.masks[start:] if m.capture_time_ns > wall_ns]


# --------------------------------------------------------------------------- RTSP faults


def test_rtsp_camera_killed_and_restarted_five_times(rtsp_camera_factory, tracker) -> None:
    cam = rtsp_camera_factory(width=320, height=240, fps=15)
    config = NodeConfig.one_stream(
        source=cam.url,
        prompts={1: Prompt(box=BOX_320), 2: Prompt(box=BOX2_320)},
        pub=ANY,
        control=None,
    )
    resumed_s: list[float] = []
    with running(config, tracker) as (node, inbox):
        inbox.wait_masks(2)
        loop_thread = node._thread
        for cycle in range(5):
            mark, n = len(inbox.status), len(inbox.masks)
            cam.kill()
            inbox.wait_state("disconnected", 15, mark)
            before_ns = time.time_ns()
            cam.start()  # same port; returns once it serves
            ready_ns = time.time_ns()
            inbox.pump_until(
                lambda n=n, t=before_ns: bool(masks_after(inbox, n, t)),
                15,
                f"masks after restart {cycle}",
            )
            first = masks_after(inbox, n, before_ns)[0]
            resumed_s.append((first.received_time_ns - ready_ns) / 1e9)
            assert first.object_ids == [1, 2], cycle  # objects kept across the outage
            states = inbox.states()[mark:]
            story = [s for s in states if s in ("disconnected", "reconnecting", "connected")]
            assert story[0] == "disconnected" and "reconnecting" in story, states
            assert story.index("reconnecting") < story.index("connected"), states
            assert node.join(0) is False and node._thread is loop_thread  # never exited
        inbox.wait_masks(len(inbox.masks) + 1)
        status = node.status()
    assert max(resumed_s) < 2.0, f"resume times after each restart: {resumed_s}"
    assert status["reconnects"] == 5 and status["source_disconnects"] == 5
    assert status["objects"] == [1, 2] and status["failed_frames"] == 0
    assert_masks_sane(inbox.masks, 320, 240, ids=[1, 2])
    connected = [m for m in inbox.status if m.state == "connected"]
    assert len(connected) == 6 and all(m.get("width") == 320 for m in connected)


def test_rtsp_hung_camera_is_reported_and_tracking_resumes(rtsp_camera_factory, tracker):
    cam = rtsp_camera_factory(width=320, height=240, fps=15)
    config = NodeConfig.one_stream(
        source=cam.url,
        prompts={1: Prompt(box=BOX_320)},
        pub=ANY,
        control=None,
        http="127.0.0.1:0",
        health_grace_s=2.0,
    )
    with running(config, tracker) as (node, inbox):
        inbox.wait_masks(2)
        health = f"{node.http_endpoint}/healthz"
        assert http_get(health)[0] == 200
        mark = len(inbox.status)
        cam.freeze()  # SIGSTOP: TCP stays up, nothing arrives
        frozen = time.monotonic()
        gone = inbox.wait_state("disconnected", 15, mark)
        detected_s = time.monotonic() - frozen
        # A reconnect attempt at the hung server: it accepts, then never answers.
        failed = inbox.wait_state("error", 15, mark)
        code, body, _ = http_get(health)
        assert code == 503 and "no frame for" in json.loads(body)["reasons"][0], body
        assert node.join(0) is False
        cam.thaw()
        n = len(inbox.masks)
        inbox.wait_state("connected", 30, mark)
        inbox.wait_masks(n + 2, 30)
        assert http_get(health)[0] == 200
    assert "no data for" in gone.get("reason"), gone.header
    assert detected_s < 6.0  # the source's 2 s read timeout, plus a frame or two
    assert "no answer" in failed.get("error") or "timed out" in failed.get("error")
    assert all(m.object_ids == [1] for m in inbox.masks)


class TcpNuisance:
    """A TCP server on a camera's port: "silent" accepts and never says a word;
    "garbage" answers every connection with random bytes, then hangs up."""

    def __init__(self, port: int, mode: str) -> None:
        self.mode = mode
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:  # the killed camera's socket may linger a moment
            try:
                self._sock.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        rng = random.Random(0)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.mode == "garbage":
                try:
                    conn.sendall(rng.randbytes(4096))
                    time.sleep(0.1)
                except OSError:
                    pass
                conn.close()
            else:
                self._conns.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._conns:
            conn.close()
        self._sock.close()


@pytest.mark.parametrize("mode", ["silent", "garbage"])
def test_rtsp_silent_or_garbage_server_then_the_camera_returns(
    rtsp_camera_factory, tracker, mode: str
) -> None:
    cam = rtsp_camera_factory(width=320, height=240, fps=15)
    config = NodeConfig.one_stream(
        source=cam.url, prompts={1: Prompt(box=BOX_320)}, pub=ANY, control=None
    )
    with running(config, tracker) as (node, inbox):
        inbox.wait_masks(2)
        mark = len(inbox.status)
        cam.kill()
        nuisance = TcpNuisance(cam.port, mode)
        try:
            inbox.pump_until(
                lambda: nuisance.accepted >= 2, 20, f"two attempts at the {mode} server"
            )
            first_attempt = len(inbox.status)
            inbox.wait_state("error", 15, first_attempt)  # that attempt failed, and said so
        finally:
            nuisance.close()
        errors = [m.get("error") for m in inbox.status[mark:] if m.state == "error"]
        assert node.join(0) is False  # still running: errors after a first frame are not fatal
        n = len(inbox.masks)
        cam.start()
        inbox.wait_state("connected", 30, mark)
        inbox.wait_masks(n + 2, 30)
    refused = [e for e in errors if "refused" in e.lower()]
    nuisance_errors = [e for e in errors if e not in refused]
    assert nuisance_errors, errors
    expected = "no answer within 2 s" if mode == "silent" else "Invalid data found"
    assert any(expected in e for e in nuisance_errors), errors
    assert all(e.startswith(("cannot open rtsp://", "rtsp://")) for e in errors), errors
    assert all(m.object_ids == [1] for m in inbox.masks)
    assert_masks_sane(inbox.masks, 320, 240, ids=[1])


def test_rtsp_resolution_change_keeps_objects(rtsp_camera_factory, tracker) -> None:
    cam = rtsp_camera_factory(width=320, height=240, fps=15)
    config = NodeConfig.one_stream(
        source=cam.url,
        prompts={1: Prompt(box=BOX_320), 2: Prompt(box=BOX2_320)},
        pub=ANY,
        control=ANY,
    )
    with running(config, tracker) as (node, inbox):
        inbox.wait_masks(2)
        mark = len(inbox.status)
        cam.kill()
        cam.width, cam.height = 160, 120
        cam.start()
        changed = inbox.wait_state("resolution", 30, mark)
        n = len(inbox.masks)
        inbox.pump_until(
            lambda: sum(m.width == 160 for m in inbox.masks[n:]) >= 2, 30, "masks at 160x120"
        )
        assert node.control_endpoint is not None
        with ControlClient(node.control_endpoint) as client:
            added = client.add_object(3, box=[100, 60, 150, 110])  # fits the new frame
            # a box that fitted the old frame but not the new one is refused
            refused = client.request(
                {"op": "add_object", "object_id": 4, "box": [200, 130, 300, 220]}
            )
            status = client.status()
        k = len(inbox.masks)
        inbox.pump_until(lambda: any(m.object_ids == [1, 2, 3] for m in inbox.masks[k:]), 30, "3")
    assert (changed.get("width"), changed.get("height")) == (160, 120)
    assert (changed.get("previous_width"), changed.get("previous_height")) == (320, 240)
    assert added["object_id"] == 3 and (added["applied"] or added["queued"])
    assert refused["ok"] is False and "outside the 160x120 frame" in refused["error"]
    assert status["resolution_changes"] == 1 and (status["width"], status["height"]) == (160, 120)
    old = [m for m in inbox.masks if m.width == 320]
    new = [m for m in inbox.masks if m.width == 160]
    assert old and new and inbox.masks.index(new[0]) == len(old)  # one switch, no mixing
    assert_masks_sane(old, 320, 240, ids=[1, 2])
    assert_masks_sane(new, 160, 120)
    assert all(m.object_ids[:2] == [1, 2] for m in new)  # the same objects, new size


# --------------------------------------------------------------------------- WebRTC faults


def test_whip_publisher_vanishes_then_others_publish_and_reoffer(tracker: Tracker) -> None:
    port = free_port()
    config = NodeConfig.one_stream(
        source=f"whip://127.0.0.1:{port}/whip/cam0?idle_timeout=1",
        prompts={1: Prompt(box=(20, 20, 90, 80))},
        pub=ANY,
        control=None,
    )
    url = f"http://127.0.0.1:{port}/whip/cam0"
    publishers: list[Any] = []
    try:
        with running(config, tracker) as (node, inbox):
            publishers.append(start_whip_publisher(url, 160, 120))
            inbox.wait_masks(2)
            # 1. the publisher vanishes: no DELETE, no BYE, no DTLS close
            mark = len(inbox.status)
            publishers[0].stop(graceful=False)
            vanished = inbox.wait_state("disconnected", 15, mark)
            assert node.join(0) is False
            # 2. another publisher: tracking resumes with the same object
            n = len(inbox.masks)
            publishers.append(WhipPublisher(url, 160, 120, fps=10.0).start())
            inbox.wait_state("connected", 15, mark)
            inbox.wait_masks(n + 2)
            # 3. another offer while that one is live: refused (409, no token is
            # configured), the live publisher keeps the endpoint
            mark2, n2 = len(inbox.status), len(inbox.masks)
            with pytest.raises(RuntimeError, match="409"):
                WhipPublisher(url, 160, 120, fps=10.0).start()
            rejected = inbox.wait_state("rejected", 15, mark2)
            inbox.wait_masks(n2 + 2)
            status = node.status()
    finally:
        for pub in publishers:
            pub.stop()
    assert "no frame for 1 s" in vanished.get("reason")
    assert rejected.get("http_status") == 409
    assert status["reconnects"] == 1 and status["objects"] == [1]
    assert status["source_state"] == "connected"
    assert_masks_sane(inbox.masks, 160, 120, ids=[1])


# --------------------------------------------------------------------------- subscribers


def test_slow_absent_and_flapping_subscribers_never_block_the_node(tracker: Tracker) -> None:
    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=15&width=1280&height=720",
        prompts={1: Prompt(box=BOX_320), 2: Prompt(box=BOX2_320)},
        pub=ANY,
        control=ANY,
        hwm=2,
        # ~230 KB per message: a stalled reader fills the loopback TCP buffers (a few
        # MB) within seconds
        encoding="bits",
    )
    node = Node(config, tracker=tracker).start()
    stalled: zmq.Socket | None = None
    steady: Inbox | None = None
    try:
        assert node.control_endpoint is not None
        client = ControlClient(node.control_endpoint)

        def processed() -> int:
            return int(client.status()["frames_processed"])

        # absent: nobody listens; frames go on, nothing is counted as dropped
        wait_for(lambda: processed() >= 3, 30, "3 frames")
        start = processed()
        wait_for(lambda: processed() >= start + 3, 30, "3 more frames with no subscriber")
        assert client.status()["dropped_messages"] == 0

        # flapping: subscribers connect and disconnect in a loop
        flaps = {"n": 0}
        stop_flapping = threading.Event()

        def flap() -> None:
            rng = random.Random(1)
            while not stop_flapping.is_set():
                with Subscriber(node.endpoint, topics=("masks/", "status/")) as sub:
                    sub.recv(timeout_s=rng.uniform(0.0, 0.08))
                flaps["n"] += 1

        flapper = threading.Thread(target=flap, daemon=True)
        before_flaps = processed()
        flapper.start()
        wait_for(lambda: flaps["n"] >= 30 and processed() >= before_flaps + 3, 30, "flapping")
        stop_flapping.set()
        flapper.join(5)

        # slow: a subscriber that never reads, with tiny buffers
        steady = Inbox(node.endpoint)
        steady.wait_masks(1)
        stalled = zmq.Context.instance().socket(zmq.SUB)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.RCVBUF, 4096)
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(node.endpoint)
        stall_t = time.monotonic()
        steady.pump_until(lambda: client.status()["dropped_messages"] > 0, 60, "dropped messages")
        stall_s = time.monotonic() - stall_t
        during = processed()
        steady.pump_until(lambda: processed() >= during + 3, 30, "frames while one stalls")
        dropped = client.status()["dropped_messages"]
        stalled.close()
        stalled = None
        # once the stalled one is gone, the steady one hears the story on status/
        mark = len(steady.status)
        steady.pump_until(
            lambda: any((m.get("dropped_messages") or 0) >= dropped for m in steady.status[mark:]),
            15,
            "a status with dropped_messages",
        )
        n = len(steady.masks)
        steady.wait_masks(n + 2)
        final = client.status()
        client.close()
    finally:
        if stalled is not None:
            stalled.close()
        if steady is not None:
            steady.close()
        node.stop()
        assert node.join(30)
    assert node.error is None
    assert final["failed_frames"] == 0 and final["objects"] == [1, 2]
    assert final["dropped_messages"] >= dropped > 0, stall_s
    # One stalled subscriber costs the others nothing: the steady one missed no message.
    assert steady.sub.missed == 0
    assert_masks_sane(steady.masks, 1280, 720, ids=[1, 2])


# --------------------------------------------------------------------------- tracker faults


def _oom(where: str) -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(
        f"CUDA out of memory. Tried to allocate 2.00 GiB (injected in {where})"
    )


def test_tracker_out_of_memory_skips_frames_then_unhealthy_then_recovers(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    real_step = tracker.step
    calls = {"n": 0}
    fail_on = {3, 4, 8, 9, 10}  # two isolated failures, then three in a row

    def step(frame: np.ndarray, prompts: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] in fail_on:
            raise _oom("step")
        return real_step(frame, prompts)

    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=10",
        prompts={1: Prompt(box=BOX_320)},
        pub=ANY,
        control=None,
        unhealthy_after=3,
    )
    tracker.step = step  # type: ignore[method-assign]
    try:
        with (
            caplog.at_level(logging.ERROR, logger="sam2long_stream.node"),
            running(config, tracker) as (node, inbox),
        ):
            unhealthy = inbox.wait_state("unhealthy", 30)
            at = inbox.status.index(unhealthy)
            inbox.wait_state("running", 30, at)
            inbox.wait_masks(len(inbox.masks) + 2)
            metrics = node.metrics.render().decode()
    finally:
        del tracker.step
    summary = node.summary()
    assert summary["failed_frames"] == 5
    assert "OutOfMemoryError" in unhealthy.get("error")
    messages = [r.getMessage() for r in caplog.records]
    skipped = [k for k, m in enumerate(messages) if "tracker failed (out of memory)" in m]
    tripped = [k for k, m in enumerate(messages) if "unhealthy: 3 consecutive" in m]
    assert len(skipped) == 5
    assert len(tripped) == 1 and tripped[0] > skipped[4]  # not by the isolated ones
    assert 'sam2long_tracker_failures_total{stream_id="cam0"} 5.0' in metrics
    assert_masks_sane(inbox.masks, 320, 240, ids=[1], failed=5)


def test_out_of_memory_while_applying_a_prompt_leaves_no_half_added_object(
    tracker: Tracker,
) -> None:
    """A step that fails while it applies a prompt changes nothing (Tracker.step is all
    or nothing): the refusal the node sends is true, and the prompt sent again works."""
    engine = tracker.engine
    real_propose, real_step = engine.propose, tracker.step
    armed = {"on": False}

    def propose(*args: Any, **kwargs: Any) -> Any:
        if armed["on"]:
            armed["on"] = False
            raise _oom("propose")
        return real_propose(*args, **kwargs)

    def step(frame: np.ndarray, prompts: Any = None) -> Any:
        if prompts and 5 in prompts and not armed.get("done"):
            armed["on"] = armed["done"] = True
        return real_step(frame, prompts)

    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=10",
        prompts={1: Prompt(box=BOX_320)},
        pub=ANY,
        control=ANY,
    )
    engine.propose = propose  # type: ignore[method-assign]
    tracker.step = step  # type: ignore[method-assign]
    try:
        with running(config, tracker) as (node, inbox):
            inbox.wait_masks(2)
            with ControlClient(node.control_endpoint or "") as client:
                refused = client.request(
                    {"op": "add_object", "object_id": 5, "box": [150, 100, 230, 180]}
                )
                n = len(inbox.masks)
                after_refusal = inbox.wait_masks(n + 2)[n:]
                again = client.add_object(5, box=[150, 100, 230, 180])
            k = len(inbox.masks)
            inbox.pump_until(lambda: any(m.object_ids == [1, 5] for m in inbox.masks[k:]), 30, "5")
    finally:
        del engine.propose
        del tracker.step
    assert refused["ok"] is False
    assert "OutOfMemoryError" in refused["error"] and "not applied" in refused["error"]
    assert all(m.object_ids == [1] for m in after_refusal)
    assert again["applied"] is True
    assert node.summary()["failed_frames"] == 1


# --------------------------------------------------------------------------- signals


def wait_running(proc: Any, http: int) -> None:
    """Until the node's /healthz says running (90 s, or the process ended: fail)."""
    deadline = time.monotonic() + 90
    state = None
    while state != "running":
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the node never reported running"
        try:
            code, body, _ = http_get(f"http://127.0.0.1:{http}/healthz", timeout=1)
            state = json.loads(body)["state"] if code == 200 else None
        except OSError:
            pass
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_exits_cleanly_on_signal(signum: signal.Signals) -> None:
    pub, control, http = free_port(), free_port(), free_port()
    proc = spawn(
        "run",
        "synthetic://moving-shapes?fps=10",
        "--pub",
        f"tcp://127.0.0.1:{pub}",
        "--control",
        f"tcp://127.0.0.1:{control}",
        "--http",
        f"127.0.0.1:{http}",
        "--image-size",
        "64",
        "--threads",
        "1",
        "--box",
        "40,30,140,130",
    )
    try:
        wait_running(proc, http)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "tracked" in out and "node overhead" in out
    for child in children:  # reaped, not left behind
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    for port in (pub, control, http):
        assert port_is_free(port), port


# --------------------------------------------------------------------------- control fuzz

W, H = 320, 240
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
NUMBERS = st.integers(min_value=-(10**6), max_value=10**6) | st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False
)
COORD = NUMBERS | JSON_VALUES
NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 5000])


def _finite(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and abs(v) <= 65536


def _box_ok(b: Any) -> bool:
    if not (isinstance(b, list) and len(b) == 4 and all(_finite(v) for v in b)):
        return False
    x0, y0, x1, y1 = b
    return x0 < x1 and y0 < y1 and not (x1 <= 0 or y1 <= 0 or x0 >= W or y0 >= H)


def _points_ok(points: Any, labels: Any) -> bool:
    if not (isinstance(points, list) and 1 <= len(points) <= 64):
        return False
    if not all(isinstance(p, list) and len(p) == 2 and all(_finite(v) for v in p) for p in points):
        return False
    if not (isinstance(labels, list) and len(labels) == len(points)):
        return False
    if not all(type(lab) is int and lab in (0, 1) for lab in labels):
        return False
    return all(0 <= x < W and 0 <= y < H for x, y in points)


BAD_BOX = st.lists(COORD, min_size=0, max_size=6).filter(
    lambda b: not _box_ok(b)
) | JSON_VALUES.filter(lambda b: not _box_ok(b))
BAD_POINTS = st.tuples(
    st.lists(st.lists(COORD, min_size=1, max_size=3), min_size=0, max_size=4) | JSON_VALUES,
    st.lists(st.integers(-2, 3), max_size=5) | JSON_VALUES,
).filter(lambda pl: not _points_ok(*pl))
BAD_ID = (
    st.integers(max_value=-1)
    | st.integers(min_value=2**31)
    | st.floats()
    | st.text()
    | st.booleans()
    | st.lists(st.integers(), min_size=1)
)
WRONG_SIZE_MASK = st.tuples(st.integers(1, 24), st.integers(1, 24)).map(
    lambda hw: {
        "size": list(hw),
        "counts": wire.rle_from_mask(np.ones(hw, dtype=bool)),
    }
)
BAD_MASK = (
    WRONG_SIZE_MASK
    | st.just({"size": [H, W], "counts": wire.rle_from_mask(np.zeros((H, W), dtype=bool))})
    | st.builds(lambda c: {"size": [H, W], "counts": c}, st.text(max_size=40))
    | st.builds(lambda s: {"size": s, "counts": "0"}, JSON_VALUES)
    | st.just({"size": [100_000, 100_000], "counts": "0"})
    | JSON_VALUES.filter(lambda v: not isinstance(v, dict))
)
OPS = ("add_object", "remove_object", "reset", "status", "set")

# Every request below is invalid by construction: each either fails to parse or asks
# for something the node must refuse (a box outside the frame, an unknown object id...).
BAD_REQUESTS = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
    st.builds(
        lambda op, extra: {"op": op, **extra},
        st.text(max_size=12).filter(lambda o: o not in OPS),
        st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3),
    ),
    st.builds(
        lambda op, key, v: {"op": op, f"x_{key}": v},
        st.sampled_from(OPS),
        st.text(max_size=6),
        JSON_VALUES,
    ),
    st.builds(lambda op: {"op": op}, JSON_VALUES.filter(lambda v: not isinstance(v, str))),
    st.builds(
        lambda b, i: {"op": "add_object", "object_id": i, "box": b}, BAD_BOX, st.integers(3, 9)
    ),
    st.builds(lambda pl: {"op": "add_object", "points": pl[0], "labels": pl[1]}, BAD_POINTS),
    st.builds(lambda i: {"op": "add_object", "object_id": i, "box": [10, 10, 50, 50]}, BAD_ID),
    st.builds(lambda m: {"op": "add_object", "object_id": 7, "mask": m}, BAD_MASK),
    st.builds(lambda m: {"op": "add_object", "mask": m, "box": [10, 10, 50, 50]}, WRONG_SIZE_MASK),
    st.just({"op": "add_object", "points": [[5, 5]] * 65, "labels": [1] * 65}),
    st.builds(
        lambda i: {"op": "remove_object", "object_id": i},
        st.integers(0, 2**31 - 1).filter(lambda i: i not in (1, 2)) | BAD_ID,
    ),
    st.builds(
        lambda k, v: {"op": "set", "key": k, "value": v},
        st.text(max_size=12).filter(lambda k: k != "num_pathways"),
        st.integers(1, 16),
    ),
    st.builds(
        lambda v: {"op": "set", "key": "num_pathways", "value": v},
        st.integers().filter(lambda v: not 1 <= v <= 16)
        | JSON_VALUES.filter(lambda v: type(v) is not int),
    ),
    st.builds(
        lambda template, token: template.replace("%", token),
        st.sampled_from(
            [
                '{"op": "add_object", "object_id": 3, "box": [10, 10, %, 50]}',
                '{"op": "add_object", "points": [[%, 5]], "labels": [1]}',
                '{"op": "set", "key": "num_pathways", "value": %}',
                '{"op": "remove_object", "object_id": %}',
            ]
        ),
        NON_FINITE,
    ),
)


@pytest.fixture(scope="module")
def fuzz_target(tracker: Tracker) -> Iterator[tuple[Node, ControlClient]]:
    """A running node with objects 1 and 2, and a control client."""
    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=10",
        prompts={1: Prompt(box=BOX_320), 2: Prompt(box=BOX2_320)},
        pub=ANY,
        control=ANY,
    )
    node = Node(config, tracker=tracker).start()
    client = ControlClient(node.control_endpoint or "", timeout_s=10)
    try:
        wait_for(lambda: client.status()["frames_processed"] >= 2, 60, "the first frames")
        yield node, client
    finally:
        client.close()
        node.stop()
        assert node.join(30)
    assert node.error is None


def _unchanged(node: Node, client: ControlClient) -> dict[str, Any]:
    status = client.status()
    assert status["objects"] == [1, 2]
    assert status["held_prompts"] == 0 and status["pending_num_pathways"] is None
    assert status["num_pathways"] == 3 and status["failed_frames"] == 0
    assert status["state"] == "running" and node.join(0) is False
    return status


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(request=BAD_REQUESTS)
# Requests that parse and are refused by the node itself, on its loop (always run):
@example(request={"op": "add_object", "object_id": 3, "box": [400, 10, 500, 50]})
@example(request={"op": "add_object", "object_id": 3, "box": [-90, -90, -10, -10]})
@example(request={"op": "add_object", "points": [[330, 5]], "labels": [1]})
@example(request={"op": "add_object", "object_id": 3, "mask": {"size": [2, 2], "counts": "04"}})
@example(request={"op": "remove_object", "object_id": 3})
@example(request={"op": "set", "key": "num_pathways", "value": 17})
@example(request=b'{"op": "add_object", "object_id": 3, "box": [10, 10, NaN, 50]}')
@example(request=b'{"op": "reset", "now": true}')
def test_fuzzed_control_requests_are_refused_by_the_running_node(
    fuzz_target: tuple[Node, ControlClient], request: Any
) -> None:
    node, client = fuzz_target
    raw = (
        request
        if isinstance(request, bytes)
        else (request if isinstance(request, str) else json.dumps(request))
    )
    reply = client.request(raw)
    assert reply["ok"] is False, (request, reply)
    assert isinstance(reply["error"], str) and reply["error"].strip(), reply
    assert "internal error" not in reply["error"], reply
    _unchanged(node, client)


def test_oversized_requests_then_the_node_still_tracks(fuzz_target) -> None:
    node, client = fuzz_target
    before = _unchanged(node, client)
    big = (
        b'{"op": "add_object", "object_id": 3, "box": [1, 1, 9, 9], "pad": "'
        + b"x" * (9 << 20)
        + b'"}'
    )
    reply = client.request(big)
    assert reply["ok"] is False and "limit" in reply["error"]
    with pytest.raises(TimeoutError):  # over 16 MiB: the connection is dropped
        client.request(b"[" + b"0," * (9 << 20) + b"0]", timeout_s=3)
    wait_for(
        lambda: client.status()["frames_processed"] >= before["frames_processed"] + 2, 30, "frames"
    )
    after = _unchanged(node, client)
    assert after["frames_processed"] > before["frames_processed"]


# --------------------------------------------------------------------------- soak


def test_soak_short() -> None:
    """The soak tool end to end, CI-sized: every frame tracked, published and received."""
    report = soak_tool.soak(
        200, image_size=64, pathways=2, checkpoints=[50, 100, 200], width=64, height=64, threads=1
    )
    assert report.frames_processed == 200 and report.received == 200
    assert report.lost == 0 and report.dropped_messages == 0
    assert report.errors == 0, report.lines()
    assert [c.target for c in report.checkpoints] == [50, 100, 200]
    assert all(c.frames >= c.target and c.rss_mib > 0 for c in report.checkpoints)
    assert report.memory_ratio is not None and report.memory_ratio > 0


def test_a_second_signal_during_shutdown_exits_at_once_one_way() -> None:
    """SIGTERM starts the clean shutdown; a SIGINT right behind it (while the node is
    still stopping) ends the process at once: status 130, one line, no traceback and no
    C++ abort, whatever the threads were doing."""
    pub, http = free_port(), free_port()
    proc = spawn(
        "run", "synthetic://moving-shapes?fps=10", "--pub", f"tcp://127.0.0.1:{pub}",
        "--control", "off", "--http", f"127.0.0.1:{http}", "--image-size", "64",
        "--threads", "1", "--box", "40,30,140,130",
    )  # fmt: skip
    try:
        wait_running(proc, http)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "SIGINT during shutdown: exiting now" in err
    assert "Traceback" not in err and "terminate called" not in err


def test_soak_scripted_engine() -> None:
    """`--engine scripted` (the long-run mode): the engine double under the real tracker
    and node, every frame published and received, the double's image size reported."""
    report = soak_tool.soak(
        300, pathways=3, checkpoints=[100, 300], width=64, height=64, threads=1, engine="scripted"
    )
    assert report.engine == "scripted" and report.image_size == 32
    assert report.frames_processed == 300 and report.received == 300
    assert report.lost == 0 and report.dropped_messages == 0
    assert report.errors == 0, report.lines()
    assert [c.target for c in report.checkpoints] == [100, 300]
    assert all(c.frames >= c.target and c.rss_mib > 0 for c in report.checkpoints)
    assert report.memory_ratio is not None and report.memory_ratio > 0
    assert "engine scripted" in report.lines()[0]


def test_soak_cli_refuses_an_unknown_engine(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        soak_tool.main(["--engine", "nope", "--frames", "10"])
    assert exc.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
