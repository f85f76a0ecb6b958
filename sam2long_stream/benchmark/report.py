"""The bench's report: one table of figures with goals and verdicts, notes under it,
and the GPU FPS table."""

from __future__ import annotations

import textwrap
from typing import Any

from sam2long_stream.benchmark.timing import verdict


def _rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    """Table rows: section, figure, the two sides, ratio, goal, verdict, frames."""
    rows: list[tuple[str, ...]] = []

    def add(
        section: str,
        figure: str,
        sides: str,
        ratio: float | str | None,
        goal: str,
        verdict: str,
        frames: str,
    ) -> None:
        rows.append(
            (
                section,
                figure,
                sides,
                "-" if ratio is None else ratio if isinstance(ratio, str) else f"{ratio:.3f}x",
                goal,
                verdict,
                frames,
            )
        )

    def ms(r: dict[str, Any], a: str, b: str) -> str:
        return f"{r['median_ms'][a]:.0f} / {r['median_ms'][b]:.0f} ms"

    if r := results.get("pathways"):
        g = r["goal"]
        add(
            "pathways",
            "step P=3 / P=1, 1 object",
            ms(r, "P=3", "P=1"),
            r["ratio"],
            f"<= {g}x",
            verdict(r["ratio"], g),
            str(r["frames"]),
        )
    if r := results.get("model-speed"):
        g, (ref, ours) = r["goal"], list(r["median_ms"])
        add(
            "model-speed",
            f"step {ref} / {ours}, P=3, {r['image_size']} px",
            ms(r, ref, ours),
            r["ratio"],
            f">= {g}x",
            "PASS" if r["ratio"] >= g else "MISS",
            str(r["frames"]),
        )
    if r := results.get("objects"):
        g = r["goal"]
        add(
            "objects",
            "step 4 / 1 objects, P=3",
            ms(r, "4 objects", "1 object"),
            r["ratio"],
            f"<= {g}x",
            verdict(r["ratio"], g),
            str(r["frames"]),
        )
    if r := results.get("vs-sam2"):
        for key, label, side in (
            ("ratio_tree_off", "tree off / SAM2VideoPredictor", "tree off"),
            ("ratio_tree_on", "P=3 tree / SAM2VideoPredictor", "P=3 tree"),
        ):
            add(
                "vs-sam2",
                label,
                ms(r, side, "sam2 predictor"),
                r[key],
                "-",
                "info",
                str(r["frames"]),
            )
    if r := results.get("memory"):
        g, n = r["goal"], r["N"]
        a, b = r["after_10N"], r["after_N"]
        frames = f"{10 * n} / {n}"
        mib = f"{a['rss_bytes'] / 2**20:.0f} / {b['rss_bytes'] / 2**20:.0f} MiB"
        add(
            "memory",
            "RSS after 10N / N frames",
            mib,
            r["rss_ratio"],
            f"<= {g}x",
            verdict(r["rss_ratio"], g),
            frames,
        )
        if "cuda_allocated_ratio" in r:
            ca, cb = a["cuda_allocated_bytes"] / 2**20, b["cuda_allocated_bytes"] / 2**20
            add(
                "memory",
                "CUDA allocated 10N / N",
                f"{ca:.0f} / {cb:.0f} MiB",
                r["cuda_allocated_ratio"],
                f"<= {g}x",
                verdict(r["cuda_allocated_ratio"], g),
                frames,
            )
        kib = f"{a['storage_bytes'] / 2**10:.0f} / {b['storage_bytes'] / 2**10:.0f} KiB"
        add(
            "memory",
            "tensors held by pools 10N / N",
            kib,
            r["retained_storage_ratio"],
            "-",
            "info",
            frames,
        )
        entries = f"{a['max_entries_per_pathway']} / {b['max_entries_per_pathway']}"
        add(
            "memory",
            "max entries per pathway 10N / N",
            entries,
            None,
            f"<= {r['entries_bound']}",
            "PASS" if r["entries_bounded"] else "MISS",
            frames,
        )
    if r := results.get("node"):
        rows.extend(_node_rows(r))
    if r := results.get("streams"):
        rows.extend(_streams_rows(r))
    return rows


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _streams_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    """The streams section's ratio rows, one set per stream count N: one process with N
    streams against N single-stream processes (see `sections.streams.bench_streams`)."""
    rows: list[tuple[str, ...]] = []
    for row in r["rows"]:
        n, one, procs = row["streams"], row["one"], row["processes"]
        ratios, goals, verdicts = row["ratios"], row["goals"], row["verdicts"]
        many = f"{n} process" + ("es" if n > 1 else "")
        for arm, label in ((procs, many), (one, "one process")):
            if arm is not None and arm["error"] is not None:
                rows.append(
                    ("streams", f"N={n}: {label}", "failed (see below)", "-", "-", "FAIL", "0")
                )
        if procs is None or one is None or procs["error"] or one["error"]:
            continue
        msgs = f"{one['messages']} / {procs['messages']}"

        rows.append(
            (
                "streams",
                f"N={n}: RSS, one process / {many}",
                f"{_mib(one['rss_bytes_max'])} / {_mib(procs['rss_bytes_max'])} MiB",
                _times(ratios["rss_ratio"]),
                goals["rss_ratio"] or "-",
                verdicts["rss_ratio"],
                msgs,
            )
        )
        rows.append(
            (
                "streams",
                f"N={n}: tracked fps, one process / {many}",
                f"{one['aggregate_fps']:.2f} / {procs['aggregate_fps']:.2f} fps",
                _times(ratios["fps_ratio"]),
                goals["fps_ratio"] or "-",
                verdicts["fps_ratio"],
                msgs,
            )
        )
        if n > 1:
            p95 = [s["latency_ms"]["p95"] for s in one["per_stream"].values() if s["latency_ms"]]
            sides = f"{max(p95):.0f} / {min(p95):.0f} ms" if p95 else "-"
            rows.append(
                (
                    "streams",
                    f"N={n}: p95 latency slowest / fastest stream, one process",
                    sides,
                    _times(ratios["p95_spread"]),
                    goals["p95_spread"] or "-",
                    verdicts["p95_spread"],
                    str(one["messages"]),
                )
            )
    return rows


