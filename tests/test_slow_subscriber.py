"""A slow subscriber next to a steady one, on a real Publisher and real ZeroMQ SUB sockets:
full-HD masks in "bits" (~253 KiB a message) published as fast as the steady reader
takes them fill the slow reader's queues (zmq on both sides and the loopback TCP
buffers). The drop accounting must then tell the truth: the publisher counts the
episodes (`dropped_messages`, also on the status topic), the slow subscriber counts its
exact losses (`missed`), and the steady one loses nothing.

The slow reader is slow by construction, not by timing: it reads one message for every
`SLOW_EVERY` published, so it falls behind on any machine, however busy.
"""

from __future__ import annotations

import time

import numpy as np

from sam2long_stream.tracker.results import StepResult
from sam2long_stream.transport import Publisher
from sam2long_stream.transport.subscriber import Subscriber
from sam2long_stream.transport.wire import MasksMessage, StatusMessage

WIDTH, HEIGHT = 1920, 1080
MESSAGES = 240  # ~60 MiB in all, far beyond what the slow reader's buffers hold
SLOW_EVERY = 8
RECV_TIMEOUT_S = 10.0  # only ever reached when something is broken


def test_slow_subscriber_fills_its_queues_and_the_accounting_adds_up() -> None:
    rng = np.random.default_rng(7)
    masks = {1: rng.random((HEIGHT, WIDTH)) < 0.5, 2: rng.random((HEIGHT, WIDTH)) < 0.1}
    result = StepResult(0, HEIGHT, WIDTH, masks=masks)
    with Publisher("tcp://127.0.0.1:*", stream_id="cam0", hwm=4, encoding="bits") as pub:
        steady = Subscriber(pub.endpoint, topics=("masks/", "status/"), stream_id="cam0", hwm=4)
        slow = Subscriber(pub.endpoint, topics=("masks/",), stream_id="cam0", hwm=4)
        try:
            # Both subscriptions must have arrived before counting starts.
            deadline = time.monotonic() + 10
            first_steady = first_slow = None
            seq = 0
            while first_steady is None or first_slow is None:
                assert time.monotonic() < deadline, "subscribers never joined"
                pub.publish_masks(result, seq=seq, capture_time_ns=1)
                seq += 1
                first_steady = first_steady or steady.recv(timeout_s=0.05)
                first_slow = first_slow or slow.recv(timeout_s=0.05)
            burst_start = seq

            slow_got: list[MasksMessage] = [first_slow]  # type: ignore[list-item]
            steady_got = 0
            worst_publish_s = 0.0
            began = time.perf_counter()
            for i in range(MESSAGES):
                t = time.perf_counter()
                assert pub.publish_masks(result, seq=seq + i, capture_time_ns=1)
                worst_publish_s = max(worst_publish_s, time.perf_counter() - t)
                msg = steady.recv(timeout_s=RECV_TIMEOUT_S)
                while isinstance(msg, MasksMessage) and msg.seq < burst_start:  # late probes
                    msg = steady.recv(timeout_s=RECV_TIMEOUT_S)
                assert isinstance(msg, MasksMessage) and msg.seq == seq + i, msg
                assert msg.masks[1].shape == (HEIGHT, WIDTH)
                steady_got += 1
                if i % SLOW_EVERY == 0:
                    got = slow.recv(timeout_s=RECV_TIMEOUT_S)
                    assert isinstance(got, MasksMessage)
                    slow_got.append(got)
            burst_s = time.perf_counter() - began
            seq += MESSAGES

            # The steady reader lost nothing while the slow one fell behind.
            assert steady.missed == 0
            assert steady_got == MESSAGES
            assert pub.dropped_messages >= 1
            pub.publish_status("running")
            status = steady.recv(timeout_s=RECV_TIMEOUT_S)
            assert isinstance(status, StatusMessage)
            assert status.get("dropped_messages") == pub.dropped_messages

            # The slow reader drains what it still holds, then markers are published
            # until one reaches it (a marker sent while its queue is still full is
            # itself missed, and counted).
            while (got := slow.recv(timeout_s=0.5)) is not None:
                slow_got.append(got)
            marker = None
            deadline = time.monotonic() + 60
            while marker is None:
                assert time.monotonic() < deadline, "the slow reader never recovered"
                pub.publish_masks(result, seq=seq, capture_time_ns=1)
                seq += 1
                got = slow.recv(timeout_s=1.0)
                while got is not None:
                    slow_got.append(got)
                    if got.seq == seq - 1:
                        marker = got
                        break
                    got = slow.recv(timeout_s=1.0)
        finally:
            steady.close()
            slow.close()

    pub_seqs = [m.pub_seq for m in slow_got]
    assert all(isinstance(p, int) for p in pub_seqs)
    assert pub_seqs == sorted(set(pub_seqs)), "out of order or duplicated"  # type: ignore[type-var]
    span = pub_seqs[-1] - pub_seqs[0] + 1  # type: ignore[operator]
    # Every message between the first and the last it got is either received or missed.
    assert slow.received == len(slow_got)
    assert slow.received + slow.missed == span, (slow.received, slow.missed, span)
    assert slow.missed == span - len(set(pub_seqs))
    # It really fell behind: it got a small share of the burst.
    assert slow.missed >= MESSAGES // 2, (slow.missed, slow.received)
    print(
        f"{MESSAGES} messages of {WIDTH}x{HEIGHT} bits x2 in {burst_s:.2f} s "
        f"(worst publish {worst_publish_s * 1e3:.1f} ms): steady missed {steady.missed}, "
        f"slow received {slow.received} missed {slow.missed}, publisher dropped "
        f"{pub.dropped_messages} episode(s)"
    )
