"""The node end to end with real components on 127.0.0.1: RTSP camera, WHIP publisher and
WHEP server -> node (in-process, loop on a thread) -> ZeroMQ -> the client SDK; control
requests over the real REQ/REP socket; reconnects; tracker failures; lagged output and
the overlay video. The tracker has random weights (tiny model, 256 px): masks mean
nothing, so the tests check plumbing, shapes, ids, ordering and timing, not quality.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.control import ControlClient
from sam2long_stream.node import Node, NodeConfig, NodeError
from sam2long_stream.overlay import draw_masks
from sam2long_stream.sources import moving_shapes_frame
from sam2long_stream.testing.webrtc_peers import WhepServer, WhipPublisher
from sam2long_stream.transport.subscriber import MasksMessage, StatusMessage, Subscriber
from tests.conftest import free_port

ANY = "tcp://127.0.0.1:*"
BOX_320 = (40.0, 30.0, 140.0, 130.0)


@pytest.fixture(scope="module")
def tracker() -> Tracker:
    """One tracker for the module (building one costs ~2 s); each node resets it."""
    return Tracker(TrackerConfig(model="sam2.1_hiera_t", image_size=256))


pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")


class Inbox:
    """A Subscriber on the node plus everything it received, with waits."""

    def __init__(self, endpoint: str) -> None:
        self.sub = Subscriber(endpoint, topics=("masks/", "masks-lagged/", "status/"))
        self.masks: list[MasksMessage] = []
        self.lagged: list[MasksMessage] = []
        self.status: list[StatusMessage] = []

    def states(self) -> list[str]:
        return [m.state for m in self.status]

    def pump_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; masks seqs "
                    f"{[m.seq for m in self.masks]}, status {self.states()}"
                )
            msg = self.sub.recv(timeout_s=min(left, 0.5))
            if isinstance(msg, MasksMessage):
                (self.lagged if msg.lag else self.masks).append(msg)
            elif isinstance(msg, StatusMessage):
                self.status.append(msg)

    def wait_masks(self, count: int, timeout: float = 60.0) -> list[MasksMessage]:
        self.pump_until(lambda: len(self.masks) >= count, timeout, f"{count} masks messages")
        return list(self.masks)

    def wait_state(self, state: str, timeout: float, start: int = 0) -> StatusMessage:
        def found() -> StatusMessage | None:
            return next((m for m in self.status[start:] if m.state == state), None)

        self.pump_until(lambda: found() is not None, timeout, f"status {state!r}")
        msg = found()
        assert msg is not None
        return msg

    def close(self) -> None:
        self.sub.close()


@contextlib.contextmanager
def running(config: NodeConfig, tracker: Tracker) -> Iterator[tuple[Node, Inbox]]:
    """A started node and a subscriber connected before its first message."""
    node = Node(config, tracker=tracker)
    inbox = Inbox(node.endpoint)
    node.start()
    try:
        yield node, inbox
    finally:
        node.stop()
        stopped = node.join(30)
        inbox.close()
    assert stopped, "node did not stop within 30 s"
    assert node.error is None, node.error
    assert node.state == "stopped"


def assert_masks_sane(
    msgs: list[MasksMessage],
    width: int,
    height: int,
    ids: list[int] | None = None,
    failed: int = 0,
) -> None:
    """Sizes, ordering, timestamps and the header/mask agreement of each message;
    `failed`: frames the tracker failed on (neither dropped nor published)."""
    assert msgs, "no masks messages"
    prev_seq = prev_index = -1
    for k, m in enumerate(msgs):
        assert (m.width, m.height) == (width, height)
        if ids is not None:
            assert m.object_ids == ids
        for obj in m.objects:
            mask = m.masks[obj["id"]]
            assert mask.shape == (height, width) and mask.dtype == bool
            assert int(mask.sum()) == obj["area"]
        assert m.seq > prev_seq and m.frame_index > prev_index
        prev_seq, prev_index = m.seq, m.frame_index
        assert m.capture_time_ns <= m.publish_time_ns <= m.received_time_ns
        assert 0 <= m.latency_ms < 120_000  # sane, even on a machine loaded to its limits
        # Frames never tracked before this one were dropped by the "latest" policy.
        assert m.dropped_frames + failed >= m.seq - (msgs[0].seq + k)


def applied_seq(inbox: Inbox, reply: dict, object_id: int) -> int:
    """The seq of the frame an add_object went with: the reply's, or, when slow frames
    made the node answer before applying it ("queued"), that of the first masks message
    carrying the object (the prompt goes with the next frame the node tracks)."""
    assert reply["ok"] is True and reply["object_id"] == object_id, reply
    if reply["applied"]:
        return int(reply["seq"])
    assert reply["queued"] is True and "note" in reply, reply
    inbox.pump_until(
        lambda: any(object_id in m.object_ids for m in inbox.masks), 120, f"object {object_id}"
    )
    return next(m.seq for m in inbox.masks if object_id in m.object_ids)


def start_whip_publisher(url: str, width: int, height: int, timeout: float = 15.0):
    """The node binds its WHIP endpoint on its own thread: retry until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return WhipPublisher(url, width, height, fps=10.0).start()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --------------------------------------------------------------------------- (a) RTSP


