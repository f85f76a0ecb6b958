"""Smoke test of tools/bench.py: every section runs on a few frames and writes sane JSON.

No timing thresholds: the figures are only checked to be there, positive and finite.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "tools" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench", None)


def positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_every_section_reports_positive_finite_figures(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--frames", "2", "--warmup", "1", "--memory-frames", "1", "--threads", "1"]
    assert bench.main([*argv, "--sections", "all", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith("tools/bench.py --frames 2")
    assert report["machine"]["threads"] == 1
    sections = report["sections"]
    assert list(sections) == ["memory", "pathways", "objects", "vs-sam2"]  # memory runs first

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

    table = capsys.readouterr().out
    for figure in ("P=3 / P=1", "4 / 1 objects", "SAM2VideoPredictor", "RSS after 10N"):
        assert figure in table


def test_bad_section_is_a_usage_error(bench, tmp_path):
    with pytest.raises(SystemExit) as e:
        bench.main(["--sections", "speed", "--json", str(tmp_path / "x.json")])
    assert e.value.code == 2
