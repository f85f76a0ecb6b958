"""One node, several cameras, one model: every stream's answers equal a tracker stepped
alone on the same frames; streams are batched yet none starves; a stream that fails,
ends or is removed never stalls the others; control requests name their stream;
add_stream/remove_stream at run time; per-stream status, metrics and health.

Real components on 127.0.0.1: the sam2 model code with random weights (tiny, 256 px),
synthetic and RTSP sources, ZeroMQ sockets, the HTTP endpoint.
"""

from __future__ import annotations

import json
import time
import urllib.request

import numpy as np
import pytest

import sam2long_stream.tracker.tracker as batch
from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.control import ControlClient
from sam2long_stream.node import Node, NodeConfig, StreamConfig
from sam2long_stream.sources import moving_shapes_frame
from tests.test_node import Inbox

ANY = "tcp://127.0.0.1:*"


def synthetic(frames: int | None = None, seed: int = 0, fps: float = 10.0) -> str:
    if frames is None:
        return f"synthetic://moving-shapes?fps={fps}&seed={seed}"
    return f"synthetic://moving-shapes?frames={frames}&seed={seed}&realtime=0"


@pytest.fixture(scope="module")
def tracker() -> Tracker:
    return Tracker(TrackerConfig(model="sam2.1_hiera_t", image_size=256))


pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")


def of(inbox: Inbox, stream_id: str) -> list:
    return [m for m in inbox.masks if m.stream_id == stream_id]


def states(inbox: Inbox, stream_id: str) -> list[str]:
    return [m.state for m in inbox.status if m.stream_id == stream_id]


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------- same answers


def test_each_stream_equals_a_tracker_stepped_alone(tracker: Tracker) -> None:
    """Three streams (policy all, 4-6 frames each, their own prompts), at most two per
    tick: each stream's masks, scores and logits equal a tracker's stepped alone on the
    same frames; every frame of every stream is tracked (none starves)."""
    specs = {
        "a": (0, 5, {1: Prompt(box=(40, 30, 140, 130))}),
        "b": (
            1,
            4,
            {1: Prompt(box=(150, 100, 230, 180)), 2: Prompt(points=[(60, 200)], labels=[1])},
        ),
        "c": (2, 6, {3: Prompt(box=(10, 10, 120, 90))}),
    }
    streams = tuple(
        StreamConfig(source=synthetic(n, seed), stream_id=sid, prompts=prompts, policy="all")
        for sid, (seed, n, prompts) in specs.items()
    )
    config = NodeConfig(streams=streams, pub=ANY, control=None, max_batch=2, max_wait_s=0.5)
    node = Node(config, tracker=tracker)
    inbox = Inbox(node.endpoint)
    try:
        assert node.wait_for_subscribers(10)
        node.start()
        assert node.join(600), "finite sources must end the node"
        assert node.error is None, node.error
        inbox.pump_until(
            lambda: all("stopped" in states(inbox, sid) for sid in specs), 30, "every stopped"
        )
    finally:
        node.stop()
        inbox.close()
    summary = node.summary()
    assert sorted(summary["streams"]) == ["a", "b", "c"]
    assert summary["frames_processed"] == 15 and summary["failed_frames"] == 0
    assert summary["batching"]["max_batch"] == 2  # batched, within max_batch
    assert summary["batching"]["mean_batch"] > 1
    trackers = {s.id: s.tracker for s in node.streams()}
    assert len({id(t.engine) for t in trackers.values()}) == 1  # one model
    for sid, (seed, n, prompts) in specs.items():
        msgs = of(inbox, sid)
        assert [m.seq for m in msgs] == list(range(n)), sid  # every frame, in order
        assert summary["streams"][sid]["frames_processed"] == n
        alone = Tracker(tracker.config, engine=tracker.engine)
        for k, msg in enumerate(msgs):
            rgb, _ = moving_shapes_frame(k, seed=seed)
            ref = alone.step(rgb, prompts if k == 0 else None)
            assert ref is not None and msg.object_ids == ref.object_ids == sorted(prompts)
            for obj in msg.objects:
                want = ref.scores[obj["id"]]
                for key in ("iou", "object_score_logit", "cumulative_score"):
                    assert obj[key] == pytest.approx(getattr(want, key), abs=1e-5), (sid, k)
                differ = np.count_nonzero(msg.masks[obj["id"]] != ref.masks[obj["id"]])
                assert differ <= 1e-3 * msg.width * msg.height, (sid, k, differ)
        # the logits themselves: every pathway of every object
        got, want = trackers[sid]._objects, alone._objects
        assert sorted(got) == sorted(want)
        for oid in want:
            assert len(got[oid].pool) == len(want[oid].pool)
            for p, q in zip(got[oid].pool, want[oid].pool, strict=True):
                assert abs(p.score - q.score) <= 1e-5
                for c, d in zip(p.recent, q.recent, strict=True):
                    diff = (c.low_res.float() - d.low_res.float()).abs().max().item()
                    assert diff <= 1e-5, (sid, oid, diff)


