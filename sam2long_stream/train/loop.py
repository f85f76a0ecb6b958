"""The training loop: sam2's SAM2Train and loss, AdamW with warm-up and cosine decay,
gradient clipping, bf16 autocast on CUDA, a progress bar, periodic checkpoints that
`--resume` continues from, periodic validation J&F with the project's own evaluation,
and a PNG of the curves.

A run is a pure function of its options and seed: resuming restores the step, the
optimizer, and every random state, so an interrupted run continues as if it had not
stopped (up to the work since its last save).
"""

from __future__ import annotations

import math
import signal
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2long_stream.models import default_image_size
from sam2long_stream.tracker.engine import resolve_device
from sam2long_stream.train import checkpoint
from sam2long_stream.train.data import ClipMix, FolderClips, SyntheticClips, synthetic_events
from sam2long_stream.train.model import (
    LOSS_WEIGHTS_TEXT,
    build_loss,
    build_train_model,
    parse_loss_weights,
)


class TrainError(RuntimeError):
    """A run that cannot go on; the message says why and what was kept."""


@dataclass
class TrainOptions:
    out: str = "train-out"
    model: str = "sam2long_mini"
    image_size: int | None = None  # None: the model's own (models.default_image_size)
    init: str | None = None  # official-format checkpoint to start from (fine-tuning)
    data: list[str] = field(default_factory=lambda: ["synthetic"])
    data_format: str = "davis"
    steps: int = 10_000
    image_steps: int = 0  # first steps on single frames (SAM's image task) before clips
    frames: int = 8  # frames per training clip
    batch_size: int = 2  # clips per step
    image_batch_size: int = 8  # images per step while image_steps last
    max_objects: int = 3
    prompting: str = "sam2"  # sam2 (Meta's fine-tuning recipe) | tracking (first frame only)
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    loss_weights: str = LOSS_WEIGHTS_TEXT  # name=value over sam2's recipe (model.LOSS_WEIGHTS)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    save_every: int = 250
    val: str | None = None  # a held-out DAVIS-format folder
    val_every: int = 1000
    val_videos: int = 8
    val_pathways: tuple[int, ...] = (1,)
    resume: bool = False
    half_weights: bool = False  # model.pt in float16, as the bundled model ships

    def __post_init__(self) -> None:
        if self.image_size is None:
            self.image_size = default_image_size(self.model, self.init is not None)