def test_rtsp_camera_to_subscriber(rtsp_camera_factory, tracker: Tracker) -> None:
    cam = rtsp_camera_factory(width=320, height=240, fps=15)
    config = NodeConfig.one_stream(
        source=cam.url, prompts={1: Prompt(box=BOX_320)}, pub=ANY, control=None
    )
    with running(config, tracker) as (node, inbox):
        msgs = inbox.wait_masks(4)
        inbox.wait_state("running", 10)
        status = node.status()
    assert_masks_sane(msgs, 320, 240, ids=[1])
    assert msgs[0].seq == 0  # the initial prompt went with the very first frame
    assert inbox.sub.bad_messages == 0
    connected = inbox.wait_state("connected", 0)
    assert (connected.get("width"), connected.get("height")) == (320, 240)
    # the status snapshot is taken after publishing: it may lag the stream by a frame
    assert status["frames_processed"] >= 3 and status["objects"] == [1]
    assert status["timings_ms"]["track"] > 0 and status["timings_ms"]["decode"] > 0
    summary = node.summary()
    assert summary["frames_processed"] >= 4 and summary["failed_frames"] == 0
    assert summary["node_overhead"] is not None and 0 < summary["node_overhead"] < 1


# --------------------------------------------------------------------------- (b) WHIP


def test_whip_publisher_to_subscriber_with_prompt_before_first_frame(tracker: Tracker) -> None:
    port = free_port()
    config = NodeConfig.one_stream(
        source=f"whip://127.0.0.1:{port}/whip/cam0",
        pub=ANY,
        control=ANY,
        control_wait_s=0.5,
    )
    with running(config, tracker) as (node, inbox):
        assert node.control_endpoint is not None
        with ControlClient(node.control_endpoint) as client:
            # No publisher yet: the prompt is held and applied to the first frame.
            reply = client.request({"op": "add_object", "box": [20, 20, 90, 80]})
            assert reply == {**reply, "ok": True, "object_id": 1, "applied": False, "queued": True}
            assert client.status()["held_prompts"] == 1
        publisher = start_whip_publisher(f"http://127.0.0.1:{port}/whip/cam0", 160, 120)
        try:
            msgs = inbox.wait_masks(4)
        finally:
            publisher.stop()
    assert_masks_sane(msgs, 160, 120, ids=[1])
    assert "connected" in inbox.states()


# --------------------------------------------------------------------------- (c) WHEP


def test_whep_server_to_subscriber(tracker: Tracker) -> None:
    server = WhepServer(port=0, width=160, height=120, fps=10.0).start()
    try:
        config = NodeConfig.one_stream(
            source=f"whep+http://127.0.0.1:{server.port}/whep/cam0",
            prompts={1: Prompt(box=(20, 20, 90, 80)), 2: Prompt(points=[(120, 60)], labels=[1])},
            pub=ANY,
            control=None,
        )
        with running(config, tracker) as (_node, inbox):
            msgs = inbox.wait_masks(4)
    finally:
        server.stop()
    assert_masks_sane(msgs, 160, 120, ids=[1, 2])
    assert server.posts >= 1