# --------------------------------------------------------------------------- faults


def test_a_failing_stream_never_costs_the_others_a_frame(tracker: Tracker, monkeypatch) -> None:
    """The batched call fails whenever stream b is in it (as a bad prompt would): the node
    steps the streams one by one, a's frames all go through, b's fail and are counted.
    A dead RTSP camera (c) reports its errors and retries without stalling anyone."""
    calls = {"batched": 0}
    real_step_many = batch.step_many  # Tracker.step is step_many of one tracker

    def failing_step_many(trackers, frames, prompts=None):
        if len(trackers) == 1:
            return real_step_many(trackers, frames, prompts)
        calls["batched"] += 1
        raise RuntimeError("one stream's bad input")

    monkeypatch.setattr(batch, "step_many", failing_step_many)
    streams = (
        StreamConfig(source=synthetic(6, 0), stream_id="a", policy="all"),
        StreamConfig(source=synthetic(6, 1), stream_id="b", policy="all"),
        StreamConfig(source="rtsp://127.0.0.1:1/none", stream_id="c"),
    )
    config = NodeConfig(streams=streams, pub=ANY, control=None, max_wait_s=0.5)
    node = Node(config, tracker=tracker)
    real_step = Tracker.step

    def b_fails(self, frame, prompts=None):
        if self is node.streams()[1].tracker:
            raise ValueError("stream b is broken")
        return real_step(self, frame, prompts)

    monkeypatch.setattr(Tracker, "step", b_fails)
    inbox = Inbox(node.endpoint)
    try:
        assert node.wait_for_subscribers(10, topic="masks/a")
        node.start()
        inbox.pump_until(lambda: len(of(inbox, "a")) == 6, 300, "all of a's frames")
        inbox.pump_until(lambda: "error" in states(inbox, "c"), 30, "c's error")
        # a and b end with their files; c (a live camera) keeps the node up
        inbox.pump_until(
            lambda: "stopped" in states(inbox, "a") and "stopped" in states(inbox, "b"),
            60,
            "a and b stopped",
        )
        assert node.join(0) is False
        status = node.status()
    finally:
        node.stop()
        assert node.join(60)
        inbox.close()
    assert node.error is None, node.error
    assert [m.seq for m in of(inbox, "a")] == list(range(6))
    assert of(inbox, "b") == []
    summary = node.summary()["streams"]
    assert summary["a"]["failed_frames"] == 0 and summary["b"]["failed_frames"] == 6
    assert calls["batched"] >= 1 and status["batching"]["fallbacks"] >= 1
    assert status["streams"]["b"]["last_error"].endswith("stream b is broken")
    assert status["streams"]["c"]["source_state"] in ("error", "reconnecting")
    assert status["streams"]["c"]["frames"] == 0
    assert "eos" in states(inbox, "a") and states(inbox, "a")[-1] == "stopped"
    assert "unhealthy" in states(inbox, "b")


# --------------------------------------------------------------------------- control


