"""The SAM2Long rules, as pure functions over small inputs.

Nothing here touches the model: candidate scoring and pool selection work on tensors of
shape (pathways, 3); memory selection and attention modulation work on a pathway's
history. Keeping them pure is what makes every rule of the algorithm page unit-testable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

IOU_EPS = 1e-5  # log(iou + eps): the reference's guard against log(0)
CONDITIONING_LOGIT = 10.0  # conditioning frames rank as this confident in modulation
MODULATION_RANGE = (0.95, 1.05)
# The reference keeps the conditioning score of its modulation lists in bfloat16; a list
# holding only that score (one object pointer) gets linspace(0.95, 1.05, 1) = [0.95] in
# that dtype: 0.94921875.
SINGLE_WEIGHT = float(torch.tensor(MODULATION_RANGE[0], dtype=torch.bfloat16))
POINTER_RULES = ("reference", "sam2")


def _levels(n: int) -> tuple[float, ...]:
    """linspace(0.95, 1.05, n) in float32, exactly as torch computes it."""
    return tuple(torch.linspace(*MODULATION_RANGE, n, dtype=torch.float32).tolist())


# Precomputed so that a tracking step reads no tensor back to the host for them
# (conditioning frames + spatial memory or pointers stay well under 64).
_LEVELS = {n: _levels(n) for n in range(2, 65)}


@dataclass(frozen=True)
class Selection:
    """Which candidates form the next pool: ``parent[i]``'s candidate ``candidate[i]``."""

    parent: Tensor  # (n,) long
    candidate: Tensor  # (n,) long
    score: Tensor  # (n,) float64 cumulative scores of the children
    certain: Tensor  # () bool: the certain rule was used


def candidate_scores(pathway_scores: Tensor, ious: Tensor) -> Tensor:
    """S[p, k] = S[p] + log(iou[p, k] + 1e-5), in float64 so long streams keep precision."""
    return pathway_scores.to(torch.float64)[:, None] + torch.log(
        ious.to(torch.float64).clamp(min=0) + IOU_EPS
    )


def select_pool(
    pathway_scores: Tensor,
    ious: Tensor,
    object_logits: Tensor,
    num_keep: int,
    uncertainty: float,
) -> Selection:
    """Pick the next pool of ``num_keep`` pathways among the (P, K) candidates.

    Certain (max |logit| > uncertainty): top ``num_keep`` by cumulative score.
    Uncertain: in descending score, keep a candidate only if its signed IoU rounded to
    two decimals is new; then top up with each unrepresented parent's best candidate.
    Runs on tensors only (no host sync), whatever the device.
    """
    num_parents, num_cands = ious.shape
    num_keep = min(num_keep, num_parents * num_cands)
    scores = candidate_scores(pathway_scores, ious).flatten()
    order = torch.argsort(scores, descending=True, stable=True)
    certain_pick = order[:num_keep]

    # Uncertain rule: first occurrence of each rounded signed IoU, in score order.
    parent_of = torch.arange(num_parents, device=ious.device).repeat_interleave(num_cands)
    signed = torch.where(object_logits[parent_of] > 0, ious.flatten(), -ious.flatten())
    key = torch.round(signed.to(torch.float64), decimals=2)[order]
    same = key[:, None] == key[None, :]
    earlier = torch.ones_like(same).tril(diagonal=-1)
    first = ~(same & earlier).any(dim=1)
    kept = first & (torch.cumsum(first.long(), 0) <= num_keep)
    # Top-up: each parent not represented among the kept adds its best candidate,
    # in parent order, after all kept ones.
    represented = torch.zeros(num_parents, dtype=torch.bool, device=ious.device)
    represented[parent_of[order][kept]] = True
    best_of_parent = (
        scores.view(num_parents, num_cands).argmax(dim=1)
        + torch.arange(num_parents, device=ious.device) * num_cands
    )
    big = len(order) + num_parents
    rank_kept = torch.where(kept, torch.arange(len(order), device=ious.device), big)
    rank_fill = torch.where(
        ~represented, len(order) + torch.arange(num_parents, device=ious.device), big
    )
    ranks = torch.cat([rank_kept, rank_fill])
    flat = torch.cat([order, best_of_parent])
    uncertain_pick = flat[torch.argsort(ranks, stable=True)[:num_keep]]

    certain = object_logits.abs().max() > uncertainty
    pick = torch.where(certain, certain_pick, uncertain_pick)
    return Selection(
        parent=pick // num_cands,
        candidate=pick % num_cands,
        score=scores[pick],
        certain=certain,
    )


@dataclass(frozen=True)
class MemoryEntry:
    """What a pathway remembers of one tracked (non-conditioning) frame, or what an
    object remembers of a conditioning frame."""

    frame_index: int
    maskmem: object | None  # engine-specific memory features; None once unreachable
    obj_ptr: object  # engine-specific object pointer
    iou: float
    object_score_logit: float

    def eligible(self, iou_threshold: float) -> bool:
        """Object-aware memory bank: only confident, present frames become memory."""
        return self.iou > iou_threshold and self.object_score_logit > 0


@dataclass(frozen=True)
class MemoryLayout:
    """Which memory one pathway attends to on frame ``frame_index``.

    ``frames``: (t_pos, entry), oldest first as SAM 2 orders them; t_pos in
    1..num_maskmem-1 (num_maskmem-1 = the most recent). ``pointers``: (temporal distance,
    entry), newest first.
    """

    frames: list[tuple[int, MemoryEntry]]
    pointers: list[tuple[int, MemoryEntry]]