# --------------------------------------------------------------------------- (d) reconnect


def test_rtsp_camera_killed_and_restarted(rtsp_camera_factory, tracker: Tracker) -> None:
    cam = rtsp_camera_factory(width=320, height=240, fps=15)
    config = NodeConfig.one_stream(
        source=cam.url,
        prompts={1: Prompt(box=BOX_320), 2: Prompt(box=(200, 120, 300, 220))},
        pub=ANY,
        control=None,
    )
    with running(config, tracker) as (node, inbox):
        before = inbox.wait_masks(3)
        loop_thread = node._thread
        mark = len(inbox.status)
        cam.kill()
        inbox.wait_state("disconnected", 15, mark)
        inbox.wait_state("reconnecting", 15, mark)
        time.sleep(1.0)
        cam.start()  # same port
        reconnected = inbox.wait_state("connected", 30, mark)
        n = len(inbox.masks)
        after = inbox.wait_masks(n + 3, 60)[n:]
        assert node.join(0) is False and node._thread is loop_thread  # never restarted
        assert node.tracker.object_ids == [1, 2]
    assert (reconnected.get("width"), reconnected.get("height")) == (320, 240)
    states = inbox.states()[mark:]
    assert states.index("disconnected") < states.index("reconnecting") < states.index("connected")
    assert_masks_sane(before, 320, 240, ids=[1, 2])
    assert_masks_sane(after, 320, 240, ids=[1, 2])
    assert after[0].seq > before[-1].seq  # seq keeps counting across the reconnect
    assert after[0].frame_index > before[-1].frame_index
    # Frames of the new connection (published after it) come with the same objects.
    assert after[-1].capture_time_ns > reconnected.time_ns


# --------------------------------------------------------------------------- (e) control


def test_control_mid_stream(tracker: Tracker) -> None:
    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=10",
        prompts={1: Prompt(box=BOX_320)},
        pub=ANY,
        control=ANY,
    )
    with running(config, tracker) as (node, inbox):
        inbox.wait_masks(2)
        assert node.control_endpoint is not None
        with ControlClient(node.control_endpoint) as client:
            added = client.request({"op": "add_object", "box": [150, 100, 230, 180]})
            first_seq = applied_seq(inbox, added, 2)

            # Malformed or impossible requests: refused, nothing changes, stream goes on.
            bad = [
                b"not json",
                b'{"op": "add_object", "box": [1, 2]}',
                b'{"op": "explode"}',
                b'{"op": "remove_object", "object_id": 99}',
                b'{"op": "add_object", "box": [10, 10, 20, NaN]}',
                b'{"op": "set", "key": "num_pathways", "value": 0}',
            ]
            for raw in bad:
                reply = client.request(raw)
                assert reply["ok"] is False and reply["error"], raw
            outside = client.request(
                {"op": "add_object", "object_id": 7, "box": [400, 300, 500, 400]}
            )
            assert outside["ok"] is False and "outside" in outside["error"]

            # num_pathways is only taken up with the next prompt.
            assert client.set("num_pathways", 2)["pending_num_pathways"] == 2
            status = client.status()
            assert (status["num_pathways"], status["pending_num_pathways"]) == (3, 2)
            third = client.add_object(5, points=[(60, 200)], labels=[1])
            third_seq = applied_seq(inbox, third, 5)
            status = client.status()
            assert (status["num_pathways"], status["pending_num_pathways"]) == (2, None)

            removed = client.remove_object(1)  # answered at once, applied between frames
            assert removed["object_id"] == 1 and "between frames" in removed["applies"]
            assert 1 not in client.status()["objects"]
            inbox.pump_until(
                lambda: bool(inbox.masks) and inbox.masks[-1].object_ids == [2, 5], 30, "[2, 5]"
            )
            n = len(inbox.masks)
            inbox.wait_masks(n + 1)  # and the stream goes on
            status = client.status()

            # A big increase (more than 3x the pool) grows the pools from copies at once.
            client.set("num_pathways", 7)
            client.add_object(6, box=[10, 150, 80, 230])
            inbox.pump_until(
                lambda: bool(inbox.masks) and 6 in inbox.masks[-1].object_ids, 60, "object 6"
            )
            assert client.status()["num_pathways"] == 7
            n = len(inbox.masks)
            inbox.wait_masks(n + 1)
            final = client.status()
        msgs = inbox.masks
    by_seq = {m.seq: m for m in msgs}
    assert by_seq[first_seq].object_ids == [1, 2]  # applied with exactly that frame
    assert all(m.object_ids == [1] for m in msgs if m.seq < first_seq)
    assert by_seq[third_seq].object_ids == [1, 2, 5]
    first_without_1 = next(k for k, m in enumerate(msgs) if 1 not in m.object_ids)
    with_6 = next(k for k, m in enumerate(msgs) if 6 in m.object_ids)
    assert all(m.object_ids == [2, 5] for m in msgs[first_without_1:with_6])
    assert 7 not in {oid for m in msgs for oid in m.object_ids}
    assert_masks_sane(msgs, 320, 240)
    assert status["state"] == "running" and status["objects"] == [2, 5]
    assert final["failed_frames"] == 0 and final["pending_num_pathways"] is None
    assert final["objects"] == [2, 5, 6] and msgs[-1].object_ids == [2, 5, 6]
    for key in ("fps", "latency_ms", "dropped_frames", "dropped_messages", "pathways"):
        assert key in status
    assert final["frames_processed"] >= len(msgs) - 1


