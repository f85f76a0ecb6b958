"""The online SAM2Long tracker: one pathway pool per object, advanced per arriving frame.

Per frame: one image encoding; for every pathway of every object one memory attention
and one multimask decoding (batched by the engine); selection of the next pool per
object; one memory encoding per distinct chosen candidate (batched). Pathways share
their histories (immutable tuples), and each history is pruned to what a later frame
can still attend to, so memory stays bounded on endless streams.

A step runs in phases (`_begin`, `_apply_prompts`, `_collect`, `_track`, `_finish`) so
that `step_many` can drive several trackers that share one engine (many camera streams,
one model in memory) through the same code: it encodes the frames of all streams in one
image-encoder call, then runs memory attention, the mask decoder and the memory encoder
once over all pathways x objects x streams (grouped by memory layout). Each stream's
results equal what its own `Tracker.step` would give; `Tracker.step` is `step_many` of
one. The tick has this one owner: the phases and `step_many` live in this module.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sam2long_stream.boxes import mask_box
from sam2long_stream.tracker.config import Prompt, TrackerConfig
from sam2long_stream.tracker.engine import FrameFeatures, MemoryView, Sam2Engine
from sam2long_stream.tracker.inputs import check_frame, check_prompts
from sam2long_stream.tracker.pool import (
    CONDITIONING_LOGIT,
    MemoryEntry,
    modulation_weights,
    reachable,
    select_memory,
    select_pool,
)
from sam2long_stream.tracker.protocols import Engine
from sam2long_stream.tracker.results import ObjectScore, StepResult
from sam2long_stream.tracker.transfer import upload


@dataclass(frozen=True)
class Choice:
    """The mask a pathway chose on one frame, kept for fixed-lag output."""

    frame_index: int
    low_res: Tensor  # (1, h, w) logits
    iou: float
    object_score_logit: float


@dataclass
class Pathway:
    """One hypothesis of an object's history since its last prompt."""

    id: int
    score: float
    history: tuple[MemoryEntry, ...]  # tracked frames selection can still reach
    recent: tuple[Choice, ...]  # the last lag + 1 choices


@dataclass
class ObjectState:
    object_id: int
    conditioning: list[MemoryEntry]
    pool: list[Pathway]
    frames_since_prompt: int = 0
    last_best: int | None = None
    last_lagged_best: int | None = None


@dataclass
class _Frame:
    index: int
    height: int
    width: int


@dataclass(frozen=True)
class _Chosen:
    """One candidate selected into an object's next pool, as read back from the device."""

    parent: int  # index into the object's current pool
    score: float  # cumulative
    iou: float
    object_score_logit: float
    row: int  # index into this frame's chosen batch (low_res, maskmem, obj_ptrs)


@dataclass
class _Pending:
    """Candidates of one object on this frame: rows of the engine batch it owns."""

    tracker: Tracker
    obj: ObjectState
    t: int
    column: int  # the object's frame in the features batch (its stream)
    rows: list[int] = field(default_factory=list)


@dataclass
class _Tick:
    """One tracker's frame of a step, checked but not applied yet."""

    rgb: np.ndarray
    prompts: dict[int, Prompt]
    frame: _Frame
    column: int | None = None  # its frame in the features batch; None: not encoded