@dataclass
class History:
    """Loss per logged step and validation J&F per validation, for the curves."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    val: list[tuple[int, dict[str, float]]] = field(default_factory=list)


def _lr_at(step: int, opts: TrainOptions) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    t = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms and embeddings (sam2's recipe: bias and LayerNorm)."""
    decay: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (plain if p.ndim <= 1 or "pos_embed" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


class Trainer:
    def __init__(self, opts: TrainOptions, log=print) -> None:
        self.opts, self.log = opts, log
        self.out = Path(opts.out)
        checkpoint.check_writable(self.out)
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.device = resolve_device(opts.device)
        torch.manual_seed(opts.seed)
        self.rng = np.random.default_rng(opts.seed)
        self.model = build_train_model(
            opts.model, opts.image_size, opts.seed, opts.init, opts.prompting
        )
        self.model.to(self.device).train()
        self.loss_fn = build_loss(parse_loss_weights(opts.loss_weights))
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, opts.weight_decay), lr=opts.lr)
        self.data = ClipMix(self._sources(), opts.image_size, opts.max_objects, self.rng)
        self.step = 0
        self.history = History()
        if opts.resume:
            self._resume()

    def _sources(self) -> list[SyntheticClips | FolderClips]:
        sources: list[SyntheticClips | FolderClips] = []
        for d in self.opts.data:
            events = synthetic_events(d)
            if events is None:
                sources.append(FolderClips(d, self.opts.data_format, self.rng))
            else:
                sources.append(SyntheticClips(self.rng, events=events))
        return sources

    # -- state ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        model_rng: Any = self.model.rng  # SAM2Train's numpy generator (prompt sampling)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "options": asdict(self.opts),
            "history": asdict(self.history),
            "rng": {
                "data": self.rng.bit_generator.state,
                "model": model_rng.bit_generator.state,
                "torch": torch.get_rng_state(),
            },
        }

    def _resume(self) -> None:
        state = checkpoint.load_last(self.out)
        if state is None:
            self.log(f"no {checkpoint.LAST} in {self.out} yet: starting a new run")
            return
        if state["options"]["model"] != self.opts.model:
            raise TrainError(
                f"{self.out / checkpoint.LAST} is a {state['options']['model']} run, "
                f"not {self.opts.model}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = History(
            loss=[(int(s), float(v)) for s, v in state["history"]["loss"]],
            val=[(int(s), dict(v)) for s, v in state["history"]["val"]],
        )
        self.rng.bit_generator.state = state["rng"]["data"]
        model_rng: Any = self.model.rng
        model_rng.bit_generator.state = state["rng"]["model"]
        torch.set_rng_state(state["rng"]["torch"])
        self.log(f"resumed {self.out / checkpoint.LAST} at step {self.step}")

    def save(self) -> None:
        checkpoint.save(self.out, self._state(), self.model, self.opts.half_weights)

    # -- the loop ---------------------------------------------------------------------
    def train_step(self) -> float:
        opts = self.opts
        images = self.step < opts.image_steps
        batch = self.data.batch(
            opts.image_batch_size if images else opts.batch_size, 1 if images else opts.frames
        )
        batch = batch.to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(self.step, opts)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            outputs = self.model(batch)
            losses = self.loss_fn(outputs, batch.masks)
        core = losses["core_loss"]
        value = float(core.detach())
        if not math.isfinite(value):
            return value
        if core.requires_grad:  # not when every frame was a mask-prompted (given) one
            self.optimizer.zero_grad(set_to_none=True)
            core.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), opts.grad_clip)
            self.optimizer.step()
        self.step += 1
        return value

    def run(self) -> None:
        from tqdm import tqdm

        opts = self.opts
        stop = _StopFlag()
        bar = tqdm(total=opts.steps, initial=self.step, unit="step", dynamic_ncols=True)
        recent: list[float] = []
        try:
            with stop:
                while self.step < opts.steps and not stop.requested:
                    loss = self.train_step()
                    if not math.isfinite(loss):
                        raise TrainError(
                            f"loss is {loss} at step {self.step}: stopped; the last good "
                            f"checkpoint is {self.out / checkpoint.LAST}"
                        )
                    recent.append(loss)
                    bar.update(1)
                    if self.step % 10 == 0:
                        mean = sum(recent) / len(recent)
                        self.history.loss.append((self.step, mean))
                        bar.set_postfix(loss=f"{mean:.3f}", lr=f"{_lr_at(self.step, opts):.1e}")
                        recent.clear()
                    if opts.val and self.step % opts.val_every == 0:
                        self.validate()
                    if self.step % opts.save_every == 0 or self.step == opts.steps:
                        self.save()
                        self.plot()
        finally:
            bar.close()
        if stop.requested:
            self.save()
            self.plot()
            self.log(f"interrupted at step {self.step}: saved {self.out / checkpoint.LAST}")
            raise KeyboardInterrupt
        self.log(f"done: {self.step} steps; weights in {self.out / checkpoint.MODEL}")

    # -- validation and curves --------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """J&F of the current weights on the held-out folder, with `eval`'s own code."""
        from sam2long_stream.evaluation import choose_videos, run_eval

        opts = self.opts
        assert opts.val is not None
        names = choose_videos(opts.val, "davis")[: opts.val_videos]
        self.model.train(False)  # inference mode for validation
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "model.pt"
            torch.save(checkpoint.official_state(self.model), weights)
            report = run_eval(
                opts.val,
                videos=names,
                out=None,
                model=opts.model,
                checkpoint=str(weights),
                image_size=opts.image_size,
                device=str(self.device),
                pathways=opts.val_pathways,
                log=None,
            )
        self.model.train()
        scores = {f"P{k}": float(v["mean"]["J&F"] or 0.0) for k, v in report["results"].items()}
        self.history.val.append((self.step, scores))
        self.log(
            f"step {self.step}: validation J&F "
            + ", ".join(f"{k} {100 * v:.1f}" for k, v in scores.items())
        )
        return scores

    def plot(self) -> Path | None:
        from sam2long_stream.train.curves import plot_curves

        return plot_curves(self.history.loss, self.history.val, self.out / "curves.png")


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a request to save and stop after this step;
    a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum, _frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
