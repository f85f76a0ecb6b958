"""`sam2long-stream train` on sam2's own training code (SAM2Train, its loss, its prompt
sampling): a random-init model at a small size learns (the loss falls), `run` and
`--init` load what it writes, a run is a function of its seed, `--resume` continues as
if nothing had stopped, and bad input ends with one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sam2long_stream.models import bundled_checkpoint
from sam2long_stream.scenes.davis import write_davis
from sam2long_stream.train.loop import Trainer, TrainError, TrainOptions
from sam2long_stream.train.model import build_train_model

PROG = [sys.executable, "-m", "sam2long_stream.cli"]
_BUNDLED = bundled_checkpoint()
SMALL = ["--model", "sam2long_mini", "--image-size", "64", "--frames", "3", "--batch-size", "1",
         "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("davis")
    write_davis(root, [11, 12, 13], width=96, height=72, num_frames=12)
    return root


def train(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PROG, "train", *SMALL, *args], capture_output=True, text=True, timeout=timeout
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_loss_falls_and_run_and_init_load_the_result(davis: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = train("--data", str(davis), "--out", str(out), "--steps", "40", "--warmup", "2",
                 "--save-every", "20")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    losses = [v for _, v in state["history"]["loss"]]
    assert state["step"] == 40 and len(losses) == 4
    assert np.mean(losses[-2:]) < 0.5 * losses[0], losses
    assert (out / "curves.png").stat().st_size > 1000

    # the official format: run --checkpoint tracks with it, train --init starts from it
    model_pt = out / "model.pt"
    assert set(torch.load(model_pt, weights_only=True)) == {"model"}
    run = subprocess.run(
        [*PROG, "run", "synthetic://moving-shapes?width=96&height=72", "--model",
         "sam2long_mini", "--checkpoint", str(model_pt), "--image-size", "64",
         "--max-frames", "3", "--box", "10,10,40,40", "--pub", "tcp://127.0.0.1:*",
         "--control", "off"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "random weights" not in run.stderr
    tuned = train("--data", "synthetic:distractor", "--init", str(model_pt),
                  "--out", str(tmp_path / "ft"), "--steps", "2", "--warmup", "1",
                  "--prompting", "tracking", "--half-weights")  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    halved = weights(tmp_path / "ft" / "model.pt")  # as the bundled model ships
    assert {v.dtype for v in halved.values() if v.is_floating_point()} == {torch.float16}


def test_seeded_and_resumed_runs_equal_an_uninterrupted_one(tmp_path: Path) -> None:
    common = ["--steps", "6", "--warmup", "2", "--seed", "3", "--save-every", "3"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert train(*common, "--out", str(a)).returncode == 0
    first = train("--steps", "3", *common[2:], "--out", str(b))
    assert first.returncode == 0, first.stderr
    resumed = train(*common, "--out", str(b), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout + resumed.stderr
    wa, wb = weights(a / "model.pt"), weights(b / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    other = train(*common[:-4], "--seed", "4", "--save-every", "3", "--out", str(tmp_path / "c"))
    assert other.returncode == 0
    wc = weights(tmp_path / "c" / "model.pt")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def _prompted_frames(prompting: str, draws: int = 60) -> list[tuple[list[int], list[int]]]:
    """(initial conditioning frames, frames given correction clicks) of `draws` clips as
    SAM2Train samples them under `prompting`."""
    model = build_train_model("sam2long_mini", 64, seed=0, prompting=prompting).train()
    clip = SimpleNamespace(num_frames=6, masks=[torch.ones(1, 64, 64, dtype=torch.bool)] * 6)
    seen = []
    for _ in range(draws):
        out = model.prepare_prompt_inputs({}, clip)
        seen.append((list(out["init_cond_frames"]), list(out["frames_to_add_correction_pt"])))
    return seen


def test_tracking_prompting_prompts_the_first_frame_only() -> None:
    """--prompting tracking: every later frame comes from memory, as at inference;
    sam2's recipe prompts or corrects a second frame in some clips."""
    tracking = _prompted_frames("tracking")
    assert all(init == [0] and corrected in ([], [0]) for init, corrected in tracking)
    recipe = _prompted_frames("sam2")
    assert any(len(init) > 1 or len(corrected) > 1 for init, corrected in recipe)