def _node_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    """The node section's rows (see `sections.node.bench_node` for what each figure covers)."""
    rows: list[tuple[str, ...]] = []
    n, g = r["frames"], r["goal"]
    live = r["latency_ms"] is not None
    where = "" if live else " (synthetic source)"

    def per_frame(seconds: float) -> str:
        return f"{1e3 * seconds / n:.1f}" if n else "-"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f} %"

    if r["overhead"] is not None:
        model = r["track_s"] - r["preprocess_s"]
        sides = (
            f"{per_frame(r['decode_s'])} + {per_frame(r['preprocess_s'])} + "
            f"{per_frame(r['publish_s'])} / {per_frame(model)} ms"
        )
        result = verdict(r["overhead"], g)
    else:
        sides, result = "preprocess not separable", "-"
    rows.append(
        (
            "node",
            f"node overhead (decode+preprocess+publish) / model{where}",
            sides,
            pct(r["overhead"]),
            f"<= {100 * g:g} %",
            result,
            str(n),
        )
    )
    rows.append(
        (
            "node",
            f"node's overhead (decode+publish) / Tracker.step{where}",
            f"{per_frame(r['decode_s'])} + {per_frame(r['publish_s'])} / "
            f"{per_frame(r['track_s'])} ms",
            pct(r["node_overhead"]),
            "-",
            "info",
            str(n),
        )
    )
    if live:
        lat, inside = r["latency_ms"], r["node_latency_ms"]
        rows.append(
            (
                "node",
                "glass-to-publish p50 / p95, subscriber",
                f"{lat['p50']:.0f} / {lat['p95']:.0f} ms",
                "-",
                "-",
                "info",
                str(r["latency_frames"]),
            )
        )
        rows.append(
            (
                "node",
                "glass-to-publish p50 / p95, in node",
                f"{inside['p50']:.0f} / {inside['p95']:.0f} ms",
                "-",
                "-",
                "info",
                str(r["latency_frames"]),
            )
        )
    else:
        rows.append(
            ("node", "glass-to-publish p50 / p95", "skipped (see below)", "-", "-", "SKIP", "0")
        )
    return rows


def _notes(results: dict[str, dict[str, Any]]) -> list[str]:
    """Lines printed under the table: what a figure means, or why one is missing."""
    return _node_notes(results.get("node")) + _streams_notes(results.get("streams"))