def test_control_names_the_stream_and_streams_come_and_go(tracker: Tracker) -> None:
    streams = (
        StreamConfig(
            source=synthetic(), stream_id="a", prompts={1: Prompt(box=(40, 30, 140, 130))}
        ),
        StreamConfig(source=synthetic(seed=1), stream_id="b"),
    )
    config = NodeConfig(streams=streams, pub=ANY, control=ANY, http="127.0.0.1:0")
    node = Node(config, tracker=tracker)
    inbox = Inbox(node.endpoint)
    node.start()
    try:
        inbox.pump_until(lambda: of(inbox, "a") and of(inbox, "b"), 120, "both streams")
        assert node.control_endpoint is not None and node.http_endpoint is not None
        with ControlClient(node.control_endpoint) as client:
            # with two streams, "stream" is required (status aside: the node's)
            no_stream = client.request({"op": "add_object", "box": [10, 10, 50, 50]})
            assert no_stream["ok"] is False and '"stream"' in no_stream["error"]
            assert "a, b" in no_stream["error"]
            unknown = client.request({"op": "reset", "stream": "zz"})
            assert unknown["ok"] is False and "unknown stream 'zz'" in unknown["error"]
            bad_id = client.request({"op": "status", "stream": "no/slash"})
            assert bad_id["ok"] is False and "stream" in bad_id["error"]
            whole = client.status()
            assert sorted(whole["streams"]) == ["a", "b"] and whole["device"] == "cpu"
            assert whole["streams"]["a"]["objects"] == [1]

            added = client.add_object(4, box=[150, 100, 230, 180], stream="b")
            assert added["stream"] == "b" and added["object_id"] == 4
            inbox.pump_until(lambda: of(inbox, "b")[-1].object_ids == [4], 120, "b's object")
            assert client.status(stream="a")["objects"] == [1]  # a untouched
            assert client.status(stream="b")["objects"] == [4]

            # add_stream: a bad URL and a duplicate id are refused, nothing changes
            bad = client.request({"op": "add_stream", "source": "ftp://cam/x", "stream": "c"})
            assert bad["ok"] is False and "unsupported source" in bad["error"]
            dup = client.request({"op": "add_stream", "source": synthetic(), "stream": "a"})
            assert dup["ok"] is False and "exists already" in dup["error"]
            secret = "rtsp://user:hunter2@127.0.0.1:1/x"
            leaky = client.request({"op": "add_stream", "source": secret, "stream": "a"})
            assert "hunter2" not in json.dumps(leaky)
            assert sorted(client.status()["streams"]) == ["a", "b"]
            new = client.add_stream(
                synthetic(seed=2), stream="c", prompts={2: {"box": [5, 5, 60, 60]}}
            )
            assert new["stream"] == "c"
            inbox.pump_until(lambda: len(of(inbox, "c")) >= 2, 120, "the new stream's masks")
            assert of(inbox, "c")[0].object_ids == [2]  # its prompt went with its first frame
            assert states(inbox, "c")[0] == "starting"

            # /metrics and /healthz speak per stream
            code, body = http_get(node.http_endpoint + "/healthz")
            health = json.loads(body)
            assert code == 200 and sorted(health["streams"]) == ["a", "b", "c"]
            code, text = http_get(node.http_endpoint + "/metrics")
            for sid in ("a", "b", "c"):
                assert f'sam2long_frames_processed_total{{stream_id="{sid}"}}' in text.decode()
            assert 'sam2long_publish_errors_total{stream_id="a"} 0.0' in text.decode()

            # remove_stream: answered once the stream is gone (its id is free then); the
            # others go on
            gone = client.remove_stream("b")
            assert gone == {**gone, "ok": True, "stream": "b", "removed": True}
            again = client.request({"op": "remove_stream", "stream": "b"})
            assert again["ok"] is False and "unknown stream 'b'" in again["error"]
            inbox.pump_until(lambda: "stopped" in states(inbox, "b"), 60, "b stopped")
            n_a, n_c = len(of(inbox, "a")), len(of(inbox, "c"))
            inbox.pump_until(
                lambda: len(of(inbox, "a")) > n_a and len(of(inbox, "c")) > n_c, 120, "a and c"
            )
            assert sorted(client.status()["streams"]) == ["a", "c"]
            stopped = next(m for m in inbox.status if m.stream_id == "b" and m.state == "stopped")
            assert stopped.get("frames_processed") >= 1
    finally:
        node.stop()
        assert node.join(60)
        inbox.close()
    assert node.error is None, node.error
    summary = node.summary()
    assert sorted(summary["streams"]) == ["a", "b (removed)", "c"]  # every stream it had
    assert summary["streams"]["b (removed)"]["removed"] is True
    assert summary["failed_frames"] == 0


def test_one_stream_node_takes_requests_without_stream(tracker: Tracker) -> None:
    config = NodeConfig.one_stream(source=synthetic(), stream_id="solo", pub=ANY, control=ANY)
    node = Node(config, tracker=tracker)
    inbox = Inbox(node.endpoint)
    node.start()
    try:
        inbox.wait_masks(1, 120)
        with ControlClient(node.control_endpoint or "") as client:
            status = client.status()
            assert status["stream_id"] == "solo" and status["device"] == "cpu"
            assert client.status(stream="solo")["stream_id"] == "solo"
            assert client.request({"op": "status", "stream": "x"})["ok"] is False
            reply = client.add_object(box=[10, 10, 60, 60])
            assert reply["object_id"] == 1 and reply["stream"] == "solo"
            removed = client.remove_object(1, stream="solo")
            assert removed["applies"].startswith("between frames")
            assert client.status()["objects"] == []
            deadline = time.monotonic() + 120
            while client.status()["held_prompts"] and time.monotonic() < deadline:
                time.sleep(0.1)
            inbox.pump_until(
                lambda: bool(inbox.masks) and inbox.masks[-1].object_ids == [], 120, "removed"
            )
    finally:
        node.stop()
        assert node.join(60)
        inbox.close()
    assert node.error is None and node.state == "stopped"


def test_bad_stream_ids_at_start() -> None:
    with pytest.raises(ValueError, match="duplicate stream id"):
        NodeConfig(
            streams=(StreamConfig(source=synthetic()), StreamConfig(source=synthetic(seed=1)))
        )
    with pytest.raises(ValueError, match="stream"):
        StreamConfig(source=synthetic(), stream_id="a/b")