def _one_error_line(proc: subprocess.CompletedProcess[str], expect: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "step/s" not in ln]
    errors = [ln for ln in lines if ln.startswith("sam2long-stream train: error: ")]
    assert len(errors) == 1 and expect in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_input_gets_one_line(davis: Path, tmp_path: Path) -> None:
    missing = train("--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o1"))
    assert missing.returncode == 1
    _one_error_line(missing, str(tmp_path / "nope"))

    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(davis), str(broken)], check=True)
    frame = sorted((broken / "JPEGImages" / "480p").glob("*/00003.jpg"))[0]
    frame.write_text("not a picture")
    bad = train("--data", str(broken), "--out", str(tmp_path / "o2"), "--steps", "30")
    assert bad.returncode == 1
    _one_error_line(bad, "00003.jpg")

    afile = tmp_path / "a-file"
    afile.write_text("")
    unwritable = train("--out", str(afile / "sub"), "--steps", "1")
    assert unwritable.returncode == 1
    _one_error_line(unwritable, "not writable")

    usage = train("--frames", "0")
    assert usage.returncode == 2
    _one_error_line(usage, "--frames must be >= 1")
    prompting = train("--prompting", "every-frame")
    assert prompting.returncode == 2
    _one_error_line(prompting, "--prompting must be sam2 or tracking")

    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    unreadable = train("--init", str(junk), "--out", str(tmp_path / "o3"))
    assert unreadable.returncode == 1
    _one_error_line(unreadable, f"unreadable checkpoint {junk}")
    other = train("--init", str(_BUNDLED), "--model", "sam2.1_hiera_t", "--out", str(tmp_path))
    assert other.returncode == 1  # the bundled weights are another network's
    _one_error_line(other, "does not fit model sam2.1_hiera_t: size mismatch")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    opts = TrainOptions(
        out=str(tmp_path), image_size=64, frames=2, batch_size=1, steps=20, warmup=1,
        save_every=4,
    )  # fmt: skip
    trainer = Trainer(opts, log=lambda _: None)
    real = trainer.loss_fn

    def poisoned(outputs, targets):
        losses = real(outputs, targets)
        if trainer.step == 6:
            losses["core_loss"] = losses["core_loss"] * float("nan")
        return losses

    trainer.loss_fn = poisoned
    with pytest.raises(TrainError, match=r"loss is nan at step 6.*last good checkpoint"):
        trainer.run()
    state = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 4
    good = weights(tmp_path / "model.pt")
    assert all(torch.isfinite(v).all() for v in good.values() if v.is_floating_point())