def test_control_reset_and_stop_replies(tracker: Tracker) -> None:
    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=10",
        prompts={1: Prompt(box=BOX_320), 2: Prompt(box=(200, 100, 300, 200))},
        pub=ANY,
        control=ANY,
    )
    with running(config, tracker) as (node, inbox):
        inbox.wait_masks(1)
        with ControlClient(node.control_endpoint or "") as client:
            assert client.reset()["removed"] == [1, 2]
            assert client.status()["objects"] == []
            inbox.pump_until(
                lambda: bool(inbox.masks) and inbox.masks[-1].object_ids == [], 30, "no objects"
            )
            n = len(inbox.masks)
            inbox.wait_masks(n + 1)  # the stream goes on without objects
            assert inbox.masks[-1].object_ids == []
            node.stop()
            assert node.join(30)
            # The control socket is closed with the node: no reply, a clean timeout.
            with pytest.raises(TimeoutError):
                client.request({"op": "status"}, timeout_s=0.5)


# --------------------------------------------------------------------------- failures


def test_tracker_failures_make_the_node_unhealthy_then_recover(tracker: Tracker) -> None:
    real_step = tracker.step
    calls = {"n": 0}

    def flaky_step(frame, prompts=None):
        calls["n"] += 1
        if 2 <= calls["n"] <= 4:
            raise RuntimeError(f"injected failure {calls['n']}")
        return real_step(frame, prompts)

    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=10",
        prompts={1: Prompt(box=BOX_320)},
        pub=ANY,
        control=None,
        unhealthy_after=3,
    )
    tracker.step = flaky_step  # type: ignore[method-assign]
    try:
        with running(config, tracker) as (node, inbox):
            unhealthy = inbox.wait_state("unhealthy", 30)
            mark = inbox.status.index(unhealthy)
            inbox.wait_state("running", 30, mark)
            n = len(inbox.masks)
            inbox.wait_masks(n + 2)
    finally:
        del tracker.step  # back to the class's method
    summary = node.summary()
    assert "injected failure" in unhealthy.get("error")
    assert summary["failed_frames"] == 3
    assert summary["frames_processed"] >= len(inbox.masks) >= 3
    assert_masks_sane(inbox.masks, 320, 240, ids=[1], failed=3)


def test_unreachable_source_fails_fast(tracker: Tracker) -> None:
    config = NodeConfig.one_stream(source="rtsp://127.0.0.1:1/none", pub=ANY, control=None)
    node = Node(config, tracker=tracker)
    t0 = time.monotonic()
    with pytest.raises(NodeError, match=r"cannot open rtsp://127\.0\.0\.1:1/none"):
        node.run()
    assert time.monotonic() - t0 < 10
    assert node.state == "error"


# --------------------------------------------------------------------------- lag, overlay


