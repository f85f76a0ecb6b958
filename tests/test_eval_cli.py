"""``sam2long-stream eval`` as researchers use it: scoring a prediction folder (no model,
no torch), choosing the split (--set, --video-list), the help, the J-per-frame picture,
bad input, and agreement with the DAVIS 2017 toolkit on a whole dataset.

The toolkit datasets below were scored once with the official evaluators, run with
opencv-python-headless 5.0 and scikit-image 0.26 (not installed here); the fixed values
are their output. DAVIS: 3 videos, 2-3 objects each, void pixels, an occluded object,
predictions with shifts, a missed object, a false positive, an id swap and a dilation,
scored with davis2017-evaluation at ac7c43f (``DAVISEvaluation(task="semi-supervised",
gt_set="val").evaluate``). SA-V: 2 videos, overlapping objects, an occlusion, a false
positive, a missed frame, scored with sam2's ``sav_dataset/sav_evaluator.py``
(``utils.sav_benchmark.benchmark``) at 2b90b9f.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2long_stream.evaluation import cli, davis_palette, load_video, runner
from sam2long_stream.evaluation import report as eval_report
from tests.test_eval import (
    Oracle,
    davis_oracle,
    ellipse,
    rect,
    sav_masks,
    shift,
    write_davis,
)

REPO = Path(__file__).resolve().parents[1]


# -- a DAVIS dataset and predictions the DAVIS toolkit has scored ---------------------------
def _orbit_gt(t: int, h: int = 90, w: int = 120) -> np.ndarray:
    """Three objects: a disc circling, a box sliding right (hidden behind the disc's
    track on frame 5), a thin bar growing; two void (255) rows at the bottom."""
    labels = np.zeros((h, w), np.uint8)
    labels[rect(h, w, 50, 8 + 9 * t, 22, 26)] = 2
    labels[rect(h, w, 10, 100, 10 + 5 * t, 4)] = 3
    a = 0.7 * t
    labels[ellipse(h, w, 40 + 15 * np.sin(a), 55 + 25 * np.cos(a), 14, 17)] = 1
    if t == 5:
        labels[labels == 2] = 0  # occluded: the toolkit scores an empty ground truth too
    labels[h - 2 :] = 255
    return labels


def _orbit_pred(t: int) -> np.ndarray:
    gt = _orbit_gt(t)
    h, w = gt.shape
    pred = np.zeros_like(gt)
    pred[shift(gt == 2, 0, 0) if t != 4 else np.zeros_like(gt, bool)] = 2  # missed on 4
    bar = gt == 3
    grown = bar.copy()  # dilated by one pixel (4-neighbours)
    grown[1:] |= bar[:-1]
    grown[:-1] |= bar[1:]
    grown[:, 1:] |= bar[:, :-1]
    grown[:, :-1] |= bar[:, 1:]
    pred[grown] = 3
    pred[shift(gt == 1, 2, 1)] = 1
    if t == 5:
        pred[rect(h, w, 60, 10, 8, 8)] = 2  # false positive while object 2 is hidden
    return pred


def _swap_gt(t: int, h: int = 64, w: int = 96) -> np.ndarray:
    labels = np.zeros((h, w), np.uint8)
    labels[ellipse(h, w, 30, 20 + 6 * t, 10, 12)] = 1
    labels[rect(h, w, 8, 70 - 5 * t, 18, 14)] = 2
    return labels


def _swap_pred(t: int) -> np.ndarray:
    gt = _swap_gt(t)
    if t in (3, 4):  # identity switch
        return np.where(gt == 1, 2, np.where(gt == 2, 1, 0)).astype(np.uint8)
    pred = np.zeros_like(gt)
    pred[shift(gt == 2, -1, 2)] = 2
    pred[shift(gt == 1, 1, -1)] = 1
    return pred


def _solo_gt(t: int, h: int = 48, w: int = 64) -> np.ndarray:
    labels = np.zeros((h, w), np.uint8)
    labels[rect(h, w, 10 + t, 12, 20, 30)] = 1
    return labels


def _solo_pred(t: int) -> np.ndarray:
    return np.where(rect(48, 64, 12 + t, 10, 18, 30), 1, 0).astype(np.uint8)


TOOLKIT_VIDEOS = {  # name -> (ground truth, prediction, frame count)
    "orbit": (_orbit_gt, _orbit_pred, 8),
    "swap": (_swap_gt, _swap_pred, 7),
    "solo": (_solo_gt, _solo_pred, 5),
}


def _palette_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels)
    im.putpalette(davis_palette())
    im.save(path)


def write_toolkit_dataset(root: Path) -> tuple[Path, Path]:
    """DAVIS layout with ImageSets/2017 (val: orbit, swap; train: solo) and a prediction
    folder holding orbit and swap only (solo is train: not needed for --set val)."""
    data, pred = root / "DAVIS", root / "pred"
    for name, (gt, pr, n) in TOOLKIT_VIDEOS.items():
        for t in range(n):
            labels = gt(t)
            img = np.full((*labels.shape, 3), 90, np.uint8)
            img[labels == 1], img[labels == 2], img[labels == 3] = (250, 60, 60), (60, 250, 60), 255
            jpg = data / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            jpg.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(jpg)
            _palette_png(data / "Annotations" / "480p" / name / f"{t:05d}.png", labels)
            if name != "solo":
                _palette_png(pred / name / f"{t:05d}.png", pr(t))
    sets = data / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("orbit\nswap\n")
    (sets / "train.txt").write_text("solo\n")
    return data, pred


# Per object (J, F) and the means, as the DAVIS 2017 toolkit printed them for
# write_toolkit_dataset (M_per_object, np.mean of "M", final_mean = (J + F) / 2).
TOOLKIT_SCORES = {
    ("orbit", "1"): (0.821023760309045, 0.8911290322580645),
    ("orbit", "2"): (0.6076287826287826, 0.6561091340450771),
    ("orbit", "3"): (0.632636214648273, 1.0),
    ("swap", "1"): (0.5007440389009316, 0.556538365616427),
    ("swap", "2"): (0.40800000000000003, 0.3066742351816444),
}
TOOLKIT_MEAN = {"J": 0.5940065592974064, "F": 0.6820901534202426, "J&F": 0.6380483563588245}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real console entry point (sam2long_stream.cli) in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "sam2long_stream.cli", "eval", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def toolkit(tmp_path: Path) -> tuple[Path, Path]:
    return write_toolkit_dataset(tmp_path / "tk")


def test_pred_folder_matches_the_davis_toolkit(toolkit, tmp_path):
    data, pred = toolkit
    report_path = tmp_path / "r.json"
    argv = ["--data", str(data), "--set", "val", "--pred", str(pred)]
    rc = cli.main([*argv, "--json", str(report_path)])
    assert rc == 0
    report = json.loads(report_path.read_text())
    assert report["videos"] == ["orbit", "swap"]  # val only: solo (train) is not scored
    assert list(report["results"]) == ["pred"]
    r = report["results"]["pred"]
    for (video, obj), (j, f) in TOOLKIT_SCORES.items():
        got = r["videos"][video]["objects"][obj]
        assert got["J"] == pytest.approx(j, abs=1e-15)
        assert got["F"] == pytest.approx(f, abs=1e-15)
        assert got["frames"] == TOOLKIT_VIDEOS[video][2] - 2  # first and last not scored
    assert r["mean"]["objects"] == 5
    for k, v in TOOLKIT_MEAN.items():
        assert r["mean"][k] == pytest.approx(v, abs=1e-15)


def test_scoring_a_folder_imports_no_torch(toolkit, tmp_path):
    """Through the real console entry point: no torch, no sam2, no model."""
    data, pred = toolkit
    code = (
        "import sys; from sam2long_stream.cli import main; "
        f"rc = main(['eval', '--data', {str(data)!r}, '--set', 'val', '--pred', {str(pred)!r}, "
        f"'--out', {str(tmp_path / 'o')!r}]); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sam2', 'hydra')"
        " or m == 'sam2long_stream.tracker.engine'); "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout
    assert "note: --pred" not in p.stdout  # no model option given
    assert "pred J&F" in p.stdout and "63.8" in p.stdout  # the table, toolkit J&F in %
    assert "random weights" not in p.stdout
    assert (tmp_path / "o" / "results-pred.json").is_file()
    assert (tmp_path / "o" / "results-pred-j.png").is_file()


def test_rescoring_written_predictions_gives_the_same_numbers(tmp_path):
    """What eval writes under OUT/P<p>/ scores, through --pred, exactly as it did live."""
    data = write_davis(tmp_path / "DAVIS")
    out = tmp_path / "out"
    live = runner.run_eval(
        data, out=out, pathways=[1], predictor=davis_oracle(1, 2, lag=True), log=None
    )
    again = runner.score_folder(data, out / "P1", log=None)
    assert again["results"]["pred"]["mean"] == live["results"]["1"]["mean"]
    assert again["results"]["pred"]["videos"] == live["results"]["1"]["videos"]
    assert again["per_frame"]["pred"] == live["per_frame"]["1"]
    assert 0.2 < live["results"]["1"]["mean"]["J&F"] < 0.95


def write_sav(root: Path, frames: int = 16) -> Path:
    """SA-V layout: 24 fps frames, per-object binary PNGs every 4th frame, sav_val.txt."""
    for t in range(frames):
        jpg = root / "JPEGImages_24fps" / "sav_000001" / f"{t:05d}.jpg"
        jpg.parent.mkdir(parents=True, exist_ok=True)
        img = np.full((48, 64, 3), 80, np.uint8)
        img[sav_masks(t)[0]] = (200, 90, 60)
        Image.fromarray(img).save(jpg)
        if t % 4 == 0:
            for o, m in sav_masks(t).items():
                png = root / "Annotations_6fps" / "sav_000001" / f"{o:03d}" / f"{t:05d}.png"
                png.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(m.astype(np.uint8) * 255).save(png)
    (root / "sav_val.txt").write_text("sav_000001\n")
    return root


def test_sav_rescoring_and_set(tmp_path):
    data = write_sav(tmp_path / "sav_val")

    def make(num_pathways, video):
        return Oracle([sav_masks(t) for t in range(len(video.frames))], dx=3, lag=True)

    out = tmp_path / "out"
    live = runner.run_eval(data, fmt="sav", out=out, pathways=[3], predictor=make, log=None)
    report = tmp_path / "r.json"
    argv = ["--data", str(data), "--format", "sav", "--set", "sav_val"]
    assert cli.main([*argv, "--pred", str(out / "P3"), "--json", str(report)]) == 0
    again = json.loads(report.read_text())["results"]["pred"]
    assert again["mean"] == live["results"]["3"]["mean"]
    assert again["videos"] == live["results"]["3"]["videos"]
    assert 0.3 < again["mean"]["J&F"] < 1  # the 3 px shift is felt


def test_set_and_video_list_choose_the_videos(tmp_path):
    data = write_davis(tmp_path / "DAVIS")
    sets = data / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("shapes\n")
    (sets / "train.txt").write_text("late\n")
    lst = tmp_path / "list.txt"
    lst.write_text("# my list\n\n  late \nshapes\nlate\n")  # stripped, comment, blank, repeat
    for args, expect in (
        (["--set", "val"], ["shapes"]),
        (["--set", "train"], ["late"]),
        (["--video-list", str(lst)], ["late", "shapes"]),
        ([], ["late", "shapes"]),
    ):
        r = runner.run_eval(
            data,
            video_set=args[1] if args[:1] == ["--set"] else None,
            video_list=args[1] if args[:1] == ["--video-list"] else None,
            out=None,
            pathways=[1],
            predictor=davis_oracle(),
            log=None,
        )
        assert r["videos"] == expect
        assert sorted(r["results"]["1"]["videos"]) == sorted(expect)


# -- bad input: one line on stderr, exit 2, the file named, no traceback --------------------
def _rewrite(path: Path, labels: np.ndarray) -> None:
    _palette_png(path, labels)


def _bad_pred_cases(pred: Path) -> dict[str, tuple]:
    """name -> (break the prediction folder, text the error must contain)."""

    def missing_video():
        for p in (pred / "swap").iterdir():
            p.unlink()
        (pred / "swap").rmdir()

    def missing_frame():
        (pred / "orbit" / "00003.png").unlink()

    def wrong_size():
        _rewrite(pred / "swap" / "00002.png", np.zeros((40, 50), np.uint8))

    def unknown_id():
        labels = np.asarray(Image.open(pred / "orbit" / "00004.png")).copy()
        labels[0, 0] = 7
        _rewrite(pred / "orbit" / "00004.png", labels)

    def rgb():
        Image.new("RGB", (96, 64)).save(pred / "swap" / "00001.png")

    def not_a_png():
        (pred / "swap" / "00001.png").write_bytes(b"not an image")

    return {
        "missing video": (missing_video, str(pred / "swap"), "no predictions for video swap"),
        "missing frame": (missing_frame, str(pred / "orbit" / "00003.png"), "missing"),
        "wrong size": (wrong_size, str(pred / "swap" / "00002.png"), "50x40"),
        "unknown id": (unknown_id, str(pred / "orbit" / "00004.png"), "unknown object id(s) 7"),
        "rgb": (rgb, str(pred / "swap" / "00001.png"), "RGB"),
        "not a png": (not_a_png, str(pred / "swap" / "00001.png"), "cannot read"),
    }


@pytest.mark.parametrize(
    "case", ["missing video", "missing frame", "wrong size", "unknown id", "rgb", "not a png"]
)
def test_bad_prediction_folder_via_the_cli(toolkit, tmp_path, case):
    data, pred = toolkit
    breaker, where, what = _bad_pred_cases(pred)[case]
    breaker()
    p = run_cli("--data", str(data), "--set", "val", "--pred", str(pred), "--out", str(tmp_path))
    assert p.returncode == 2
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("sam2long-stream eval: error: ")
    assert where in err and what in err, err
    assert not (tmp_path / "results-pred.json").exists()


def test_bad_sav_predictions(tmp_path, capsys):
    data = write_sav(tmp_path / "sav_val")
    pred = tmp_path / "pred"
    for o in (0, 1):
        for t in (0, 4, 8, 12):
            png = pred / "sav_000001" / f"{o:03d}" / f"{t:05d}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(sav_masks(t)[o].astype(np.uint8) * 255).save(png)
    argv = ["--data", str(data), "--format", "sav", "--pred", str(pred), "--out", str(tmp_path)]

    def fails(where: Path | str, what: str) -> None:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(where) in err and what in err, err

    # the intact folder scores 1; model options are named as not applying
    assert cli.main([*argv, "--checkpoint", "x.pt", "--mode=online"]) == 0
    text = capsys.readouterr().out
    assert "100.0" in text
    assert "note: --pred scores existing PNGs, so --checkpoint, --mode do(es) not apply" in text
    (pred / "sav_000001" / "007").mkdir()
    fails(pred / "sav_000001" / "007", "unknown object '007'")
    (pred / "sav_000001" / "007").rmdir()
    two = pred / "sav_000001" / "001" / "00008.png"
    Image.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64) % 3).save(two)
    fails(two, "more than one object")
    two.unlink()
    fails(two, "missing")
    davis_like = tmp_path / "davis_like"
    (davis_like / "sav_000001").mkdir(parents=True)
    Image.new("P", (64, 48)).save(davis_like / "sav_000001" / "00004.png")
    argv[argv.index(str(pred))] = str(davis_like)
    fails(davis_like / "sav_000001", "DAVIS layout")


def test_an_out_folder_passed_as_pred_gets_a_hint(toolkit, tmp_path, capsys):
    data, _ = toolkit
    out = tmp_path / "eval-out"
    (out / "P1").mkdir(parents=True)
    (out / "P3").mkdir()
    assert cli.main(["--data", str(data), "--set", "val", "--pred", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--pred {out / 'P3'}" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "test-dev"], "ImageSets/2017/test-dev.txt not found; found: train, val"),
        (["--video-list", "{tmp}/no.txt"], "video list not found: {tmp}/no.txt"),
        (["--video-list", "{list}"], "{list}: unknown video(s) bear (not in the data)"),
        (["--video-list", "{empty}"], "{empty}: the video list is empty"),
        (["--set", "val", "--videos", "orbit"], "not allowed with argument"),
        (["--pred", "{tmp}/nowhere"], "prediction folder not found: {tmp}/nowhere"),
        (["--mode", "sometimes"], "invalid choice"),
    ],
)
def test_split_and_list_errors(toolkit, tmp_path, capsys, args, message):
    data, _ = toolkit
    lst, empty = tmp_path / "list.txt", tmp_path / "empty.txt"
    lst.write_text("orbit\nbear\n")
    empty.write_text("\n# nothing\n")
    fill = {"tmp": tmp_path, "list": lst, "empty": empty}
    argv = ["--data", str(data), *(a.format(**fill) for a in args), "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message.format(**fill) in err, err


def test_missing_imagesets_folder(tmp_path, capsys):
    data = write_davis(tmp_path / "DAVIS")
    assert cli.main(["--data", str(data), "--set", "val"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        f"no list for set 'val': {data / 'ImageSets' / '2017' / 'val.txt'} not found"
    )


# -- help --------------------------------------------------------------------------------
def test_help_explains_layouts_rules_and_modes():
    p = run_cli("--help")
    assert p.returncode == 0 and p.stderr == ""
    text = p.stdout
    lines = [line.strip() for line in text.splitlines()]
    # the layouts survive as written (RawDescriptionHelpFormatter), one path per line
    for line in (
        "ROOT/JPEGImages/480p/<video>/<frame>.jpg     frames (480p/ may be left out)",
        "ROOT/ImageSets/2017/<set>.txt                video names, one per line (--set)",
        "ROOT/Annotations_6fps/<video>/<obj>/<frame>.png",
        "ROOT/<set>.txt                               e.g. sav_val.txt (--set sav_val)",
    ):
        assert line in lines, line
    for phrase in (
        '"sam2" is SAM 2 itself (the tree off',
        "--pathways sam2,1,3 (default)",
        "frame and the video's last annotated frame are not scored",
        "overall mean is over all",
        "--mode offline (default",
        "--mode online",
        "sam2long-stream eval --data DAVIS --set val --pred eval-out/P3",
        "--pred DIR",
        "--video-list FILE",
        "--set NAME",
    ):
        assert phrase in text, phrase


# -- the picture and the terminal summary ----------------------------------------------------
def _colour_pixels(img: Image.Image, colour: tuple[int, int, int], box: tuple) -> int:
    a = np.asarray(img.crop(box).convert("RGB")).reshape(-1, 3)
    return int(np.count_nonzero((a == colour).all(axis=1)))


def test_plot_and_table_for_p1_p3_online_and_offline(tmp_path, capsys):
    data = write_davis(tmp_path / "DAVIS")
    report = runner.run_eval(
        data, out=None, pathways=[1, 3], mode="both", predictor=davis_oracle(0, 2), log=None
    )
    keys = ["1-offline", "3-offline", "1-online", "3-online"]
    assert list(report["results"]) == keys == list(report["per_frame"])
    shapes = report["per_frame"]["3-online"]["shapes"]
    assert shapes["index"] == [1, 2, 3, 4] and shapes["frame"] == [
        "00001",
        "00002",
        "00003",
        "00004",
    ]
    # frame 3: object 1 is hidden (empty vs empty: 1), the 16 px square 2 is 2 px off
    assert shapes["J"][2] == pytest.approx((1 + 16 * 14 / (16 * 18)) / 2, abs=1e-15)
    table = eval_report.format_table(report)
    assert table.splitlines()[0].split()[:4] == ["video", "P=1", "offline", "J"]
    assert "P=3 online J&F" in table and "mean (4 objects)" in table
    png = eval_report.plot_j_per_frame(report, tmp_path / "r-j.png")
    img = Image.open(png)
    header = img.height - 2 * 250  # two videos stacked in one column, under the legend
    assert img.width == 560 and 58 <= header <= 120
    for i in range(len(keys)):  # every run has its colour in the legend and in both panels
        colour = eval_report._COLOURS[i]
        assert _colour_pixels(img, colour, (0, 30, 560, header)) > 20
        assert _colour_pixels(img, colour, (0, header, 560, header + 250)) > 20
        assert _colour_pixels(img, colour, (0, header + 250, 560, header + 500)) > 20


def test_real_tracker_both_modes(tmp_path, capsys):
    """Random weights (a sam2 model without a checkpoint) at 256 px: offline and online
    share one model; both runs, their PNG folders, the report and its picture."""
    data = write_davis(tmp_path / "DAVIS")
    out = tmp_path / "out"
    argv = ["--data", str(data), "--videos", "late", "--max-frames", "3", "--mode", "both"]
    argv += ["--model", "sam2.1_hiera_t"]
    assert cli.main([*argv, "--pathways", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "P=1 offline J&F" in text and "P=1 online J&F" in text and "random weights" in text
    report = json.loads((out / "results.json").read_text())
    assert list(report["results"]) == ["1-offline", "1-online"]
    for key, r in report["results"].items():
        assert len(list((out / f"P{key}" / "late").glob("*.png"))) == 3
        assert r["mean"]["objects"] == 1  # object 2 of "late" enters on frame 2, the last
        assert report["per_frame"][key]["late"]["index"] == [1]
        assert 0 <= r["mean"]["J&F"] <= 1
    assert Image.open(out / "results-j.png").width == 560


# -- an SA-V dataset and predictions sam2's SA-V evaluator has scored ------------------------
def _sav_gt(video: str, t: int) -> dict[str, np.ndarray]:
    """Per-object masks (folder name -> bool) on frame t; every object is in frame 0, as
    in SA-V val. "walk": a person and their overlapping bag, the bag hidden on frame 12.
    "cars": two boxes crossing, one thin pole."""
    h, w = 72, 96
    if video == "walk":
        person = ellipse(h, w, 36, 20 + 2 * t, 22, 9)
        bag = rect(h, w, 38, 24 + 2 * t, 10, 9) if t != 12 else np.zeros((h, w), bool)
        return {"000": person, "001": bag}
    return {
        "000": rect(h, w, 10, 5 + 3 * t, 14, 20),
        "001": rect(h, w, 40, 80 - 3 * t, 16, 12),
        "002": rect(h, w, 5, 60, 60, 3),
    }


def _sav_pred(video: str, t: int) -> dict[str, np.ndarray]:
    gt = _sav_gt(video, t)
    h, w = 72, 96
    if video == "walk":
        bag = shift(gt["001"], 1, 2)
        if t == 12:
            bag = rect(h, w, 30, 40, 6, 6)  # false positive while the bag is hidden
        return {"000": shift(gt["000"], 0, -2), "001": bag}
    car = gt["001"] if t != 8 else np.zeros((h, w), bool)  # missed on frame 8
    pole = gt["002"].copy()
    pole[:, 1:] |= gt["002"][:, :-1]  # one pixel too wide
    return {"000": shift(gt["000"], 2, 3), "001": car, "002": pole}


SAV_TOOLKIT_FRAMES = 21  # annotated 0, 4, .., 20; scored 4, 8, 12, 16


def write_sav_toolkit_dataset(root: Path) -> tuple[Path, Path]:
    data, pred = root / "sav_val", root / "pred"
    for video in ("walk", "cars"):
        for t in range(SAV_TOOLKIT_FRAMES):
            jpg = data / "JPEGImages_24fps" / video / f"{t:05d}.jpg"
            jpg.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (96, 72), (100, 110, 120)).save(jpg)
            if t % 4:
                continue
            for kind, masks in (("gt", _sav_gt(video, t)), ("pred", _sav_pred(video, t))):
                top = data / "Annotations_6fps" if kind == "gt" else pred
                for obj, m in masks.items():
                    png = top / video / obj / f"{t:05d}.png"
                    png.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(m.astype(np.uint8) * 255).save(png)
    (data / "sav_val.txt").write_text("walk\ncars\n")
    return data, pred


# sam2's sav_dataset/sav_evaluator.py (benchmark(), facebookresearch/sam2 at 2b90b9f, with
# opencv and scikit-image) on write_sav_toolkit_dataset: per object (J, F) and the global
# J, F, J&F. It reports percentages; these are its values / 100, hence the 1e-15 tolerance.
SAV_TOOLKIT_SCORES = {
    ("walk", "0"): (0.7496443812233285, 0.34375),
    ("walk", "1"): (0.40384615384615385, 0.375),
    ("cars", "0"): (0.5730337078651685, 0.08823529411764706),
    ("cars", "1"): (0.75, 0.75),
    ("cars", "2"): (0.75, 1.0),
}
SAV_TOOLKIT_MEAN = {"J": 0.6453048485869302, "F": 0.5113970588235294, "J&F": 0.5783509537052298}


def test_sav_pred_folder_matches_sam2s_sav_evaluator(tmp_path):
    data, pred = write_sav_toolkit_dataset(tmp_path)
    (pred / "results.csv").write_text("left by sav_evaluator.py\n")  # it writes one there
    report_path = tmp_path / "r.json"
    argv = ["--data", str(data), "--format", "sav", "--video-list", str(data / "sav_val.txt")]
    assert cli.main([*argv, "--pred", str(pred), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["videos"] == ["walk", "cars"]  # in the list's order
    r = report["results"]["pred"]
    for (video, obj), (j, f) in SAV_TOOLKIT_SCORES.items():
        got = r["videos"][video]["objects"][obj]
        assert got["J"] == pytest.approx(j, abs=1e-15)
        assert got["F"] == pytest.approx(f, abs=1e-15)
        assert got["frames"] == 4  # annotated 0..20 every 4th; 0 and 20 not scored
    assert r["mean"]["objects"] == 5
    for k, v in SAV_TOOLKIT_MEAN.items():
        assert r["mean"][k] == pytest.approx(v, abs=1e-15)


def test_sam2_run_is_the_tree_off_beside_the_pathway_counts(tmp_path, capsys):
    """--pathways sam2,1: SAM 2 itself (TREE_OFF, what tests/test_sam2_equivalence.py
    proves equal to sam2) runs beside P=1 (one pathway, memory selection on), each with
    its key, label and PNG folder; the default runs sam2, 1 and 3."""
    from sam2long_stream.tracker.config import TREE_OFF

    data = write_davis(tmp_path / "DAVIS")
    out = tmp_path / "out"
    argv = ["--data", str(data), "--videos", "late", "--max-frames", "3", "--out", str(out)]
    assert cli.main([*argv, "--pathways", "sam2,1"]) == 0
    text = capsys.readouterr().out
    assert "SAM 2 J&F" in text and "P=1 J&F" in text and "(sam2/, P1/)" in text
    report = json.loads((out / "results.json").read_text())
    assert list(report["results"]) == ["sam2", "1"]
    assert report["config"]["pathways"] == ["sam2", 1]
    for folder in ("sam2", "P1"):
        assert len(list((out / folder / "late").glob("*.png"))) == 3
    video = load_video(data, "late", "davis", 3)
    make = runner.tracker_factory(
        model="sam2long_mini", checkpoint=None, image_size=64, device="cpu", mode="offline"
    )
    tree_off, one = make("sam2", video).config, make(1, video).config
    assert {k: getattr(tree_off, k) for k in TREE_OFF} == TREE_OFF
    assert one.num_pathways == 1 and one.memory_selection and one.attention_modulation
    assert cli.parse_args(["--data", str(data)], "eval").pathways == ["sam2", 1, 3]


def test_sam2longs_thresholds_reach_every_tracker_and_the_report(tmp_path, capsys):
    """--iou-threshold and --uncertainty (SAM2Long's memory and pool thresholds) reach
    each pathway run's TrackerConfig and the report's config; a value out of range is
    one line and exit status 2 before any model work."""
    data = write_davis(tmp_path / "DAVIS")
    out = tmp_path / "out"
    argv = ["--data", str(data), "--videos", "late", "--max-frames", "3", "--out", str(out)]
    thresholds = ["--iou-threshold", "0.3", "--uncertainty", "1.5"]
    assert cli.main([*argv, "--pathways", "1", *thresholds]) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    assert (config["iou_threshold"], config["uncertainty"]) == (0.3, 1.5)
    video = load_video(data, "late", "davis", 3)
    make = runner.tracker_factory(
        model="sam2long_mini", checkpoint=None, image_size=64, device="cpu", mode="offline",
        iou_threshold=0.3, uncertainty=1.5,
    )  # fmt: skip
    tree = make(3, video).config
    assert (tree.iou_threshold, tree.uncertainty) == (0.3, 1.5)
    default = runner.tracker_factory(
        model="sam2long_mini", checkpoint=None, image_size=64, device="cpu", mode="offline"
    )(3, video).config
    assert (default.iou_threshold, default.uncertainty) == (0.1, 2.0)
    capsys.readouterr()
    assert cli.main([*argv, "--iou-threshold", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "iou_threshold must be in [0, 1), got 1.5" in err and err.count("\n") == 1