def test_ctrl_c_saves_and_exits(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*PROG, "train", *SMALL, "--out", str(out), "--steps", "100000", "--save-every", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    seen = ""
    assert proc.stderr is not None
    while "10/100000" not in seen and time.monotonic() < deadline:  # ten steps done
        seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert state["step"] >= 10
    assert (out / "model.pt").is_file()


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (["--seed", "-1"], "--seed must be in 0.."),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--image-steps", "-1"], "--image-steps must be >= 0"),
        (["--grad-clip", "nan"], "--grad-clip > 0"),
        (["--weight-decay", "-0.1"], "--weight-decay must be in [0, 1)"),
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
        (["--init", "no-such.pt"], "--init: checkpoint not found: no-such.pt"),
        (["--data", "synthetic:twins"], "--data synthetic:twins: unknown event kind 'twins'"),
        (["--loss-weights", "clas=4"], "--loss-weights: expected name=value with a name from"),
        (["--loss-weights", "class=-1"], "--loss-weights: class: a weight must be finite"),
        (["--loss-weights", "iou=x"], "--loss-weights: iou: not a number: 'x'"),
    ],
)
def test_bad_numbers_are_usage_errors(flags: list[str], expect: str, capsys) -> None:
    """Values torch or numpy would reject deep inside (a negative seed) or silently
    misuse (0 threads) are refused before anything loads: one line, exit status 2."""
    from sam2long_stream.train.cli import main

    assert main(["--out", "unused", *flags]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1


def test_loss_weights_reach_sam2s_loss() -> None:
    """`--loss-weights class=4` changes that term only, over sam2's recipe, and sam2's
    loss sums the terms with those weights (checked on one real clip of SAM2Train)."""
    from sam2long_stream.train.model import LOSS_WEIGHTS, build_loss, parse_loss_weights

    assert parse_loss_weights("") == LOSS_WEIGHTS
    weights = parse_loss_weights(" class=4 , mask=10")
    assert weights == {**LOSS_WEIGHTS, "class": 4.0, "mask": 10.0}
    opts = TrainOptions(out="unused", image_size=64, frames=2, batch_size=1, seed=3)
    trainer = Trainer(opts, log=lambda *_: None)
    batch = trainer.data.batch(1, 2)
    with torch.no_grad():
        outputs = trainer.model(batch)  # once: SAM2Train samples its prompts at random
        terms = build_loss()(outputs, batch.masks)
        weighted = build_loss(weights)(outputs, batch.masks)
    assert float(terms["loss_class"]) > 0
    expected = sum(float(terms[f"loss_{name}"]) * w for name, w in weights.items())
    assert float(weighted["core_loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(weighted["core_loss"]) != pytest.approx(float(terms["core_loss"]), rel=1e-3)


def test_image_size_defaults_to_the_models_own() -> None:
    """A project model trains and runs at the size its config declares; sam2's models at
    1024 from a checkpoint and 256 from random init."""
    from omegaconf import OmegaConf

    from sam2long_stream.models import OWN_MODELS

    for name, (config, _, size) in OWN_MODELS.items():
        assert OmegaConf.load(config).model.image_size == size, name
        assert TrainOptions(model=name).image_size == size
    assert TrainOptions(model="sam2.1_hiera_t").image_size == 256
    assert TrainOptions(model="sam2.1_hiera_t", init="tiny.pt").image_size == 1024
    assert TrainOptions(image_size=64).image_size == 64


@pytest.mark.parametrize("frames", [1, 24, 40])
def test_synthetic_clips_of_any_length(frames: int) -> None:
    """A clip longer than the default scene (48 frames at stride 2) gets a longer scene
    instead of numpy's 'high <= 0'."""
    from sam2long_stream.train.data import SyntheticClips

    clips = SyntheticClips(np.random.default_rng(3))
    for _ in range(4):
        clip = clips.clip(frames, max_objects=2)
        assert len(clip.frames) == frames
        assert all(len(masks) == frames for masks in clip.masks.values())


def test_synthetic_sources_can_ask_for_event_kinds(monkeypatch) -> None:
    """``--data synthetic:KIND[+KIND]`` makes every scene's first target meet those events
    (more of a hard case); plain ``synthetic`` keeps the held-out sets' random mix."""
    from sam2long_stream.scenes import make_scene
    from sam2long_stream.train import data

    made = []

    def spy(*args, **kwargs):
        scene = make_scene(*args, **kwargs)
        made.append(scene)
        return scene

    monkeypatch.setattr(data, "make_scene", spy)
    for source, kinds in [
        ("synthetic:distractor", {"distractor"}),
        ("synthetic:occlusion+exit", {"occlusion", "exit"}),
    ]:
        events = data.synthetic_events(source)
        assert events is not None and set(events) == kinds
        clips = data.SyntheticClips(np.random.default_rng(5), events=events)
        made.clear()
        for _ in range(3):
            clips.clip(8, max_objects=2)
        for scene in made:
            met = {e.kind for e in scene.events if e.target == 1}
            assert met <= kinds and ("distractor" not in kinds or met == kinds), (source, met)
    assert data.synthetic_events("synthetic") == () and data.synthetic_events("/data/davis") is None


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
import torch
from sam2long_stream.train.checkpoint import CheckpointError, save_atomic

path = Path(sys.argv[1])
save_atomic({"w": torch.zeros(10)}, path)  # a good, small one first
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    save_atomic({"w": torch.zeros(1_000_000)}, path)
except CheckpointError as e:
    print(e)
"""


def test_a_full_disk_or_a_vanished_folder_is_a_clear_error(tmp_path: Path) -> None:
    """torch's zip writer reports a failed write as a RuntimeError, not an OSError: it
    must still end as one CheckpointError line, and the last good file must survive."""
    from sam2long_stream.train.checkpoint import CheckpointError, save_atomic

    path = tmp_path / "last.pt"
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert f"could not write {path}: the write failed with" in proc.stdout
    assert "(the previous one is kept)" in proc.stdout
    assert torch.load(path, weights_only=True)["w"].shape == (10,)
    assert not (tmp_path / ".last.pt.tmp").exists()

    gone = tmp_path / "gone"
    with pytest.raises(CheckpointError, match=r"gone/last\.pt: the folder is gone"):
        save_atomic({"w": torch.zeros(1)}, gone / "last.pt")


def test_averaged_weights_are_the_mean_and_mismatches_are_one_line(tmp_path: Path) -> None:
    """tools/average_weights.py: floats are averaged (then float16 with --half-weights),
    integer buffers kept; another architecture or a broken file is one line, exit 2."""
    a = {"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 6.0]), "steps": torch.tensor([3])}
    for name, sd in (("a", a), ("b", b), ("c", {"v": torch.zeros(2)})):
        torch.save({"model": sd}, tmp_path / f"{name}.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    tool = [sys.executable, str(Path(__file__).parents[1] / "tools" / "average_weights.py")]

    def average(*names: str) -> subprocess.CompletedProcess[str]:
        paths = [str(tmp_path / n) for n in names]
        return subprocess.run(
            [*tool, *paths, "--out", str(tmp_path / "soup.pt"), "--half-weights"],
            capture_output=True, text=True,
        )  # fmt: skip

    done = average("a.pt", "b.pt")
    assert done.returncode == 0, done.stderr
    soup = weights(tmp_path / "soup.pt")
    assert soup["w"].dtype == torch.float16 and soup["w"].tolist() == [2.0, 4.0]
    assert soup["steps"].tolist() == [3]
    for names, expect in (
        (("a.pt", "c.pt"), "not the architecture"),
        (("a.pt", "broken.pt"), "unreadable checkpoint"),
        (("a.pt", "gone.pt"), "checkpoint not found"),
    ):
        proc = average(*names)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
