"""Smoke test of the benchmark (``sam2long-stream bench``, tools/bench.py, the package
sam2long_stream.benchmark): every section runs on a few frames and writes sane JSON.

No timing thresholds: the figures are only checked to be there, positive and finite.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench():
    from sam2long_stream import benchmark

    return benchmark


def positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_every_section_reports_positive_finite_figures(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--frames", "2", "--warmup", "1", "--memory-frames", "1", "--threads", "1"]
    argv += ["--node-frames", "2"]
    assert bench.main([*argv, "--sections", "all", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith("sam2long-stream bench --frames 2")
    assert report["machine"]["threads"] == 1
    sections = report["sections"]
    assert list(sections) == ["memory", "pathways", "objects", "vs-sam2", "node"]  # memory first
    assert report["config"]["compile"] is False and report["config"]["node_frames"] == 2

    for name, sides in (("pathways", ("P=3", "P=1")), ("objects", ("4 objects", "1 object"))):
        r = sections[name]
        assert r["frames"] == 2
        assert all(positive(r["median_ms"][s]) for s in sides)
        assert positive(r["ratio"]) and positive(r["paired_ratio_median"])
        assert r["goal"] == bench.GOALS[name]

    r = sections["vs-sam2"]
    assert r["frames"] == 2
    assert all(positive(r["median_ms"][s]) for s in ("tree off", "P=3 tree", "sam2 predictor"))
    assert positive(r["ratio_tree_off"]) and positive(r["ratio_tree_on"])

    r = sections["memory"]
    assert r["N"] == 1 and r["after_10N"]["frames"] == 10
    assert positive(r["rss_ratio"]) and positive(r["retained_storage_ratio"])
    for snap in (r["after_N"], r["after_10N"]):
        assert positive(snap["rss_bytes"]) and positive(snap["storage_bytes"])
        assert snap["view_bytes"] <= snap["storage_bytes"]
    assert len(r["after_10N"]["entries_per_pathway"]) == 2 * 3  # 2 objects, P=3
    assert r["entries_bounded"] is True
    assert r["after_10N"]["max_entries_per_pathway"] <= r["entries_bound"]

    # node: the real RTSP test camera (make test installs it), a Node, a ZeroMQ subscriber
    r = sections["node"]
    assert r["skipped"] is None, r["skipped"]
    assert r["source"].startswith("rtsp://127.0.0.1:") and r["transport"] == "tcp"
    assert r["received"] == 3 and r["failed_frames"] == 0  # warm-up 1 + 2, all published
    assert r["frames"] >= 2 and r["decoded_frames"] > 0
    for key in ("decode_s", "preprocess_s", "publish_s", "track_s"):
        assert positive(r[key]), key
    assert r["preprocess_s"] < r["track_s"]  # preprocess is timed inside Tracker.step
    assert positive(r["overhead"]) and positive(r["node_overhead"])
    assert r["goal"] == bench.GOALS["node"] == 0.05
    lat, inside = r["latency_ms"], r["node_latency_ms"]
    assert r["latency_frames"] == len(r["latency_samples_ms"]) == 2
    assert positive(lat["p50"]) and lat["p50"] <= lat["p95"] <= lat["max"]
    assert positive(inside["p50"]) and inside["p50"] <= lat["p50"]  # publish <= receive

    table = capsys.readouterr().out
    for figure in ("P=3 / P=1", "4 / 1 objects", "SAM2VideoPredictor", "RSS after 10N"):
        assert figure in table
    for figure in ("node overhead (decode+preprocess+publish)", "glass-to-publish p50 / p95"):
        assert figure in table
    assert "skipped" not in table


def test_node_section_without_rtsp_camera_says_why(bench, tmp_path, capsys, monkeypatch):
    """No GStreamer camera: the latency is reported as skipped, with the reason, and the
    overhead is still measured, on the synthetic source."""
    from sam2long_stream.testing import camera

    monkeypatch.setattr(camera, "SYSTEM_PYTHON", str(tmp_path / "no-python3"))
    out = tmp_path / "node.json"
    argv = ["--sections", "node", "--node-frames", "2", "--warmup", "1", "--threads", "1"]
    assert bench.main([*argv, "--json", str(out)]) == 0
    r = json.loads(out.read_text())["sections"]["node"]
    assert r["skipped"].startswith("no live RTSP stream:") and "no-python3" in r["skipped"]
    assert r["source"].startswith("synthetic://") and r["latency_ms"] is None
    assert positive(r["overhead"]) and r["received"] == 3
    table = capsys.readouterr().out
    assert "glass-to-publish latency skipped: no live RTSP stream:" in table
    assert "(synthetic source)" in table


def test_compile_flag_reaches_every_tracker_config(bench, monkeypatch):
    import sam2long_stream
    from sam2long_stream.benchmark.sections.common import make_tracker

    monkeypatch.setattr(sam2long_stream, "Tracker", lambda cfg: cfg)
    assert make_tracker(bench.parse_args([]), num_pathways=1).compile is False
    cfg = make_tracker(bench.parse_args(["--compile"]), num_pathways=1)
    assert cfg.compile is True and cfg.num_pathways == 1


def test_bad_section_is_a_usage_error(bench, tmp_path):
    with pytest.raises(SystemExit) as e:
        bench.main(["--sections", "speed", "--json", str(tmp_path / "x.json")])
    assert e.value.code == 2


def test_fps_section_table_per_model_and_object_count(bench, tmp_path, capsys):
    """The GPU table's code path, run on the CPU: our P=1 and P=3 against sam2's own
    predictor, one row per (model, objects), on frames scaled to --frame-size."""
    out = tmp_path / "fps.json"
    argv = ["--sections", "fps", "--frames", "2", "--warmup", "1", "--threads", "1"]
    argv += ["--fps-objects", "1,2", "--frame-size", "400x300", "--json", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["config"]["frame_size"] == [300, 400]
    rows = report["sections"]["fps"]["rows"]
    assert [(r["model"], r["objects"]) for r in rows] == [
        ("sam2.1_hiera_t", 1),
        ("sam2.1_hiera_t", 2),
    ]
    for r in rows:
        assert set(r["fps"]) == {"P=1", "P=3", "sam2 predictor"}
        assert all(positive(v) for v in r["fps"].values())
        assert r["frames"] == 2 and r["anchor_fps"] == bench.ANCHOR_FPS["sam2.1_hiera_t"]
        assert r["ratio_P3_P1"] == pytest.approx(r["median_ms"]["P=3"] / r["median_ms"]["P=1"])
    table = capsys.readouterr().out
    assert "sam2 predictor FPS" in table and "P=3 >= anchor" in table


def test_scene_is_the_synthetic_source_scene_at_the_frame_size(bench):
    """One synthetic scene in the package: the bench draws `moving_shapes_frame` at the
    camera frame size, and prompts with its ground-truth boxes."""
    from sam2long_stream.sources.synthetic import moving_shapes_frame

    scene = bench.Scene(height=480, width=640)
    rgb, boxes = moving_shapes_frame(5, 640, 480)
    assert scene.frame(5).shape == (480, 640, 3)
    assert np.array_equal(scene.frame(5), rgb)
    assert scene.box(2, 5) == boxes[2]
    first = moving_shapes_frame(0, 640, 480)[1]
    assert scene.prompt_boxes(4) == [first[1], first[2], first[3], first[1]]  # shapes wrap
    with pytest.raises(ValueError, match="shape 9 is hidden on frame 0"):
        scene.box(9)


def test_cli_passes_bench_and_eval_through(tmp_path, capsys):
    """``sam2long-stream bench|eval ARGS`` reach the tools' own parsers, named as such."""
    from sam2long_stream.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--sections", "speed"])
    assert e.value.code == 2
    assert "sam2long-stream bench: error: argument --sections" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sam2long-stream eval: error: data folder not found")