def test_lagged_output_eos_and_overlay_on_the_right_frames(tmp_path: Path) -> None:
    lagged_tracker = Tracker(TrackerConfig(model="sam2.1_hiera_t", image_size=256, lag=2))
    video, png = tmp_path / "overlay.mp4", tmp_path / "overlay.png"
    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?frames=5&realtime=0",
        prompts={1: Prompt(box=BOX_320)},
        pub=ANY,
        control=None,
        policy="all",
        overlay_out=str(video),
        overlay_png=str(png),
    )
    node = Node(config, tracker=lagged_tracker)
    inbox = Inbox(node.endpoint)
    try:
        time.sleep(0.3)  # let the subscription reach the publisher: every frame counts here
        node.start()
        assert node.join(120), "a finite source must end the node"
        assert node.error is None
        inbox.pump_until(
            lambda: len(inbox.lagged) >= 5 and "stopped" in inbox.states(), 10, "all output"
        )
    finally:
        node.stop()
        inbox.close()
    # policy "all": every frame tracked, in order; lag 2: each frame again with hindsight,
    # the last two flushed at the end of the stream.
    assert [m.seq for m in inbox.masks] == [0, 1, 2, 3, 4]
    assert [m.seq for m in inbox.lagged] == [0, 1, 2, 3, 4]
    assert all(m.lag == 2 and m.topic == "masks-lagged/cam0" for m in inbox.lagged)
    assert [m.frame_index for m in inbox.lagged] == [m.frame_index for m in inbox.masks]
    assert_masks_sane(inbox.masks, 320, 240, ids=[1])

    import av

    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (240, 320, 3)
    for k, (got, msg) in enumerate(zip(frames, inbox.masks, strict=True)):
        src, _ = moving_shapes_frame(msg.seq)
        right = _block_diff(got, draw_masks(src, msg.masks))
        other, _ = moving_shapes_frame(msg.seq + 60)
        wrong = _block_diff(got, draw_masks(other, msg.masks))
        assert right < 4.0 and right < 0.5 * wrong, (k, right, wrong)
    from PIL import Image

    assert Image.open(png).size == (320, 240)


def _block_diff(a: np.ndarray, b: np.ndarray, block: int = 8) -> float:
    """Mean absolute difference of 8x8 block means: blind to the codec's loss of the
    scene's pixel noise, not to shapes that are somewhere else."""
    h, w = a.shape[0] // block * block, a.shape[1] // block * block

    def means(x: np.ndarray) -> np.ndarray:
        x = x[:h, :w].astype(np.float64)
        return x.reshape(h // block, block, w // block, block, -1).mean(axis=(1, 3))

    return float(np.abs(means(a) - means(b)).mean())


def test_the_node_package_and_the_cli_import_no_torch() -> None:
    """The tracker (and torch) is imported when a node builds one, not before: the CLI
    checks a whole configuration and prints one line about a mistake without it."""

    code = (
        "import sys, sam2long_stream.node, sam2long_stream.cli, sam2long_stream.settings;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_max_objects_refuses_more_at_once(tracker: Tracker) -> None:
    """A stream holds at most max_objects (tracked plus waiting): the prompt beyond the
    cap is refused at once, with no frame needed, and the tracked ones go on."""
    config = NodeConfig.one_stream(
        source="synthetic://moving-shapes?fps=10",
        prompts={1: Prompt(box=BOX_320)},
        pub=ANY,
        control=ANY,
        max_objects=2,
    )
    with running(config, tracker) as (node, inbox):
        inbox.wait_masks(1)
        assert node.control_endpoint is not None
        with ControlClient(node.control_endpoint) as client:
            second = client.request({"op": "add_object", "box": [150, 100, 230, 180]})
            third = client.request({"op": "add_object", "box": [20, 20, 60, 60]})
        k = len(inbox.masks)
        inbox.pump_until(lambda: any(m.object_ids == [1, 2] for m in inbox.masks[k:]), 60, "1, 2")
    assert second["ok"] is True
    assert third["ok"] is False and "at most 2 objects" in third["error"], third
    assert "seq" not in third  # refused by the control thread, never queued for a frame
