"""Health and metrics over HTTP, for orchestrators (Kubernetes probes) and Prometheus.

``GET /healthz``: 200 and a small JSON object while the node tracks (or waits for its
first frame) and the tracker is healthy; 503, with the reasons, when the tracker is
unhealthy, no frame arrived for longer than the grace period (camera gone, stream hung),
or the node is stopping. With several streams the body lists each stream's health and
the node answers 503 only when no stream is healthy (see `Node.health`).
``GET /metrics``: Prometheus text format, every sample labelled ``stream_id``.

Every node has a registry of its own (not prometheus_client's global one), so several
nodes in one process never clash. Counters are read from the node at scrape time; only
the latency histogram is fed per frame.

The server is the standard library's threaded HTTP server: read-only, GET/HEAD only, a
5 s socket timeout per connection, request lines capped by ``http.server`` (64 KiB).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# capture -> publish latency, seconds: from a fast GPU (~10 ms) to a slow CPU (seconds)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# status() key -> (metric name without _total, help)
_COUNTERS: dict[str, tuple[str, str]] = {
    "frames_processed": ("sam2long_frames_processed", "Frames tracked and published."),
    "failed_frames": ("sam2long_tracker_failures", "Frames skipped because the tracker raised."),
    "dropped_frames": (
        "sam2long_dropped_frames",
        "Source frames skipped by the real-time queue policy.",
    ),
    "dropped_messages": (
        "sam2long_dropped_messages",
        "Messages the publisher could not queue (a subscriber too slow).",
    ),
    "publish_errors": (
        "sam2long_publish_errors",
        "Masks or status messages that could not be encoded or sent.",
    ),
    "reconnects": ("sam2long_reconnects", "Successful source reconnections."),
    "source_disconnects": ("sam2long_source_disconnects", "Times the source stream was lost."),
    "pathway_switches": (
        "sam2long_pathway_switches",
        "Times an object's best pathway changed (summed over objects).",
    ),
    "resolution_changes": ("sam2long_resolution_changes", "Source frame size changes."),
}

# One (status dict, healthy) per stream: what the collector reads at scrape time.
Snapshot = Callable[[], Sequence[tuple[Mapping[str, Any], bool]]]


class _NodeCollector:
    """Reads the node's counters at scrape time (no second copy to keep in sync), one
    sample per stream, labelled ``stream_id``."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        streams = list(self._snapshot())
        for key, (name, doc) in _COUNTERS.items():
            c = CounterMetricFamily(name, doc, labels=["stream_id"])
            for s, _ in streams:
                c.add_metric([str(s["stream_id"])], float(s.get(key) or 0))
            yield c
        gauges: dict[str, tuple[str, Callable[[Mapping[str, Any], bool], float]]] = {
            "sam2long_fps": (
                "Processed frames per second (recent).",
                lambda s, _: s.get("fps") or 0.0,
            ),
            "sam2long_objects": ("Objects tracked.", lambda s, _: len(s.get("objects") or [])),
            "sam2long_healthy": (
                "1 when the stream is healthy (see /healthz).",
                lambda _, ok: 1.0 if ok else 0.0,
            ),
            "sam2long_consecutive_failures": (
                "Tracker failures in a row (0 when the last frame worked).",
                lambda s, _: s.get("consecutive_failures") or 0,
            ),
        }
        for name, (doc, value) in gauges.items():
            g = GaugeMetricFamily(name, doc, labels=["stream_id"])
            for s, ok in streams:
                g.add_metric([str(s["stream_id"])], float(value(s, ok)))
            yield g


class NodeMetrics:
    """A node's own Prometheus registry: its streams' counters plus a latency histogram,
    every sample labelled with its ``stream_id``."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._latency = Histogram(
            "sam2long_latency_seconds",
            "Capture-to-publish latency of each tracked frame.",
            ["stream_id"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.registry.register(_NodeCollector(snapshot))

    def observe_latency(self, stream_id: str, seconds: float) -> None:
        self._latency.labels(stream_id).observe(max(0.0, seconds))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 16


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """Serves ``/healthz`` and ``/metrics``. Binds in the constructor (so a taken port
    fails early, as OSError), serves after ``start()``; ``stop()`` closes the port."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        metrics: Callable[[], bytes],
        ready: Callable[[], tuple[bool, dict[str, Any]]] | None = None,
    ) -> None:
        """``ready``, when given, also serves ``/readyz`` (200 or 503, like ``/healthz``):
        the launcher's "every model loaded" for rollouts."""

        class Handler(BaseHTTPRequestHandler):
            timeout = 5.0  # a client that sends nothing does not hold a thread forever
            server_version = "sam2long-stream"
            sys_version = ""

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except OSError as exc:  # the prober gave up (timeout) or hung up
                    log.debug("http %s: reply not sent: %s", self.address_string(), exc)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    probe = {"/healthz": health, "/health": health}
                    if ready is not None:
                        probe["/readyz"] = ready
                    if path in probe:
                        ok, body = probe[path]()
                        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
                        reply = (200 if ok else 503, data, "application/json")
                    elif path == "/metrics":
                        reply = (200, metrics(), CONTENT_TYPE_LATEST)
                    else:
                        reply = (404, b"try /healthz or /metrics\n", "text/plain")
                except Exception:
                    log.exception("health endpoint failed on %s", path)
                    reply = (500, b"internal error; see the node log\n", "text/plain")
                self._reply(*reply)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http %s: " + format, self.address_string(), *args)

        cls = _Server6 if ":" in host else _Server
        try:
            self._server = cls((host, port), Handler)
        except OSError as exc:
            raise OSError(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from exc
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="health-http",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(2.0)
            self._thread = None
        self._server.server_close()
