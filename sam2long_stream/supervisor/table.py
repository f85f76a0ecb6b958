"""The live status table: one line per stream, with the shard that serves it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("STREAM", "SHARD", "STATE", "FPS", "LATENCY", "DROPPED", "RESTARTS", "PID", "DEVICE")


def _fmt(value: Any, spec: str = "", unit: str = "") -> str:
    if value is None:
        return "-"
    return (format(value, spec) if spec else str(value)) + unit


def format_table(rows: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """Plain text, columns padded to their widest cell; ``-`` where nothing is known."""
    body = [
        (
            str(r["stream_id"]),
            _fmt(r.get("shard")),
            str(r["state"]),
            _fmt(r["fps"], ".1f"),
            _fmt(r["latency_ms"], ".0f", " ms"),
            _fmt(r["dropped_frames"]),
            _fmt(r["restarts"]),
            _fmt(r["pid"]),
            _fmt(r["device"]),
        )
        for r in rows
    ]
    widths = [max(len(c), *(len(line[i]) for line in body)) for i, c in enumerate(COLUMNS)]
    out = [header] if header else []
    for line in (COLUMNS, *body):
        out.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(out)