def _streams_notes(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    lines = [
        f"streams: {r['source']} per stream i, P=3, {r['image_size']} px, one box "
        f"{r['box']} on every stream, policy latest, torch threads "
        f"{r['threads']['one']} in the one process, {r['threads']['processes']} in each of "
        f"the N; each arm measured for {r['seconds']:g} s after every stream delivered "
        f"{r['warmup']} masks messages. fps = masks messages received in the window / its "
        "length; latency = subscriber receive time - capture_time_ns; RSS = "
        "the largest sum of the arm's processes' RSS, sampled every 0.5 s in the window."
        + (f" One-process node options: {' '.join(r['node_args'])}." if r["node_args"] else "")
    ]
    for row in r["rows"]:
        for key in ("processes", "one"):
            arm = row[key]
            if arm is not None and arm["error"] is not None:
                lines.append(f"streams: N={row['streams']}, {key}: {arm['error']}")
    return lines


def _node_notes(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    lines = [
        f"node: {r['source']} ({r['transport'] or 'in-process'}), "
        f"{r['frame_size'][1]}x{r['frame_size'][0]} at {r['camera_fps']} fps, P=3, 1 object, "
        f"policy latest with {r['jitter_frames']} jitter frames; "
        f"{r['frames']} frames after {r['warmup']} warm-up, "
        f"{r['decoded_frames']} decoded, {r['dropped_frames']} dropped by the policy, "
        f"tracker {r['tracker_fps']} fps. Overhead, ms per tracked frame: decode (CPU, "
        "every decoded frame) + preprocess (resize+normalise, timed inside Tracker.step) "
        "+ publish / model (Tracker.step minus preprocess); the node's own figure keeps "
        "preprocess inside Tracker.step."
        + (
            " Glass = capture_time_ns, stamped by the RTSP source after decode and RGB "
            "conversion; latency = subscriber receive time - glass."
            if r["latency_ms"] is not None
            else ""
        )
    ]
    if r["skipped"]:
        lines.append(f"node: glass-to-publish latency skipped: {r['skipped']}")
        lines.append(
            "node: overhead measured on the synthetic source instead (its decode is the "
            "scene's rendering)"
        )
    return lines


def _grid(header: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    rows = [header, *body]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_fps_table(fps: dict[str, Any]) -> str:
    """One row per model and object count: FPS of each side and the goal check
    (P=3 at >= SAM 2.1's published P=1 FPS)."""
    sam2 = "sam2 vos_optimized" if fps.get("vos_optimized") else "sam2 predictor"
    header = (
        "model",
        "objects",
        "P=1 FPS",
        "P=3 FPS",
        f"{sam2} FPS",
        "P=3/P=1 time",
        "anchor P=1 FPS",
        "P=3 >= anchor",
        "frames",
    )
    body: list[tuple[str, ...]] = []
    for r in fps["rows"]:
        f, anchor = r["fps"], r["anchor_fps"]
        ok = (
            "-"
            if anchor is None or r["objects"] != 1
            else ("PASS" if f["P=3"] >= anchor else "MISS")
        )
        body.append(
            (
                r["model"],
                str(r["objects"]),
                f"{f['P=1']:.1f}",
                f"{f['P=3']:.1f}",
                f"{f['sam2 predictor']:.1f}",
                f"{r['ratio_P3_P1']:.2f}x",
                "-" if anchor is None else f"{anchor}",
                ok,
                str(r["frames"]),
            )
        )
    return _grid(header, body)


def format_streams_table(streams: dict[str, Any]) -> str:
    """One row per stream count and arm: the arm's own figures (the ratios between the
    arms are in the main table)."""
    header = (
        "N",
        "arm",
        "procs",
        "fps total",
        "fps per stream",
        "p50 / p95 ms, slowest stream",
        "p95 slowest/fastest",
        "RSS max / end MiB",
        "CPU ms/frame",
        "start s",
        "messages",
    )
    body: list[tuple[str, ...]] = []
    for row in streams["rows"]:
        n = row["streams"]
        many = f"{n} process" + ("es" if n > 1 else "")
        for key, name in (("processes", many), ("one", "one process")):
            a = row[key]
            if a is None:
                continue
            if a["error"] is not None:
                body.append((str(row["streams"]), name, *(["-"] * 8), "failed"))
                continue
            per = list(a["per_stream"].values())
            fps = [s["fps"] for s in per]
            lats = [s["latency_ms"] for s in per if s["latency_ms"]]
            slow = max(lats, key=lambda x: x["p95"]) if lats else None
            body.append(
                (
                    str(row["streams"]),
                    name,
                    str(a["processes"]),
                    f"{a['aggregate_fps']:.2f}",
                    f"{min(fps):.2f}-{max(fps):.2f}" if len(fps) > 1 else f"{fps[0]:.2f}",
                    "-" if slow is None else f"{slow['p50']:.0f} / {slow['p95']:.0f}",
                    "-" if a["p95_spread"] is None else f"{a['p95_spread']:.2f}x",
                    f"{_mib(a['rss_bytes_max'])} / {_mib(a['rss_bytes_end'])}",
                    "-" if a["cpu_ms_per_frame"] is None else f"{a['cpu_ms_per_frame']:.0f}",
                    f"{a['startup_s']:.0f}",
                    str(a["messages"]),
                )
            )
    return _grid(header, body)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The printed report: the figures table, its notes, and the FPS table if run."""
    header = ("section", "figure", "median A / B", "ratio", "goal", "result", "frames")
    parts = []
    if rows := _rows(results):
        parts.append(_grid(header, rows))
    if notes := _notes(results):
        parts.append("\n".join(textwrap.fill(n, 100, subsequent_indent="  ") for n in notes))
    if "fps" in results:
        parts.append(format_fps_table(results["fps"]))
    if "streams" in results:
        parts.append(format_streams_table(results["streams"]))
    return "\n\n".join(parts)
