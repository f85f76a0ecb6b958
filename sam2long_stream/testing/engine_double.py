"""An engine double with scripted candidates, for the one thing random weights cannot
show: a scene where greedy (SAM 2) selection commits to a wrong mask and the pool
recovers. It speaks the tracker's engine protocol (`tracker.protocols.Engine`), as
`Sam2Engine` does; the tracker under test is the real one. It also stands in for the
model in the long soak (`soak --engine scripted`): no neural network, so 10^5 frames
through the whole node fit in an hour on a CPU.

It ignores the pixels: any frame size works (masks are its 8x8 templates upsampled to
the frame), and a prompt only needs a box inside the frame (the tracker checks it).

Each candidate mask is one of three templates. The memory a pathway stores on a frame
records which template it chose, and the script makes the next candidates depend on
the pathway's most recent memory, as a real memory-conditioned model would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sam2long_stream.tracker.engine import Candidates, MemoryView, PromptOutput

if TYPE_CHECKING:
    from sam2long_stream.tracker.protocols import Engine

CORRECT, DISTRACTOR, JUNK = 0, 1, 2
SIZE = 32  # "image size" of the double; low-res masks are SIZE // 4
LOW = SIZE // 4


def template(which: int) -> torch.Tensor:
    """Low-res logits (LOW, LOW): +10 inside the template, -10 outside."""
    m = torch.full((LOW, LOW), -10.0)
    if which == CORRECT:
        m[:, : LOW // 2] = 10.0
    elif which == DISTRACTOR:
        m[:, LOW // 2 :] = 10.0
    else:
        m[: LOW // 4, : LOW // 4] = 10.0
    return m


# frame -> state (template chosen last) -> (IoUs of [CORRECT, DISTRACTOR, JUNK], logit)
def default_script(t: int, state: int) -> tuple[list[float], float]:
    if t == 1:
        return [0.9, 0.5, 0.2], 5.0
    if t == 2:  # an ambiguous frame: the distractor looks slightly better
        return [0.80, 0.85, 0.10], 1.0
    if state == CORRECT:
        return [0.95, 0.30, 0.10], 5.0
    if state == DISTRACTOR:  # once on the distractor, it looks worse but stays best
        return [0.25, 0.30, 0.20], 5.0
    return [0.20, 0.10, 0.30], 5.0


class ScriptedEngine:
    model = None
    image_size = SIZE
    low_res_size = LOW
    num_maskmem = 7
    max_obj_ptrs = 16

    def __init__(self, script=default_script, record_views: bool = True) -> None:
        """`record_views`: keep every frame's memory views in `views_per_frame` (tests
        inspect them); off for long runs, where the list would grow without end."""
        self.script = script
        self.record_views = record_views
        self.frame = -1
        self.views_per_frame: list[list[MemoryView]] = []

    def encode(self, rgb) -> int:
        self.frame += 1
        return self.frame

    def encode_many(self, rgbs) -> int:
        """One tick of every stream: the scripted frame number (shared by the streams)."""
        return self.encode(rgbs[0])

    def prompt(self, features, prompt, height, width, frame_index, frame=0) -> PromptOutput:
        return PromptOutput(
            low_res_mask=template(CORRECT)[None],
            iou=1.0,
            object_score_logit=10.0,
            obj_ptr=torch.zeros(4),
            maskmem=torch.tensor([float(CORRECT)]),
        )

    def propose(self, features, views) -> Candidates:
        if self.record_views:
            self.views_per_frame.append(list(views))
        ious, logits = [], []
        for v in views:
            state = int(v.frames[-1][1].item())  # most recent memory (conditioning: t_pos 0)
            i, o = self.script(features, state)
            ious.append(i)
            logits.append(o)
        b = len(views)
        low = torch.stack([template(k) for k in (CORRECT, DISTRACTOR, JUNK)])[None].repeat(
            b, 1, 1, 1
        )
        return Candidates(
            low_res=low,
            ious=torch.tensor(ious),
            object_logits=torch.tensor(logits),
            obj_ptrs=torch.zeros(b, 3, 4),
        )

    def encode_memory(self, features, low_res, object_logits, frames=None) -> torch.Tensor:
        low = low_res[:, 0]
        codes = []
        for m in low:
            codes.append(
                next(k for k in (CORRECT, DISTRACTOR, JUNK) if torch.equal(m > 0, template(k) > 0))
            )
        return torch.tensor(codes, dtype=torch.float32)[:, None]


if TYPE_CHECKING:

    def _scripted_engine_is_an_engine(engine: ScriptedEngine) -> Engine:
        """Static check (mypy, `make lint`): the double speaks the tracker's protocol."""
        return engine