class Tracker:
    """Online SAM2Long over a live sequence of frames.

    >>> tracker = Tracker(TrackerConfig())                      # doctest: +SKIP
    >>> r = tracker.step(frame, prompts={1: Prompt(box=(10, 10, 80, 90))})  # doctest: +SKIP
    >>> r.masks[1].shape == frame.shape[:2]                      # doctest: +SKIP
    """

    def __init__(self, config: TrackerConfig | None = None, engine: Engine | None = None) -> None:
        self.config = config or TrackerConfig()
        self.engine: Engine = engine if engine is not None else Sam2Engine(self.config)
        self._objects: dict[int, ObjectState] = {}
        self._next_frame = 0
        self._frames: deque[_Frame] = deque(maxlen=self.config.lag + 1)
        self._next_lagged = 0
        self._ids = itertools.count(1)
        self.latest: StepResult | None = None  # live (lag 0) result of the last frame

    @property
    def model(self) -> Any:
        """The underlying sam2 SAM2Base module (None for an engine without one)."""
        return self.engine.model

    @property
    def frame_index(self) -> int:
        """Index the next frame will get."""
        return self._next_frame

    @property
    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    # -- public API -----------------------------------------------------------------
    def step(
        self, frame: np.ndarray, prompts: Mapping[int, Prompt] | None = None
    ) -> StepResult | None:
        """Advance every object's pool by one frame, applying the prompts given with it.

        Returns the live result (lag 0), or with ``lag=L`` the result of frame t - L
        (None for the first L frames); the live one is always in ``self.latest``.
        All or nothing: if the step raises (say, out of GPU memory), the tracker is left
        as it was, prompts not applied, so the caller can skip the frame.
        """
        return step_many([self], [frame], [prompts])[0]

    def memory_stats(self) -> dict[str, Any]:
        """What the tracker holds, per object and in all (for benchmarks and tests).

        ``objects``: {object id: {"conditioning": prompt memories, "pool_size",
        "pathways": [{"id", "score", "history", "with_features", "recent"}]}}, where
        ``history`` counts the tracked frames a pathway can still attend to,
        ``with_features`` those of them that still hold memory features and ``recent``
        the masks kept for fixed-lag output; ``entries`` / ``entries_with_features``:
        distinct memory entries stored (pathways share their histories: counted once).
        """
        objects: dict[int, dict[str, Any]] = {}
        entries: dict[int, MemoryEntry] = {}
        for oid, obj in sorted(self._objects.items()):
            pathways = []
            for p in obj.pool:
                pathways.append(
                    {
                        "id": p.id,
                        "score": p.score,
                        "history": len(p.history),
                        "with_features": sum(e.maskmem is not None for e in p.history),
                        "recent": len(p.recent),
                    }
                )
                entries.update((id(e), e) for e in p.history)
            entries.update((id(e), e) for e in obj.conditioning)
            objects[oid] = {
                "conditioning": len(obj.conditioning),
                "pool_size": len(obj.pool),
                "pathways": pathways,
            }
        return {
            "objects": objects,
            "entries": len(entries),
            "entries_with_features": sum(e.maskmem is not None for e in entries.values()),
        }

    def pathway_masks(self) -> dict[int, list[np.ndarray]]:
        """Each object's masks on the last frame from every pathway of its pool, best
        first: what the tree holds besides the published mask (for diagnostics such as
        tools/score_calibration.py)."""
        if not self._frames:
            return {}
        frame = self._frames[-1]
        out: dict[int, list[np.ndarray]] = {}
        with torch.inference_mode():
            for oid, obj in sorted(self._objects.items()):
                pool = [p for p in sorted(obj.pool, key=lambda p: -p.score) if p.recent]
                if not pool or pool[0].recent[-1].frame_index != frame.index:
                    continue  # not tracked on this frame (added after it, say)
                low = [p.recent[-1].low_res for p in pool]
                full = F.interpolate(
                    torch.stack(low).float(),
                    size=(frame.height, frame.width),
                    mode="bilinear",
                    align_corners=False,
                )
                out[oid] = list((full[:, 0] > 0).cpu().numpy())
        return out

    def flush(self) -> list[StepResult]:
        """At end of stream: the lagged results not yet returned, from the best pathways."""
        pending = [f for f in self._frames if f.index >= self._next_lagged]
        self._next_lagged = self._next_frame
        with torch.inference_mode():
            return [self._result(f, lagged=True) for f in pending]

    def set_num_pathways(self, num_pathways: int) -> None:
        """Change the pool width; every object's pool grows or shrinks on its next frame."""
        self.config = dataclasses.replace(self.config, num_pathways=num_pathways)

    def remove_object(self, object_id: int) -> None:
        if object_id not in self._objects:
            raise ValueError(f"unknown object id {object_id}; tracked: {self.object_ids}")
        del self._objects[object_id]

    def reset(self) -> None:
        """Forget every object; frame numbering goes on."""
        self._objects.clear()

    # -- step phases ----------------------------------------------------------------
    def _begin(self, frame: object, prompts: object) -> _Tick:
        """Check the frame and its prompts; nothing is applied yet."""
        rgb = check_frame(frame, prompts)
        height, width = rgb.shape[:2]
        checked = check_prompts(prompts, height, width)
        return _Tick(rgb, checked, _Frame(self._next_frame, height, width))

    def _needs_features(self, tick: _Tick) -> bool:
        """An empty tracker without prompts has nothing to run the model for."""
        return bool(self._objects or tick.prompts)

    def _snapshot(self) -> dict[int, ObjectState]:
        return {k: dataclasses.replace(o) for k, o in self._objects.items()}

    def _apply_prompts(self, tick: _Tick, features: FrameFeatures) -> None:
        f = tick.frame
        for object_id, prompt in tick.prompts.items():
            self._condition(object_id, prompt, features, f.index, f.height, f.width, tick.column)

    def _collect(self, tick: _Tick, views: list[MemoryView]) -> list[_Pending]:
        """Append the memory view of every pathway of every object tracked (not prompted)
        on this frame to the engine batch `views`; return which rows each object owns."""
        pending: list[_Pending] = []
        t = tick.frame.index
        assert tick.column is not None, "collected before its frame was encoded"
        for obj in self._objects.values():
            if obj.object_id in tick.prompts:
                continue
            obj.frames_since_prompt += 1
            p = _Pending(self, obj, t, tick.column)
            for pathway in obj.pool:
                p.rows.append(len(views))
                view = self._view(obj, pathway, t)
                view.frame = tick.column
                views.append(view)
            pending.append(p)
        return pending

    def _finish(self, tick: _Tick, live: StepResult) -> StepResult | None:
        """Commit the frame (after every tracker of the step succeeded)."""
        t = tick.frame.index
        self._next_frame += 1
        self._frames.append(tick.frame)
        self.latest = live
        due = t - self.config.lag
        if due < self._next_lagged:
            return None
        self._next_lagged = due + 1
        return self.latest if self.config.lag == 0 else self._result(self._frames[0], lagged=True)

    # -- prompts --------------------------------------------------------------------
    def _condition(self, object_id, prompt, features, t, height, width, column=0) -> None:
        out = self.engine.prompt(features, prompt, height, width, t, frame=column)
        entry = MemoryEntry(t, out.maskmem, out.obj_ptr, out.iou, out.object_score_logit)
        choice = Choice(t, out.low_res_mask, out.iou, out.object_score_logit)
        obj = self._objects.get(object_id)
        if obj is None:
            obj = ObjectState(object_id, conditioning=[], pool=[])
            self._objects[object_id] = obj
            base = Pathway(next(self._ids), 0.0, (), ())
        else:  # a new prompt re-conditions: keep the best pathway, restart its score
            best = self._best(obj)
            base = Pathway(best.id, 0.0, best.history, best.recent)
        base.recent = (*base.recent, choice)[-(self.config.lag + 1) :]
        obj.pool = [base]
        obj.conditioning = [*obj.conditioning, entry][-self.config.max_conditioning_frames :]
        obj.frames_since_prompt = 0

    # -- tracking -------------------------------------------------------------------
    def _advance(self, obj, chosen, low_res, maskmem, obj_ptrs, t) -> None:
        """Build the object's next pool from its chosen candidates."""
        cfg = self.config
        seen_parents: set[int] = set()
        pool = []
        for c in chosen:
            parent = obj.pool[c.parent]
            # clone: a row view would keep the whole batch tensor alive in the history
            entry = MemoryEntry(
                t, maskmem[c.row].clone(), obj_ptrs[c.row].clone(), c.iou, c.object_score_logit
            )
            history = reachable(
                (*parent.history, entry),
                t + 1,
                num_maskmem=self.engine.num_maskmem,
                max_obj_ptrs=self.engine.max_obj_ptrs,
                iou_threshold=cfg.iou_threshold,
                selection=cfg.memory_selection,
                pointer_rule=cfg.pointer_rule,
            )
            choice = Choice(t, low_res[c.row : c.row + 1].clone(), c.iou, c.object_score_logit)
            lineage = parent.id if c.parent not in seen_parents else next(self._ids)
            seen_parents.add(c.parent)
            recent = (*parent.recent, choice)[-(cfg.lag + 1) :]
            # The reference forks the pool on the first frame after a prompt with every
            # score at 0: that frame's log IoU is not counted (the same for every pathway).
            score = 0.0 if obj.frames_since_prompt == 1 else c.score
            pool.append(Pathway(lineage, score, history, recent))
        obj.pool = pool

    def _view(self, obj: ObjectState, pathway: Pathway, t: int) -> MemoryView:
        """The memory this pathway attends to on frame t: prompts first, as SAM 2 orders it."""
        layout = select_memory(
            pathway.history,
            t,
            num_maskmem=self.engine.num_maskmem,
            max_obj_ptrs=self.engine.max_obj_ptrs,
            iou_threshold=self.config.iou_threshold,
            selection=self.config.memory_selection,
            pointer_rule=self.config.pointer_rule,
        )
        conds = obj.conditioning
        view = MemoryView(
            frames=[(0, c.maskmem) for c in conds] + [(tp, e.maskmem) for tp, e in layout.frames],
            pointers=[(t - c.frame_index, c.obj_ptr) for c in conds]
            + [(d, e.obj_ptr) for d, e in layout.pointers],
        )
        cond_logits = [CONDITIONING_LOGIT] * len(conds)
        frame_logits = cond_logits + [e.object_score_logit for _, e in layout.frames]
        # As the reference: with a single memory frame nothing is scaled, pointers included.
        if self.config.attention_modulation and len(frame_logits) > 1:
            view.frame_weights = modulation_weights(frame_logits)
            view.pointer_weights = modulation_weights(
                cond_logits + [e.object_score_logit for _, e in layout.pointers]
            )
        return view

    # -- results --------------------------------------------------------------------
    @staticmethod
    def _best(obj: ObjectState) -> Pathway:
        return max(obj.pool, key=lambda p: p.score)  # first of equals: stable

    def _result(self, frame: _Frame, lagged: bool) -> StepResult:
        """Masks of `frame` from each object's current best pathway."""
        rows: list[tuple[ObjectState, Pathway, Choice]] = []
        for obj in self._objects.values():
            best = self._best(obj)
            choice = next((c for c in best.recent if c.frame_index == frame.index), None)
            if choice is not None:
                rows.append((obj, best, choice))
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, ObjectScore] = {}
        if rows:
            low = torch.stack([c.low_res for _, _, c in rows])
            full = F.interpolate(
                low.float(),
                size=(frame.height, frame.width),
                mode="bilinear",
                align_corners=False,
            )
            binary = (full[:, 0] > 0).cpu().numpy()
        for i, (obj, best, choice) in enumerate(rows):
            mask = binary[i]
            previous = obj.last_lagged_best if lagged else obj.last_best
            switched = previous is not None and previous != best.id
            if lagged:
                obj.last_lagged_best = best.id
            else:
                obj.last_best = best.id
            masks[obj.object_id] = mask
            scores[obj.object_id] = ObjectScore(
                object_id=obj.object_id,
                iou=choice.iou,
                object_score_logit=choice.object_score_logit,
                cumulative_score=best.score,
                pathway_id=best.id,
                pathway_switched=switched,
                present=choice.object_score_logit > 0,
                area=int(mask.sum()),
                bbox=mask_box(mask),
            )
        return StepResult(frame.index, frame.height, frame.width, masks, scores)


