"""`TrackerConfig(compile=True)`: torch.compile of the image encoder and memory attention.

Real inductor compiles take minutes on 2 CPU cores (about 60 s for the image encoder
alone, 15-25 s per memory-attention graph), too slow for the unit suite. So the tracker-
level test uses ``compile_backend="aot_eager"``: dynamo traces, guards and recompiles
exactly as with inductor (the recompile count is a property of tracing, not of the
backend), and AOTAutograd runs the traced graph without generating code. Inductor itself
is checked on memory attention alone, the module with dynamic shapes, on one graph.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.tracker.engine import Sam2Engine
from tests.scenes import moving_squares

# 22 frames: the 6 spatial memories fill by frame 7 and the 16 pointers by frame 17, so
# the last frames run at the steady-state memory length.
FRAMES = moving_squares(22)
PROMPTS = {1: Prompt(box=(10, 20, 40, 50)), 2: Prompt(points=[(98, 48)], labels=[1])}
# aot_eager runs the very aten ops eager runs (we see 0.0 difference), so any tolerance
# would do; 1e-5 is kept well under the ~1e-4 by which memory and attention modulation
# move the logits with random weights (tests/test_sam2_equivalence.py), so that a compiled
# path that lost the modulation or some memory would still fail.
LOGIT_TOLERANCE = 1e-5
# Inductor fuses and reorders fp32 reductions (softmax, LayerNorm, matmul tiling): ~1e-6
# relative per op; the attention outputs are LayerNorm-ed, O(1). Modulation moves them by
# far more than this (checked below), so the tolerance still sees the weights.
ATTENTION_TOLERANCE = 1e-4

BROKEN_BACKEND = "sam2long_test_broken"


def _broken_backend(gm, example_inputs):
    raise RuntimeError("simulated backend failure")


if BROKEN_BACKEND not in torch._dynamo.list_backends(exclude_tags=()):
    torch._dynamo.register_backend(_broken_backend, name=BROKEN_BACKEND)


@pytest.fixture
def dynamo():
    """Fresh dynamo caches and counters; compiled code dropped afterwards."""
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


def graphs() -> int:
    """FX graphs dynamo has compiled since the last reset (first compiles + recompiles)."""
    return counters["stats"]["unique_graphs"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def assert_same_results(eager: Tracker, compiled: Tracker, re, rc) -> None:
    assert re.object_ids == rc.object_ids
    for oid in re.object_ids:
        assert iou(re.masks[oid], rc.masks[oid]) >= 0.99
        se, sc = re.scores[oid], rc.scores[oid]
        assert sc.iou == pytest.approx(se.iou, abs=LOGIT_TOLERANCE)
        assert sc.object_score_logit == pytest.approx(se.object_score_logit, abs=LOGIT_TOLERANCE)
        assert sc.pathway_id == se.pathway_id
        le = eager._best(eager._objects[oid]).recent[-1].low_res
        lc = compiled._best(compiled._objects[oid]).recent[-1].low_res
        assert (le - lc).abs().max().item() <= LOGIT_TOLERANCE


def test_compiled_tracker_matches_eager_and_stops_compiling(dynamo):
    eager = Tracker(TrackerConfig(num_pathways=3, seed=0))
    compiled = Tracker(
        TrackerConfig(num_pathways=3, seed=0, compile=True, compile_backend="aot_eager")
    )
    engine = compiled.engine
    assert engine._image_encoder.active and engine._memory_attention.active
    # (memory length, batch) of every memory-attention call the compiled function served
    shapes: list[tuple[int, int]] = []
    traced = engine._memory_attention.compiled

    def spy(curr, curr_pos, memory, *rest):
        shapes.append(tuple(memory.shape[:2]))
        return traced(curr, curr_pos, memory, *rest)

    engine._memory_attention.compiled = spy
    seen = []
    for t, frame in enumerate(FRAMES):
        prompts = PROMPTS if t == 0 else None
        re, rc = eager.step(frame, prompts), compiled.step(frame, prompts)
        assert_same_results(eager, compiled, re, rc)
        seen.append(graphs())
    # Still compiled (a failure would have fallen back to eager with a warning).
    assert engine._image_encoder.active and engine._memory_attention.active
    # Image encoder: 1 graph. Memory attention: 1 graph for "one spatial memory" (the
    # first tracked frame: just the prompt; RoPE's key repeat specialises on 1) and one
    # dynamic graph for everything after. Frames 0-2 compile; from then on nothing does,
    # while the memory length keeps growing to its steady state.
    assert seen[0] == 1 and seen[-1] <= 4, seen
    assert len(set(seen[3:])) == 1, seen
    lengths_after = {length for length, _ in shapes[3:]}
    assert len(lengths_after) >= 8, shapes  # many lengths, one graph
    assert shapes[-1] == shapes[-3], shapes  # steady state reached
    assert max(b for _, b in shapes) == 6  # 3 pathways x 2 objects in one call


def test_inductor_memory_attention_matches_eager_across_shapes(dynamo):
    engine = Sam2Engine(TrackerConfig(seed=0, compile=True))  # inductor
    m = engine.model
    gen = torch.Generator().manual_seed(0)
    hw = (engine.image_size // 16) ** 2
    ptr_tokens = m.hidden_dim // m.mem_dim

    def inputs(batch: int, frames: int, pointers: int):
        length = frames * hw + pointers * ptr_tokens
        curr = torch.randn(hw, batch, m.hidden_dim, generator=gen)
        curr_pos = torch.randn(hw, batch, m.hidden_dim, generator=gen)
        memory = torch.randn(length, batch, m.mem_dim, generator=gen)
        memory_pos = torch.randn(length, batch, m.mem_dim, generator=gen)
        weights = 0.95 + 0.1 * torch.rand(batch, length, 1, generator=gen)
        return curr, curr_pos, memory, memory_pos, weights, pointers * ptr_tokens

    with torch.inference_mode():
        # Batch and memory length (frames and pointers) all change: one graph for all.
        for batch, frames, pointers in ((2, 2, 2), (3, 4, 7), (6, 7, 16)):
            args = inputs(batch, frames, pointers)
            got = engine._memory_attention(*args)
            want = engine._memory_attention.eager(*args)
            assert got.shape == want.shape == (hw, batch, m.hidden_dim)
            assert (got - want).abs().max().item() <= ATTENTION_TOLERANCE
            unmodulated = engine._memory_attention.eager(*args[:4], None, args[5])
            assert (unmodulated - want).abs().max().item() > 10 * ATTENTION_TOLERANCE
    assert engine._memory_attention.active
    assert graphs() == 1


def test_unknown_backend_falls_back_to_eager_with_one_warning_each(dynamo, caplog):
    caplog.set_level(logging.WARNING, logger="sam2long_stream.tracker.engine")
    eager = Tracker(TrackerConfig(num_pathways=2, seed=0))
    broken = Tracker(TrackerConfig(num_pathways=2, seed=0, compile=True, compile_backend="nope"))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "image encoder" in warnings[0] and "memory attention" in warnings[1]
    assert all("InvalidBackend" in w and "running it eager" in w for w in warnings)
    for t, frame in enumerate(FRAMES[:3]):
        prompts = PROMPTS if t == 0 else None
        assert_same_results(eager, broken, eager.step(frame, prompts), broken.step(frame, prompts))
    assert len(caplog.records) == 2 and graphs() == 0


def test_backend_failure_at_first_call_falls_back_to_eager_once(dynamo, caplog):
    caplog.set_level(logging.WARNING, logger="sam2long_stream.tracker.engine")
    eager = Tracker(TrackerConfig(num_pathways=2, seed=0))
    broken = Tracker(
        TrackerConfig(num_pathways=2, seed=0, compile=True, compile_backend=BROKEN_BACKEND)
    )
    assert not caplog.records  # torch.compile itself is lazy: nothing failed yet
    for t, frame in enumerate(FRAMES[:4]):
        prompts = PROMPTS if t == 0 else None
        assert_same_results(eager, broken, eager.step(frame, prompts), broken.step(frame, prompts))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # one per module, on its first call; then quiet
    assert "image encoder" in warnings[0] and "memory attention" in warnings[1]
    assert all("simulated backend failure" in w for w in warnings)
    assert not broken.engine._image_encoder.active
    assert not broken.engine._memory_attention.active


def test_compile_backend_must_be_a_name():
    with pytest.raises(ValueError, match="compile_backend"):
        TrackerConfig(compile=True, compile_backend="")
