"""The launcher's ``/healthz``, ``/readyz`` and ``/metrics``: `health.HealthServer`
serves them, prometheus_client writes the metrics (a registry of the launcher's own, read
at scrape time from the same rows as the table)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# row key -> (metric name, help); one series per stream, labelled stream and shard
STREAM_GAUGES: dict[str, tuple[str, str]] = {
    "fps": ("sam2long_launch_stream_fps", "Frames per second the stream's node tracks."),
    "latency_ms": (
        "sam2long_launch_stream_latency_ms",
        "Capture-to-publish latency the stream's node reports, ms.",
    ),
    "dropped_frames": (
        "sam2long_launch_stream_dropped_frames",
        "Frames the stream's node dropped to stay live.",
    ),
}


class LaunchCollector:
    """Reads the launcher at scrape time (no second copy of its state to keep in step).
    ``snapshot`` returns (alive, ready, stream rows, shard rows)."""

    def __init__(
        self,
        snapshot: Callable[
            [], tuple[bool, bool, Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]
        ],
    ) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        alive, ready, streams, shards = self._snapshot()
        yield GaugeMetricFamily(
            "sam2long_launch_up", "1 while the launcher loop and its proxy work.", value=int(alive)
        )
        yield GaugeMetricFamily(
            "sam2long_launch_ready",
            "1 once every local stream has reported status (its model is loaded).",
            value=int(ready),
        )
        labels = ["stream", "shard"]
        running = GaugeMetricFamily(
            "sam2long_launch_stream_running",
            "1 while the stream's node reports state running.",
            labels=labels,
        )
        info = GaugeMetricFamily(
            "sam2long_launch_stream_info",
            "1 per stream of this launch: its shard, device and source (secrets masked).",
            labels=["stream", "shard", "device", "source"],
        )
        gauges = {
            key: GaugeMetricFamily(name, doc, labels=labels)
            for key, (name, doc) in STREAM_GAUGES.items()
        }
        for r in streams:
            values = [str(r["stream_id"]), str(r["shard"] or "")]
            running.add_metric(values, float(r["state"] == "running"))
            info.add_metric([*values, str(r["device"] or ""), str(r["source"] or "")], 1.0)
            for key, family in gauges.items():
                if r[key] is not None:
                    family.add_metric(values, float(r[key]))
        yield running
        yield info
        yield from gauges.values()
        up = GaugeMetricFamily(
            "sam2long_launch_shard_running",
            "1 while the shard's node process runs.",
            labels=["shard", "device"],
        )
        restarts = CounterMetricFamily(
            "sam2long_launch_shard_restarts",
            "Times the launcher restarted the shard's node process.",
            labels=["shard", "device"],
        )
        for s in shards:
            values = [str(s["shard"]), str(s["device"])]
            up.add_metric(values, float(s["pid"] is not None))
            restarts.add_metric(values, float(s["restarts"]))
        yield up
        yield restarts


def registry(collector: LaunchCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