@torch.inference_mode()
def step_many(
    trackers: Sequence[Tracker],
    frames: Sequence[np.ndarray],
    prompts: Sequence[Mapping[int, Prompt] | None] | None = None,
) -> list[StepResult | None]:
    """Advance every tracker by its frame (frames[i] for trackers[i], any sizes), applying
    prompts[i] to trackers[i]; return what each `Tracker.step` would return, in order
    (the live result, or with ``lag=L`` the result of frame t - L or None).

    The trackers must share one engine object and be distinct. All or nothing: if any
    part fails (bad input, out of memory), no tracker changes and no prompt is applied,
    so the caller can skip the tick (or retry the streams one by one).
    """
    trackers = list(trackers)
    frames = list(frames)
    if prompts is None:
        prompts = [None] * len(trackers)
    prompts = list(prompts)
    if len(frames) != len(trackers) or len(prompts) != len(trackers):
        raise ValueError(
            f"step_many needs one frame and one prompts entry per tracker: got "
            f"{len(trackers)} trackers, {len(frames)} frames, {len(prompts)} prompts"
        )
    if not trackers:
        return []
    for i, tr in enumerate(trackers):
        if not isinstance(tr, Tracker):
            raise ValueError(f"trackers[{i}] is not a Tracker: {type(tr).__name__}")
    engine = trackers[0].engine
    if any(tr.engine is not engine for tr in trackers):
        raise ValueError("step_many needs trackers that share one engine (one model)")
    if len({id(tr) for tr in trackers}) != len(trackers):
        raise ValueError("step_many got the same tracker twice")

    ticks: list[_Tick] = []
    for i, (tr, frame, p) in enumerate(zip(trackers, frames, prompts, strict=True)):
        try:
            ticks.append(tr._begin(frame, p))
        except ValueError as e:
            if len(trackers) == 1:
                raise
            raise ValueError(f"stream {i}: {e}") from None

    n = len(trackers)
    saved = [tr._snapshot() for tr in trackers]
    try:
        active = [k for k in range(n) if trackers[k]._needs_features(ticks[k])]
        features: Any = engine.encode_many([ticks[k].rgb for k in active]) if active else None
        for column, k in enumerate(active):
            ticks[k].column = column
            trackers[k]._apply_prompts(ticks[k], features)
        views: list[MemoryView] = []
        pending: list[_Pending] = []
        for k in active:
            pending += trackers[k]._collect(ticks[k], views)
        if pending:
            _track(engine, features, views, pending)
        live = [trackers[k]._result(ticks[k].frame, lagged=False) for k in range(n)]
    except BaseException:
        for k in range(n):
            trackers[k]._objects = saved[k]
        raise
    return [trackers[k]._finish(ticks[k], live[k]) for k in range(n)]


