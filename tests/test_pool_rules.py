"""Each SAM2Long rule of the algorithm page, on small hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch

from sam2long_stream.tracker.pool import (
    MemoryEntry,
    candidate_scores,
    modulation_weights,
    reachable,
    select_memory,
    select_pool,
)


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# -- candidate scoring -------------------------------------------------------------
def test_candidate_score_is_cumulative_log_iou():
    s = candidate_scores(t([0.0, -1.0], torch.float64), t([[0.5, 1.0, 0.0], [0.25, 0.9, 0.1]]))
    assert s.dtype == torch.float64
    assert s[0, 0].item() == pytest.approx(math.log(0.5 + 1e-5))
    assert s[0, 2].item() == pytest.approx(math.log(1e-5))  # iou 0 stays finite
    assert s[1, 1].item() == pytest.approx(-1.0 + math.log(0.9 + 1e-5), rel=1e-6)


def test_negative_iou_predictions_are_clamped_not_nan():
    s = candidate_scores(t([0.0], torch.float64), t([[-0.2, 0.5, 0.5]]))
    assert torch.isfinite(s).all()


# -- pool selection: certain case --------------------------------------------------
def test_certain_case_takes_top_p_by_cumulative_score():
    scores = t([0.0, -0.1, -2.0], torch.float64)
    ious = t([[0.9, 0.8, 0.1], [0.95, 0.2, 0.2], [0.99, 0.99, 0.99]])
    sel = select_pool(scores, ious, t([3.0, -1.0, 0.5]), num_keep=3, uncertainty=2.0)
    assert bool(sel.certain)
    pairs = list(zip(sel.parent.tolist(), sel.candidate.tolist(), strict=True))
    # S: p0 -> [-0.105, -0.223, -2.30], p1 -> [-0.151, -1.71, -1.71], p2 -> [-2.01, ...]
    assert pairs == [(0, 0), (1, 0), (0, 1)]
    assert sel.score.tolist() == pytest.approx(
        [math.log(0.9 + 1e-5), -0.1 + math.log(0.95 + 1e-5), math.log(0.8 + 1e-5)]
    )


def test_certain_threshold_is_strict():
    ious = t([[0.5, 0.5, 0.4]])
    at = select_pool(t([0.0], torch.float64), ious, t([2.0]), num_keep=1, uncertainty=2.0)
    above = select_pool(t([0.0], torch.float64), ious, t([2.01]), num_keep=1, uncertainty=2.0)
    assert not bool(at.certain) and bool(above.certain)
    # any pathway's |logit| counts, also a confidently absent one
    neg = select_pool(t([0.0], torch.float64), ious, t([-3.0]), num_keep=1, uncertainty=2.0)
    assert bool(neg.certain)


# -- pool selection: uncertain case ------------------------------------------------
def test_uncertain_case_keeps_distinct_rounded_signed_ious():
    # Three identical parents (the pool right after forking): top-P would pick the same
    # candidate three times; diversity picks three different ones.
    ious = t([[0.801, 0.853, 0.1]] * 3)
    scores = t([0.0, 0.0, 0.0], torch.float64)
    sel = select_pool(scores, ious, t([1.0] * 3), num_keep=3, uncertainty=2.0)
    assert not bool(sel.certain)
    assert sorted(sel.candidate.tolist()) == [0, 1, 2]
    assert sel.candidate.tolist()[0] == 1  # in descending score order


def test_uncertain_case_rounds_to_two_decimals_and_signs_by_presence():
    # 0.801 and 0.799 both round to 0.80: one of them is a duplicate.
    ious = t([[0.801, 0.799, 0.3], [0.801, 0.2, 0.1]])
    scores = t([0.0, 0.0], torch.float64)
    # parent 1 absent (logit < 0): its 0.801 becomes -0.80, distinct from +0.80
    sel = select_pool(scores, ious, t([1.0, -1.0]), num_keep=2, uncertainty=2.0)
    pairs = sorted(zip(sel.parent.tolist(), sel.candidate.tolist(), strict=True))
    assert pairs == [(0, 0), (1, 0)]
    # both present: (1, 0) duplicates (0, 0); the next distinct is (0, 2) with 0.30
    sel = select_pool(scores, ious, t([1.0, 1.0]), num_keep=2, uncertainty=2.0)
    pairs = list(zip(sel.parent.tolist(), sel.candidate.tolist(), strict=True))
    assert pairs == [(0, 0), (0, 2)]


def test_uncertain_case_tops_up_with_unrepresented_parents_best():
    # Every candidate has the same rounded IoU: only one is kept by diversity, then each
    # parent not yet represented adds its best candidate, in parent order.
    ious = t([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    scores = t([-1.0, 0.0, -2.0], torch.float64)
    sel = select_pool(scores, ious, t([0.5, 0.5, 0.5]), num_keep=3, uncertainty=2.0)
    assert sel.parent.tolist() == [1, 0, 2]
    assert sel.candidate.tolist() == [0, 0, 0]


# -- memory selection --------------------------------------------------------------
def entries(spec):
    """spec: list of (frame, iou, logit)."""
    return [
        MemoryEntry(f, maskmem=f"mem{f}", obj_ptr=f"ptr{f}", iou=i, object_score_logit=o)
        for f, i, o in spec
    ]


def test_selection_off_is_sam2_fixed_windows():
    hist = entries([(f, 0.0, -5.0) for f in range(0, 20)])  # none eligible: irrelevant here
    layout = select_memory(
        hist, 20, num_maskmem=7, max_obj_ptrs=16, iou_threshold=0.1, selection=False
    )
    assert [(tp, e.frame_index) for tp, e in layout.frames] == [
        (1, 14),
        (2, 15),
        (3, 16),
        (4, 17),
        (5, 18),
        (6, 19),
    ]
    assert [(d, e.frame_index) for d, e in layout.pointers] == [(d, 20 - d) for d in range(1, 16)]


def test_selection_off_leaves_gaps_where_frames_are_missing():
    hist = entries([(3, 0.9, 1.0), (5, 0.9, 1.0)])
    layout = select_memory(
        hist, 6, num_maskmem=7, max_obj_ptrs=16, iou_threshold=0.1, selection=False
    )
    assert [(tp, e.frame_index) for tp, e in layout.frames] == [(4, 3), (6, 5)]


def test_selection_on_keeps_previous_frame_and_latest_eligible():
    spec = [(f, 0.9, 1.0) for f in range(10)]  # eligible
    spec[9] = (9, 0.05, 1.0)  # previous frame: low IoU, still included
    spec[7] = (7, 0.9, -1.0)  # absent: not eligible
    spec[5] = (5, 0.1, 1.0)  # iou must be > threshold, not >=
    layout = select_memory(
        entries(spec), 10, num_maskmem=7, max_obj_ptrs=16, iou_threshold=0.1, selection=True
    )
    # six frames: 9 (previous) + the 5 latest eligible 8, 6, 4, 3, 2, ranked by recency
    assert [(tp, e.frame_index) for tp, e in layout.frames] == [
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 6),
        (5, 8),
        (6, 9),
    ]
    # reference pointers: every valid frame (previous + eligible) but the oldest, by rank
    assert [(d, e.frame_index) for d, e in layout.pointers] == [
        (1, 9),
        (2, 8),
        (3, 6),
        (4, 4),
        (5, 3),
        (6, 2),
        (7, 1),
    ]
    # SAM 2's rule: previous + latest eligible, at most max_obj_ptrs - 1, true distances
    sam2 = select_memory(
        entries(spec),
        10,
        num_maskmem=7,
        max_obj_ptrs=4,
        iou_threshold=0.1,
        selection=True,
        pointer_rule="sam2",
    )
    assert [(d, e.frame_index) for d, e in sam2.pointers] == [(1, 9), (2, 8), (4, 6)]


def test_reachable_bounds_history_and_drops_unreachable_features():
    hist = ()
    for f in range(200):
        e = MemoryEntry(
            f,
            maskmem=f"mem{f}",
            obj_ptr=f"ptr{f}",
            iou=0.9 if f % 3 else 0.0,
            object_score_logit=1.0,
        )
        hist = reachable(
            (*hist, e), f + 1, num_maskmem=7, max_obj_ptrs=16, iou_threshold=0.1, selection=True
        )
        assert len(hist) <= 16
    with_features = [e.frame_index for e in hist if e.maskmem is not None]
    assert len(with_features) == 6 and with_features[-1] == 199
    # what a later frame selects is exactly what was kept
    nxt = select_memory(
        hist, 200, num_maskmem=7, max_obj_ptrs=16, iou_threshold=0.1, selection=True
    )
    full = select_memory(
        entries([(f, 0.9 if f % 3 else 0.0, 1.0) for f in range(200)]),
        200,
        num_maskmem=7,
        max_obj_ptrs=16,
        iou_threshold=0.1,
        selection=True,
    )
    assert [e.frame_index for _, e in nxt.frames] == [e.frame_index for _, e in full.frames]
    assert [e.frame_index for _, e in nxt.pointers] == [e.frame_index for _, e in full.pointers]


# -- attention modulation ----------------------------------------------------------
def test_modulation_weights_rank_by_object_score():
    w = modulation_weights([10.0, 0.5, 3.0, -1.0])
    assert w == pytest.approx([1.05, 0.95 + 0.1 / 3, 0.95 + 0.2 / 3, 0.95])
    assert modulation_weights([2.0]) == [0.94921875]  # 0.95 as the reference keeps it (bf16)
    assert modulation_weights([]) == []
    assert modulation_weights([1.0, 1.0, 1.0]) == pytest.approx([0.95, 1.0, 1.05])  # stable ties