def select_memory(
    history: Sequence[MemoryEntry],
    frame_index: int,
    *,
    num_maskmem: int,
    max_obj_ptrs: int,
    iou_threshold: float,
    selection: bool,
    pointer_rule: str = "reference",
) -> MemoryLayout:
    """Pick the non-conditioning memory of one pathway for ``frame_index``.

    Selection off: SAM 2's fixed windows (the last num_maskmem-1 frames as spatial
    memory, pointers from the last max_obj_ptrs-1 frames). Selection on: the "valid"
    frames, i.e. the latest max_obj_ptrs-1 eligible ones plus the previous frame; spatial
    memory is the newest num_maskmem-1 of them, ranked by recency. Object pointers:
    ``pointer_rule="reference"`` (the official code) takes every valid frame but the
    oldest, at temporal position = recency rank; ``"sam2"`` takes the previous frame plus
    the latest eligible ones (max_obj_ptrs-1 in all) at their true distance.
    """
    if pointer_rule not in POINTER_RULES:
        raise ValueError(f"pointer_rule must be one of {POINTER_RULES}, got {pointer_rule!r}")
    past = [e for e in history if e.frame_index < frame_index]
    if not selection:
        frames = [
            (num_maskmem - (frame_index - e.frame_index), e)
            for e in past
            if frame_index - e.frame_index < num_maskmem and e.maskmem is not None
        ]
        pointers = [
            (frame_index - e.frame_index, e)
            for e in reversed(past)
            if frame_index - e.frame_index < max_obj_ptrs
        ]
        return MemoryLayout(frames=sorted(frames, key=lambda x: x[0]), pointers=pointers)

    valid = _valid(past, frame_index, max_obj_ptrs - 1, iou_threshold)
    spatial = [e for e in valid if e.maskmem is not None][: num_maskmem - 1]
    frames = [(num_maskmem - 1 - rank, e) for rank, e in enumerate(spatial)]
    frames.reverse()
    if pointer_rule == "reference":
        pointers = list(enumerate(valid[:-1], start=1))
    else:
        ptr_entries = _latest_with_previous(
            past, frame_index, max_obj_ptrs - 1, iou_threshold, need_features=False
        )
        pointers = [(frame_index - e.frame_index, e) for e in ptr_entries]
    return MemoryLayout(frames=frames, pointers=pointers)


def _valid(
    past: Sequence[MemoryEntry], frame_index: int, limit: int, iou_threshold: float
) -> list[MemoryEntry]:
    """Newest first: the latest ``limit`` eligible entries, plus the previous frame's
    entry wherever it falls (it is the newest), as the reference's memory scan."""
    chosen: list[MemoryEntry] = []
    for e in reversed(past):
        if len(chosen) >= limit:
            break
        if e.eligible(iou_threshold):
            chosen.append(e)
    if past and past[-1].frame_index == frame_index - 1 and all(e is not past[-1] for e in chosen):
        chosen.insert(0, past[-1])
    return chosen


def _latest_with_previous(
    past: Sequence[MemoryEntry],
    frame_index: int,
    limit: int,
    iou_threshold: float,
    need_features: bool,
) -> list[MemoryEntry]:
    """Newest first: the previous frame (always) plus the latest eligible ones, up to limit."""
    chosen: list[MemoryEntry] = []
    for e in reversed(past):
        if len(chosen) >= limit:
            break
        if need_features and e.maskmem is None:
            continue
        if e.frame_index == frame_index - 1 or e.eligible(iou_threshold):
            chosen.append(e)
    return chosen


def reachable(
    history: Sequence[MemoryEntry],
    next_frame: int,
    *,
    num_maskmem: int,
    max_obj_ptrs: int,
    iou_threshold: float,
    selection: bool,
    pointer_rule: str = "reference",
) -> tuple[MemoryEntry, ...]:
    """Drop what no future frame can attend to, so memory stays bounded on endless streams.

    Entries only the pointer window still reaches lose their (large) spatial features.
    Anything a later frame could select is at most this far back, as histories only grow
    at the end. The oldest valid frame stays too (without features) even where no rule
    uses it: the reference's scan counts it, and drops it from the pointers.
    """
    layout = select_memory(
        history,
        next_frame,
        num_maskmem=num_maskmem,
        max_obj_ptrs=max_obj_ptrs,
        iou_threshold=iou_threshold,
        selection=selection,
        pointer_rule=pointer_rule,
    )
    keep_features = {id(e) for _, e in layout.frames}
    keep = keep_features | {id(e) for _, e in layout.pointers}
    if selection:
        past = [e for e in history if e.frame_index < next_frame]
        keep |= {id(e) for e in _valid(past, next_frame, max_obj_ptrs - 1, iou_threshold)}
    out = []
    for e in history:
        if id(e) not in keep:
            continue
        out.append(e if id(e) in keep_features or e.maskmem is None else replace(e, maskmem=None))
    return tuple(out)


def modulation_weights(logits: Sequence[float]) -> list[float]:
    """Weights in [0.95, 1.05] by rank of object-score logit: confident frames weigh more.

    As the reference computes them: ``linspace(0.95, 1.05, n)`` in float32, assigned in
    ascending logit order. A single entry gets 0.95 as the reference stores it
    (SINGLE_WEIGHT); whether a single memory frame is scaled at all is the caller's
    rule (the reference scales nothing then, pointers included).
    """
    n = len(logits)
    if n == 0:
        return []
    if n == 1:
        return [SINGLE_WEIGHT]
    levels = _LEVELS.get(n) or _levels(n)
    weights = [0.0] * n
    # A stable sort on host floats: no device tensors to create or read back.
    for rank, idx in enumerate(sorted(range(n), key=logits.__getitem__)):
        weights[idx] = levels[rank]
    return weights