def _track(engine: Any, features: Any, views: list[MemoryView], pending: list[_Pending]) -> None:
    """Advance the pools of `pending` objects (of one tracker or several sharing `engine`)
    by one frame: one propose call for all their `views`, then one memory encoding."""
    cands = engine.propose(features, views)
    device = cands.ious.device

    # Selection runs on the device and the chosen masks' memory is encoded right
    # after it, so the whole step is queued before the host first waits for the GPU.
    plans: list[tuple[_Pending, list[int], int]] = []
    parents_t, rows_t, ks_t, scores_t = [], [], [], []
    for p in pending:
        cfg = p.tracker.config
        keep = 1 if p.obj.frames_since_prompt == 1 else cfg.num_pathways
        # A pool narrower than P (the fork after a prompt, or P raised at run time)
        # grows from copies of its pathways, as the reference forks P copies.
        size = len(p.obj.pool)
        parents = [i % size for i in range(max(size, keep))]
        rows = upload([p.rows[i] for i in parents], torch.long, device)
        sel = select_pool(
            upload([p.obj.pool[i].score for i in parents], torch.float64, device),
            cands.ious[rows],
            cands.object_logits[rows],
            keep,
            cfg.uncertainty,
        )
        plans.append((p, parents, sel.parent.shape[0]))  # a static count: no sync
        parents_t.append(sel.parent)
        rows_t.append(rows[sel.parent])
        ks_t.append(sel.candidate)
        scores_t.append(sel.score)
    chosen_rows, chosen_ks = torch.cat(rows_t), torch.cat(ks_t)
    low_res = cands.low_res[chosen_rows, chosen_ks]  # (n, h, w) logits
    logits = cands.object_logits[chosen_rows]
    columns = [p.column for p, _, n in plans for _ in range(n)]
    maskmem = engine.encode_memory(features, low_res[:, None], logits, frames=columns)
    obj_ptrs = cands.obj_ptrs[chosen_rows, chosen_ks]
    # The wait: a few numbers per chosen pathway, to build the next pools.
    numbers = torch.stack(
        [
            torch.cat(parents_t).double(),
            torch.cat(scores_t),
            cands.ious[chosen_rows, chosen_ks].double(),
            logits.double(),
        ],
        dim=1,
    ).tolist()
    start = 0
    for p, parents, n in plans:
        chosen = [
            _Chosen(parents[int(par)], score, iou, logit, j)
            for j, (par, score, iou, logit) in enumerate(numbers[start : start + n], start)
        ]
        p.tracker._advance(p.obj, chosen, low_res, maskmem, obj_ptrs, p.t)
        start += n
