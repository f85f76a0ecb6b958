"""What the launcher knows: each shard's process across restarts, and each stream's
last status. A table row is a stream; its process columns come from its shard."""

from __future__ import annotations

import collections
import subprocess
import threading
from typing import Any

from sam2long_stream.redact import redact_text, redact_url
from sam2long_stream.supervisor.config import ShardSpec

# Status fields a row copies (the rest of a status message is the node's business).
STATUS_FIELDS = ("fps", "latency_ms", "dropped_frames", "error")


class ShardProcess:
    """One shard's node process across restarts."""

    def __init__(self, spec: ShardSpec) -> None:
        self.spec = spec
        self.shard_id = spec.shard_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every pid this shard had, for the caller's checks
        self.restarts = 0
        self.failures = 0  # consecutive quick failures, drives the backoff
        self.started_t: float | None = None
        self.next_start_t: float | None = 0.0  # when to (re)start; None: not again
        self.exit_code: int | None = None
        self.status_t: float | None = None  # last status of any of its streams, this run
        self.stopped = False  # the launcher stopped it (shutdown), not a crash
        self.reader: threading.Thread | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=20)  # redacted

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.running else None

    def state(self, now: float) -> str:
        """The process's state when it is not running (or has not spoken yet)."""
        if self.running:
            return "starting"
        if self.next_start_t is not None:
            if self.started_t is None:
                return "starting"
            return f"backoff {max(0.0, self.next_start_t - now):.0f}s"
        if self.exit_code is None or self.stopped:
            return "stopped"
        return "exited" if self.exit_code == 0 else f"failed ({self.exit_code})"

    def row(self, now: float) -> dict[str, Any]:
        return {
            "shard": self.shard_id,
            "state": "running" if self.running else self.state(now),
            "pid": self.pid,
            "device": self.spec.device,
            "restarts": self.restarts,
            "streams": list(self.spec.stream_ids),
            "exit_code": self.exit_code,
        }


class StreamState:
    """One stream's last status. ``shard`` None: a stream seen only through an upstream
    (another machine), with no process here."""

    def __init__(
        self, stream_id: str, shard: ShardProcess | None = None, source: str | None = None
    ) -> None:
        self.stream_id = stream_id
        self.shard = shard
        self.source = None if source is None else redact_url(source)
        self.status: dict[str, Any] = {}
        self.status_t: float | None = None  # monotonic time of the last status message
        self.seen = False  # a status came from this stream at least once

    @property
    def local(self) -> bool:
        return self.shard is not None

    def forget(self) -> None:
        """A new process of its shard: what the old one said no longer holds."""
        self.status, self.status_t = {}, None

    def update(self, state: str, header: dict[str, Any], now: float) -> None:
        merged = dict(self.status)
        merged.update({k: header[k] for k in STATUS_FIELDS if header.get(k) is not None})
        if "error" in merged:
            merged["error"] = redact_text(str(merged["error"]))
        if state not in ("error", "unhealthy"):
            merged.pop("error", None)
        merged["state"] = state
        self.status, self.status_t, self.seen = merged, now, True
        if self.shard is not None:
            self.shard.status_t = now

    def state(self, now: float) -> str:
        shard = self.shard
        if shard is None:
            return str(self.status.get("state", "?"))
        if shard.running:
            return str(self.status.get("state", "starting")) if self.status_t else "starting"
        return shard.state(now)

    def row(self, now: float) -> dict[str, Any]:
        st, shard = self.status, self.shard
        return {
            "stream_id": self.stream_id,
            "shard": shard.shard_id if shard else None,
            "local": self.local,
            "state": self.state(now),
            "source": self.source,
            "pid": shard.pid if shard else None,
            "device": shard.spec.device if shard else None,
            "restarts": shard.restarts if shard else None,
            "fps": st.get("fps"),
            "latency_ms": st.get("latency_ms"),
            "dropped_frames": st.get("dropped_frames"),
            "status_age_s": None if self.status_t is None else round(now - self.status_t, 1),
            "last_log": shard.tail[-1] if shard and shard.tail else None,
            "error": st.get("error"),
        }
