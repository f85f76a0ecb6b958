"""Publisher and subscriber SDK over real ZeroMQ sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from sam2long_stream.sources.frame import Frame
from sam2long_stream.tracker.results import ObjectScore, StepResult
from sam2long_stream.transport import Publisher, wire
from sam2long_stream.transport.subscriber import Subscriber
from sam2long_stream.transport.wire import MasksMessage, StatusMessage

ANY_PORT = "tcp://127.0.0.1:*"


def result(i: int, h: int = 24, w: int = 32, n: int = 2) -> StepResult:
    masks, scores = {}, {}
    for oid in range(1, n + 1):
        m = np.zeros((h, w), bool)
        m[(i + oid) % h :, : (i * oid) % w + 1] = True
        masks[oid] = m
        scores[oid] = ObjectScore(oid, 0.9, 2.0, -0.1 * i, 0, False, True, int(m.sum()), None)
    return StepResult(frame_index=i, height=h, width=w, masks=masks, scores=scores)


def wait_subscribed(pub: Publisher, topic: str, timeout_s: float = 5.0) -> None:
    """XPUB tells when the subscription arrived: no sleep-and-hope for the slow joiner."""
    deadline = time.monotonic() + timeout_s
    while not pub.has_subscribers(topic):
        assert time.monotonic() < deadline, f"no subscriber for {topic} after {timeout_s} s"
        time.sleep(0.005)


@contextlib.contextmanager
def raw_xpub(**subscriber: Any) -> Iterator[tuple[zmq.Socket, Subscriber]]:
    """A bare XPUB (to send hand-made messages) and a Subscriber(**subscriber) whose
    subscription has arrived."""
    raw = zmq.Context.instance().socket(zmq.XPUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(ANY_PORT)
    try:
        with Subscriber(raw.getsockopt_string(zmq.LAST_ENDPOINT), **subscriber) as sub:
            assert raw.poll(5000)  # the subscription arrived
            raw.recv()
            yield raw, sub
    finally:
        raw.close()


@pytest.fixture
def pub():
    p = Publisher(ANY_PORT, stream_id="cam0", hwm=1000)
    yield p
    p.close()


def test_endpoint_is_resolved(pub):
    assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith("*")


def test_subscriber_receives_in_order(pub):
    with Subscriber(pub.endpoint) as sub:
        wait_subscribed(pub, "masks/cam0")
        sent = [result(i) for i in range(50)]
        for i, r in enumerate(sent):
            assert pub.publish_masks(r, seq=100 + i, pts=i / 30, capture_time_ns=time.time_ns())
        got = [sub.recv(timeout_s=5) for _ in sent]
    assert pub.sent == 50 and pub.dropped_messages == 0
    assert [m.seq for m in got] == list(range(100, 150))
    for r, msg in zip(sent, got, strict=True):
        assert isinstance(msg, MasksMessage) and msg.frame_index == r.frame_index
        assert 0 <= msg.latency_ms < 5000
        for oid, m in r.masks.items():
            np.testing.assert_array_equal(msg.masks[oid], m)


def test_three_line_iterator_and_frame_metadata(pub):
    frame = Frame(rgb=np.zeros((24, 32, 3), np.uint8), seq=7, pts=0.25)
    sub = Subscriber(pub.endpoint)
    wait_subscribed(pub, "masks/cam0")
    for k in range(3):
        pub.publish_masks(result(k), frame, seq=7 + k, dropped_frames=k)
    seen = []
    for msg in sub:
        seen.append(
            (msg.seq, msg.pts, msg.dropped_frames, {i: int(m.sum()) for i, m in msg.masks.items()})
        )
        if len(seen) == 3:
            break
    sub.close()
    assert [s[0] for s in seen] == [7, 8, 9]
    assert seen[0][1] == 0.25 and [s[2] for s in seen] == [0, 1, 2]
    assert seen[1][3] == {i: int(m.sum()) for i, m in result(1).masks.items()}


def test_topic_filtering_status_and_lagged(pub):
    status_sub = Subscriber(pub.endpoint, topics=("status/",))
    lagged_sub = Subscriber(pub.endpoint, topics="masks-lagged/")
    masks_sub = Subscriber(pub.endpoint, topics=("masks/", "status/cam0"))
    try:
        wait_subscribed(pub, "status/cam0")
        wait_subscribed(pub, "masks-lagged/cam0")
        wait_subscribed(pub, "masks/cam0")
        pub.publish_masks(result(0), seq=0, capture_time_ns=1)
        pub.publish_masks(result(1), seq=1, capture_time_ns=1, lag=4)
        pub.publish_status("running", fps=30.0, width=32, height=24)

        st = status_sub.recv(timeout_s=5)
        assert isinstance(st, StatusMessage) and st.state == "running"
        assert st.get("fps") == 30.0 and st.get("dropped_messages") == 0
        assert status_sub.recv(timeout_s=0.1) is None  # no masks on the status topic

        lagged = lagged_sub.recv(timeout_s=5)
        assert isinstance(lagged, MasksMessage) and (lagged.seq, lagged.lag) == (1, 4)
        assert lagged_sub.recv(timeout_s=0.1) is None

        first, second = masks_sub.recv(timeout_s=5), masks_sub.recv(timeout_s=5)
        assert isinstance(first, MasksMessage) and first.seq == 0 and first.lag == 0
        assert isinstance(second, StatusMessage)  # "masks/" does not match "masks-lagged/"
        assert masks_sub.recv(timeout_s=0.1) is None
    finally:
        for s in (status_sub, lagged_sub, masks_sub):
            s.close()


def test_stream_id_filter_is_exact():
    with (
        Publisher(ANY_PORT, stream_id="cam10") as p10,
        Subscriber(p10.endpoint, stream_id="cam1") as sub,
    ):
        assert sub.topics == ("masks/cam1",)
        wait_subscribed(p10, "masks/cam10")  # the prefix matches on the wire ...
        p10.publish_masks(result(0), seq=0, capture_time_ns=1)
        assert sub.recv(timeout_s=0.3) is None  # ... but the SDK drops the other stream
        assert sub.skipped == 1


def test_gaps_in_another_streams_numbers_are_not_missed():
    with raw_xpub(stream_id="cam1") as (raw, sub):
        for stream, n in (("cam10", 0), ("cam1", 0), ("cam10", 5), ("cam1", 1)):
            raw.send_multipart(
                wire.encode_masks(stream, result(n), seq=n, pts=None, capture_time_ns=1, pub_seq=n)
            )
        got = [sub.recv(timeout_s=5) for _ in range(2)]
    assert [(m.stream_id, m.pub_seq) for m in got] == [("cam1", 0), ("cam1", 1)]
    assert sub.skipped == 2 and sub.missed == 0


def test_publisher_never_blocks_on_a_stalled_subscriber():
    # 2000 messages of 32 KiB each (64 MiB) to a subscriber that never reads: more than
    # both zmq queues and the kernel's loopback buffers can hold.
    with Publisher(ANY_PORT, stream_id="cam0", hwm=2, encoding="bits") as p:
        sub = Subscriber(p.endpoint, hwm=2)
        try:
            wait_subscribed(p, "masks/cam0")
            rng = np.random.default_rng(0)
            r = StepResult(0, 512, 512, masks={1: rng.random((512, 512)) < 0.5})
            worst = 0.0
            t0 = time.perf_counter()
            for i in range(2000):
                t = time.perf_counter()
                p.publish_masks(r, seq=i, capture_time_ns=1)
                worst = max(worst, time.perf_counter() - t)
            total = time.perf_counter() - t0
        finally:
            sub.close()
    assert p.sent == 2000 and p.dropped_messages >= 1, (p.sent, p.dropped_messages)
    print(
        f"sent {p.sent} dropped {p.dropped_messages} in {total:.2f} s, worst {worst * 1e3:.1f} ms"
    )
    assert total < 10 and worst < 0.25, (total, worst)


def test_a_stalled_subscriber_costs_the_others_nothing():
    """One subscriber stops reading: the node counts it, the steady one still receives
    every message, and the stalled one counts exactly what it missed (pub_seq gaps)."""
    rng = np.random.default_rng(1)
    r = StepResult(0, 1024, 1024, masks={1: rng.random((1024, 1024)) < 0.5})  # 128 KiB
    with Publisher(ANY_PORT, stream_id="cam0", hwm=2, encoding="bits") as p:
        stalled = Subscriber(p.endpoint, hwm=2)
        steady = Subscriber(p.endpoint, hwm=2)
        try:
            wait_subscribed(p, "masks/cam0")
            first = None
            deadline = time.monotonic() + 5
            while first is None:  # the slow joiner: probe until the steady one hears
                assert time.monotonic() < deadline, "steady subscriber never joined"
                p.publish_masks(r, seq=0, capture_time_ns=1)
                first = steady.recv(timeout_s=0.05)
            assert isinstance(first, MasksMessage) and first.pub_seq is not None
            for i in range(1, 201):  # 25 MiB: far more than the stalled one's buffers
                assert p.publish_masks(r, seq=i, capture_time_ns=1)
                msg = steady.recv(timeout_s=5)
                assert isinstance(msg, MasksMessage) and msg.seq == i
            assert steady.missed == 0 and p.dropped_messages >= 1
            # The stalled one reads at last: what it got plus what it missed is all.
            got = []
            while (msg := stalled.recv(timeout_s=0.5)) is not None:
                got.append(msg)
            p.publish_masks(r, seq=201, capture_time_ns=1)  # a last one shows the tail
            last = stalled.recv(timeout_s=5)
            assert isinstance(last, MasksMessage) and last.seq == 201
            got.append(last)
        finally:
            stalled.close()
            steady.close()
    assert stalled.missed > 0
    assert stalled.received + stalled.missed == last.pub_seq - got[0].pub_seq + 1
    assert [m.pub_seq for m in got] == sorted({m.pub_seq for m in got})


def test_missed_ignores_conflate_skips_and_restarts(pub):
    with Subscriber(pub.endpoint, conflate=True) as sub:
        wait_subscribed(pub, "masks/cam0")
        for i in range(3):
            pub.publish_masks(result(i), seq=i, capture_time_ns=1)
        time.sleep(0.3)
        assert sub.recv(timeout_s=5).seq == 2 and sub.skipped == 2 and sub.missed == 0


def test_missed_counts_gaps_and_starts_over_when_the_node_restarts():
    with raw_xpub() as (raw, sub):
        # 7, 8, then a restart (0, 1), then 1 -> 4 loses two
        for n in (7, 8, 0, 1, 4):
            parts = wire.encode_masks(
                "cam0", result(n), seq=n, pts=None, capture_time_ns=1, pub_seq=n
            )
            raw.send_multipart(parts)
        got = [sub.recv(timeout_s=5) for _ in range(5)]
    assert [m.pub_seq for m in got] == [7, 8, 0, 1, 4]
    assert sub.missed == 2


def test_no_subscriber_skips_encoding_without_blocking():
    with Publisher(ANY_PORT, stream_id="cam0") as p:
        t0 = time.perf_counter()
        for i in range(200):
            assert not p.publish_masks(result(i), seq=i, capture_time_ns=1)
        assert not p.publish_status("running")
        assert time.perf_counter() - t0 < 2
        assert (p.sent, p.dropped_messages, p.skipped) == (0, 0, 201)


def test_plain_pub_mode():
    with (
        Publisher(ANY_PORT, stream_id="cam0", count_drops=False) as p,
        Subscriber(p.endpoint) as sub,
    ):
        assert p.has_subscribers()  # a PUB cannot tell, so it always sends
        deadline = time.monotonic() + 5
        msg = None
        while msg is None and time.monotonic() < deadline:  # slow joiner: resend until seen
            p.publish_masks(result(0), seq=0, capture_time_ns=1)
            msg = sub.recv(timeout_s=0.05)
        assert isinstance(msg, MasksMessage) and msg.seq == 0


def test_conflate_returns_the_newest(pub):
    with Subscriber(pub.endpoint, conflate=True) as sub:
        wait_subscribed(pub, "masks/cam0")
        for i in range(3):
            pub.publish_masks(result(i), seq=i, capture_time_ns=1)
        time.sleep(0.3)  # let them arrive
        msg = sub.recv(timeout_s=5)
        assert msg is not None and msg.seq == 2 and sub.skipped == 2


def test_subscriber_skips_malformed_messages():
    with raw_xpub() as (raw, sub):
        good = wire.encode_masks("cam0", result(0), seq=9, pts=None, capture_time_ns=1)
        raw.send_multipart([b"masks/cam0", b"{not json"])
        raw.send_multipart([b"masks/cam0", good[1]])  # frames missing
        raw.send_multipart(good)
        msg = sub.recv(timeout_s=5)
        assert msg is not None and msg.seq == 9
        assert sub.bad_messages == 2 and sub.last_error is not None


def test_recv_timeout_and_closed():
    with Publisher(ANY_PORT) as p:
        sub = Subscriber(p.endpoint)
        t0 = time.perf_counter()
        assert sub.recv(timeout_s=0.2) is None
        assert 0.15 < time.perf_counter() - t0 < 2
        sub.close()
        assert sub.recv(timeout_s=0.1) is None
        assert list(sub) == []


def test_publisher_rejects_bad_arguments():
    with pytest.raises(ValueError):
        Publisher(ANY_PORT, stream_id="a/b")
    with pytest.raises(ValueError):
        Publisher(ANY_PORT, encoding="jpeg")
    with Publisher(ANY_PORT) as p, pytest.raises(OSError):
        Publisher(p.endpoint)  # address in use


def test_subscription_tracking_follows_the_last_subscriber(pub):
    a, b = Subscriber(pub.endpoint), Subscriber(pub.endpoint, topics=("status/",))
    c = Subscriber(pub.endpoint)
    wait_subscribed(pub, "masks/cam0")
    wait_subscribed(pub, "status/cam0")
    a.close()
    time.sleep(0.2)
    assert pub.has_subscribers("masks/cam0")  # c still wants masks
    c.close()
    deadline = time.monotonic() + 5
    while pub.has_subscribers("masks/cam0"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert pub.has_subscribers("status/cam0") and pub.has_subscribers()
    b.close()
