"""Hand-off between a source's thread and the tracker loop.

Two policies, because live and offline inputs want opposite things: a live camera must
never make the tracker fall behind real time ("latest": keep only the newest `maxsize`
frames and count what was pushed out), while a file or an evaluation run must see every
frame ("all": bounded queue whose `put` blocks, so the source slows down to the tracker).

"latest" with `maxsize` 1 is the lowest latency: a frame that arrives while another
waits replaces it. A few frames (a jitter buffer) keep a tracker whose mean step fits
the frame period from dropping frames when one step runs long or the decoder delivers
two frames at once; the cost is latency only while the tracker is behind, at most
`maxsize` - 1 frame periods more, paid back as soon as steps run short again.
"""

from __future__ import annotations

import collections
import threading
import time

from sam2long_stream.sources.frame import Frame

POLICIES = ("latest", "all")


class FrameQueue:
    """Thread-safe frame hand-off with a "latest" (drop the oldest) or "all"
    (back-pressure) policy; `get` returns frames in arrival order under both."""

    def __init__(self, policy: str = "latest", maxsize: int | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown queue policy {policy!r}: expected one of {POLICIES}")
        if maxsize is None:  # "latest": the newest frame only; "all": room for bursts
            maxsize = 1 if policy == "latest" else 64
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.policy = policy
        self.maxsize = maxsize
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropped = 0
        self._put_count = 0

    @property
    def dropped(self) -> int:
        """Frames pushed out by newer ones before anyone took them ("latest" only)."""
        with self._cond:
            return self._dropped

    @property
    def put_count(self) -> int:
        """Frames accepted by `put` so far."""
        with self._cond:
            return self._put_count

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, frame: Frame, timeout: float | None = None) -> bool:
        """Offer a frame; returns False when the queue is closed (or, for "all", when
        `timeout` passed while full). With "all" it blocks while full, but `close()`
        wakes it so shutdown never hangs on a stalled consumer."""
        with self._cond:
            if self._closed:
                return False
            if self.policy == "latest":
                while len(self._items) >= self.maxsize:
                    self._items.popleft()
                    self._dropped += 1
            else:
                deadline = None if timeout is None else time.monotonic() + timeout
                while len(self._items) >= self.maxsize and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                if self._closed:
                    return False
            self._items.append(frame)
            self._put_count += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None on timeout or once the queue is closed and empty."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        """Refuse further frames and wake every waiting `put`/`get`. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
