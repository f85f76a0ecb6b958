"""The tree-gain report and the score-calibration tool, on a small scene set tracked by
the real tracker and the bundled model: the gain table is the per-object J&F of the eval
report regrouped by the events the scenes wrote, and the calibration figures count
every (object, frame) after the prompt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sam2long_stream.evaluation import list_videos, load_video, run_eval
from sam2long_stream.models import BUNDLED_MODEL, resolve_weights
from sam2long_stream.scenes import EVENT_KINDS, HELD_OUT_SEED_START
from sam2long_stream.scenes.davis import write_davis
from sam2long_stream.scenes.gain import format_gain, gain_table, load_events

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import score_calibration  # noqa: E402

SEEDS = [HELD_OUT_SEED_START + 777_000 + i for i in range(3)]  # one video per event kind


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    write_davis(root, SEEDS, width=96, height=72, num_frames=30)
    return root


@pytest.fixture(scope="module")
def report(scenes: Path) -> dict:
    return run_eval(scenes, out=None, pathways=("sam2", 1, 2), mode="offline", log=None)


def _objects(report: dict, key: str) -> dict[tuple[str, int], float]:
    return {
        (video, int(obj)): s["J&F"]
        for video, v in report["results"][key]["videos"].items()
        for obj, s in v["objects"].items()
    }


def test_gain_is_the_eval_reports_j_and_f_regrouped_by_event(scenes: Path, report: dict) -> None:
    events = load_events(scenes)
    table = gain_table(report, events, "1", "2")
    base, tree = _objects(report, "1"), _objects(report, "2")
    keys = sorted(base)
    everything = table["all"]
    assert everything.n == len(keys) > 0
    assert everything.base == pytest.approx(np.mean([base[k] for k in keys]))
    assert everything.gain == pytest.approx(everything.new - everything.base)
    assert everything.better + everything.worse <= everything.n
    seen_kinds = {e["kind"] for evs in events.values() for e in evs}
    assert seen_kinds == set(EVENT_KINDS)  # write_davis puts every kind in the set
    for kind in EVENT_KINDS:
        hit = {(v, int(e["object"])) for v, evs in events.items() for e in evs if e["kind"] == kind}
        row = table["kinds"][kind]
        assert row.n == len(hit)
        assert row.new == pytest.approx(np.mean([tree[k] for k in hit]))
    for video in list_videos(scenes, "davis"):
        mine = [k for k in keys if k[0] == video]
        assert table["videos"][video].base == pytest.approx(np.mean([base[k] for k in mine]))
    text = format_gain(table, "P=1", "P=2")
    assert text.count("\n") == 1 + 1 + len(table["kinds"]) + len(table["videos"])


def test_tree_gain_tool_names_missing_results(scenes: Path, report: dict, tmp_path: Path) -> None:
    import json

    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    tool = [sys.executable, str(REPO / "tools" / "tree_gain.py"), str(path)]
    ok = subprocess.run([*tool, "--tree", "2"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "| event: occlusion |" in ok.stdout
    sam2 = subprocess.run([*tool, "--base", "sam2", "--tree", "2"], capture_output=True, text=True)
    assert sam2.returncode == 0, sam2.stderr
    assert "| J&F SAM 2 | J&F P=2 |" in sam2.stdout
    bad = subprocess.run(tool, capture_output=True, text=True, check=False)  # no P=3 in it
    assert bad.returncode == 2
    assert "has no result '3'" in bad.stderr and "Traceback" not in bad.stderr


def test_calibration_counts_every_object_after_its_prompt(scenes: Path) -> None:
    checkpoint, size = resolve_weights(BUNDLED_MODEL, None, None)
    stats = score_calibration.collect(
        str(scenes), 1, model=BUNDLED_MODEL, checkpoint=checkpoint, image_size=size
    )
    expected = visible = 0
    for name in list_videos(scenes, "davis"):
        video = load_video(scenes, name, "davis")
        first = min(video.prompt_frames.values())
        for t in range(first + 1, len(video.frames)):
            gt, _ = video.read_gt(t)
            expected += len(video.prompt_frames)
            visible += sum(bool(gt[o].any()) for o in video.prompt_frames)
    assert len(stats["pred"]) == expected
    assert int(stats["visible"].sum()) == visible
    assert ((stats["pred"] >= 0) & (stats["pred"] <= 1)).all()
    assert ((stats["true"] >= 0) & (stats["true"] <= 1)).all()
    text = score_calibration.report(stats)
    assert f"| {visible} / {expected - visible} |" in text


def test_calibration_reads_the_whole_pool_at_p3(scenes: Path) -> None:
    """The pool figures: the published mask is the best pathway's, so what the pool
    holds is at least as good; at P=1 the same holds for the decoder's candidates."""
    checkpoint, size = resolve_weights(BUNDLED_MODEL, None, None)
    weights = {"model": BUNDLED_MODEL, "checkpoint": checkpoint, "image_size": size}
    wide = score_calibration.collect(str(scenes), 3, **weights)
    assert (wide["pool_best"] >= wide["true"]).all()
    assert ((wide["pool_agreement"] >= 0) & (wide["pool_agreement"] <= 1)).all()
    assert (wide["pool_agreement"] < 1).any()  # three pathways are not always one mask
    assert "another pathway still held" in score_calibration.report(wide, 3)
    assert "pairwise IoU of the pool's masks" in score_calibration.report(wide, 3)
    # P=1: the decoder's three candidates, of which the published mask is one
    single = score_calibration.collect(str(scenes), 1, **weights)
    assert (single["pool_best"] >= single["true"] - 1e-9).all()
    assert ((single["pool_agreement"] >= 0) & (single["pool_agreement"] <= 1)).all()
    assert (single["pool_agreement"] < 1).any()
    assert "another of the decoder's 3 candidates" in score_calibration.report(single)
    assert "pairwise IoU of the candidates' masks" in score_calibration.report(single)


def test_spearman_is_a_rank_correlation() -> None:
    x = np.array([0.1, 0.5, 0.2, 0.9])
    assert score_calibration.spearman(x, x**3) == pytest.approx(1.0)
    assert score_calibration.spearman(x, -x) == pytest.approx(-1.0)


def test_compare_weights_tool_pairs_objects(scenes: Path, report: dict, tmp_path: Path) -> None:
    """The tool that chose between phases: the same weights against themselves differ by
    nothing; lowering one object's J&F moves the mean by that over n."""
    import copy
    import json

    assert Path(report["data"]).is_absolute()  # so that the tools find the set from anywhere
    base = tmp_path / "base.json"
    base.write_text(json.dumps(report))
    worse = copy.deepcopy(report)
    video = sorted(worse["results"]["2"]["videos"])[0]
    obj = sorted(worse["results"]["2"]["videos"][video]["objects"])[0]
    worse["results"]["2"]["videos"][video]["objects"][obj]["J&F"] -= 0.3
    new = tmp_path / "new.json"
    new.write_text(json.dumps(worse))
    tool = [sys.executable, str(REPO / "tools" / "compare_weights.py"), "--base", str(base)]
    same = subprocess.run([*tool, "--new", str(base)], capture_output=True, text=True, check=False)
    assert same.returncode == 0, same.stderr
    for title in ("SAM 2", "P=1", "P=2"):  # every run, SAM 2 (the tree off) first
        assert f"\n{title}: new against base" in "\n" + same.stdout
    assert "base: P=2 against SAM 2" in same.stdout and "new: P=2 against P=1" in same.stdout
    alone = [*tool, "--new", str(base), "--pathways", "sam2"]  # no count: no gain tables
    alone = subprocess.run(alone, capture_output=True, text=True, check=False)
    assert alone.returncode == 0, alone.stderr
    assert "SAM 2: new against base" in alone.stdout and "against SAM 2" not in alone.stdout
    assert "+0.0 (s.e. 0.0) | 0 / 0 |" in same.stdout
    n = gain_table(report, load_events(scenes), "1", "2")["all"].n
    moved = subprocess.run([*tool, "--new", str(new)], capture_output=True, text=True, check=False)
    assert moved.returncode == 0, moved.stderr
    p2 = moved.stdout.split("P=2: new against base")[1].split("base: P=2 against SAM 2")[0]
    row = next(line for line in p2.splitlines() if line.startswith("| all objects |"))
    assert f"{-30.0 / n:+.1f} (s.e." in row and row.endswith(f"| 0 / 1 | {n} |")
    other = copy.deepcopy(report)
    other["data"] = str(tmp_path)
    (tmp_path / "other.json").write_text(json.dumps(other))
    bad = subprocess.run(
        [*tool, "--new", str(tmp_path / "other.json")], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "same sets" in bad.stderr and "Traceback" not in bad.stderr


def test_error_budget_adds_up_to_evals_j(scenes: Path, tmp_path: Path) -> None:
    """tools/error_budget.py sorts every object-frame eval scored; the J it pools equals
    eval's per-object J weighted by scored frames, and ground truth itself costs nothing."""
    import json
    import shutil

    from sam2long_stream.evaluation.scoring import objects_by_frame

    out = tmp_path / "out"
    report = run_eval(scenes, out=out, pathways=(1,), mode="offline", log=None)
    (out / "results.json").write_text(json.dumps(report))
    tool = [sys.executable, str(REPO / "tools" / "error_budget.py"), str(out / "results.json")]
    done = subprocess.run(tool, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    pooled = float(done.stdout.split("J pooled ")[1].split()[0])
    weighted, frames = 0.0, 0
    for name in report["videos"]:
        per_object: dict[int, int] = {}
        for objects in objects_by_frame(load_video(scenes, name, "davis")).values():
            for o in objects:
                per_object[o] = per_object.get(o, 0) + 1
        for o, n in per_object.items():
            weighted += n * report["results"]["1"]["videos"][name]["objects"][str(o)]["J"]
            frames += n
    assert f"{frames} object-frames" in done.stdout
    assert pooled == pytest.approx(weighted / frames, abs=1e-3)
    shares = [float(line.split("|")[2].strip(" %")) for line in done.stdout.splitlines()[4:]]
    assert len(shares) == 6 and sum(shares) == pytest.approx(100, abs=0.5)
    shutil.rmtree(out / "P1")  # the ground truth as the prediction: no J lost
    shutil.copytree(scenes / "Annotations" / "480p", out / "P1")
    oracle = subprocess.run(tool, capture_output=True, text=True, check=False)
    assert "J pooled 1.000" in oracle.stdout, oracle.stdout + oracle.stderr
    assert "| visible, mask elsewhere (IoU < 0.1) | 0.0% | 0.000 |" in oracle.stdout
