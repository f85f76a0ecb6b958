"""The whole pool on a scripted scene where greedy selection (SAM 2) fails: the real
Tracker, driven by an engine double whose candidates depend on each pathway's memory."""

from __future__ import annotations

import numpy as np
import pytest

from sam2long_stream import Prompt, Tracker, TrackerConfig
from tests.engine_double import CORRECT, DISTRACTOR, ScriptedEngine, template

H, W = 24, 32
FRAME = np.zeros((H, W, 3), dtype=np.uint8)
NUM_FRAMES = 8


def expected_mask(which: int) -> np.ndarray:
    import torch

    full = torch.nn.functional.interpolate(
        template(which)[None, None], size=(H, W), mode="bilinear", align_corners=False
    )
    return (full[0, 0] > 0).numpy()


def run(num_pathways: int, lag: int = 0, frames: int = NUM_FRAMES):
    engine = ScriptedEngine()
    tracker = Tracker(TrackerConfig(num_pathways=num_pathways, lag=lag), engine=engine)
    out = [tracker.step(FRAME, prompts={7: Prompt(box=(2, 2, 20, 20))})]
    out += [tracker.step(FRAME) for _ in range(frames - 1)]
    return tracker, engine, out


def which(mask: np.ndarray) -> int:
    for k in (CORRECT, DISTRACTOR):
        if np.array_equal(mask, expected_mask(k)):
            return k
    return -1


def test_greedy_sam2_commits_to_the_distractor():
    _, _, out = run(num_pathways=1)
    assert [which(r.masks[7]) for r in out] == [CORRECT, CORRECT] + [DISTRACTOR] * 6


def test_pool_recovers_from_the_ambiguous_frame():
    _, engine, out = run(num_pathways=3)
    # live output: the ambiguous frame still shows the distractor, then the pool's best
    # pathway is the one that kept the correct mask
    assert [which(r.masks[7]) for r in out] == [CORRECT, CORRECT, DISTRACTOR] + [CORRECT] * 5
    switched = [r.scores[7].pathway_switched for r in out]
    assert switched == [False, False, False, True, False, False, False, False]
    # pool width: 1 pathway on the prompt frame and the next, P from then on
    assert [len(v) for v in engine.views_per_frame] == [1, 1, 3, 3, 3, 3, 3]
    s = out[-1].scores[7]
    assert s.iou == pytest.approx(0.95) and s.present
    # the first frame after the prompt counts 0, as in the reference (the pool forks there)
    assert s.cumulative_score == pytest.approx(np.log(0.8 + 1e-5) + 5 * np.log(0.95 + 1e-5))


def test_fixed_lag_publishes_the_recovered_history():
    tracker, _, out = run(num_pathways=3, lag=2)
    assert out[:2] == [None, None]
    lagged = out[2:] + tracker.flush()
    assert [r.frame_index for r in lagged] == list(range(NUM_FRAMES))
    # frame 2's mask comes from the best pathway at frame 4: the correct one
    assert all(which(r.masks[7]) == CORRECT for r in lagged)
    assert tracker.latest.frame_index == NUM_FRAMES - 1
    assert tracker.flush() == []  # nothing is returned twice


def test_lag_longer_than_stream_equals_offline_best_history():
    tracker, _, out = run(num_pathways=3, lag=100)
    assert all(r is None for r in out)
    offline = tracker.flush()
    assert [r.frame_index for r in offline] == list(range(NUM_FRAMES))
    assert [which(r.masks[7]) for r in offline] == [CORRECT] * NUM_FRAMES
    # one pathway, the best at the end, speaks for every frame
    assert len({r.scores[7].pathway_id for r in offline}) == 1
    assert offline[-1].scores[7].pathway_id == tracker.latest.scores[7].pathway_id


def test_flush_without_lag_returns_nothing_twice():
    tracker, _, out = run(num_pathways=3, lag=0)
    assert all(r is not None for r in out)
    assert tracker.flush() == []


def test_lag_with_single_pathway_matches_live_output():
    _, _, live = run(num_pathways=1, lag=0)
    tracker, _, out = run(num_pathways=1, lag=3)
    lagged = [r for r in out if r is not None] + tracker.flush()
    assert [r.frame_index for r in lagged] == list(range(NUM_FRAMES))
    for a, b in zip(live, lagged, strict=True):
        assert np.array_equal(a.masks[7], b.masks[7])


def test_reprompt_collapses_pool_to_best_and_restarts_score():
    engine = ScriptedEngine()
    tracker = Tracker(TrackerConfig(num_pathways=3), engine=engine)
    tracker.step(FRAME, prompts={7: Prompt(box=(2, 2, 20, 20))})
    for _ in range(5):
        r = tracker.step(FRAME)
    best_id = r.scores[7].pathway_id
    r = tracker.step(FRAME, prompts={7: Prompt(box=(2, 2, 20, 20))})
    assert r.scores[7].cumulative_score == 0.0 and r.scores[7].pathway_id == best_id
    r = tracker.step(FRAME)
    views = engine.views_per_frame[-1]
    assert len(views) == 1  # plain SAM 2 right after a prompt
    assert [tp for tp, _ in views[0].frames][:2] == [0, 0]  # both prompts are memory


def test_pool_width_changes_at_run_time():
    engine = ScriptedEngine()
    tracker = Tracker(TrackerConfig(num_pathways=2), engine=engine)
    tracker.step(FRAME, prompts={7: Prompt(box=(2, 2, 20, 20))})
    for _ in range(3):
        tracker.step(FRAME)
    tracker.set_num_pathways(16)  # more than 3x the pool: grows from copies
    tracker.step(FRAME)
    tracker.step(FRAME)
    assert [len(v) for v in engine.views_per_frame[-2:]] == [2, 16]
    tracker.set_num_pathways(1)
    r = tracker.step(FRAME)
    tracker.step(FRAME)
    assert len(engine.views_per_frame[-1]) == 1
    assert which(r.masks[7]) == CORRECT  # shrinking keeps the best
    with pytest.raises(ValueError, match="num_pathways"):
        tracker.set_num_pathways(0)


def test_failed_step_changes_nothing():
    class Failing(ScriptedEngine):
        fail_on: int | None = None

        def propose(self, features, views):
            if features == self.fail_on:
                raise RuntimeError("CUDA out of memory (injected)")
            return super().propose(features, views)

    engine = Failing()
    tracker = Tracker(TrackerConfig(num_pathways=3), engine=engine)
    box = Prompt(box=(2, 2, 20, 20))
    tracker.step(FRAME, prompts={7: box, 9: box})
    for _ in range(3):
        before = tracker.step(FRAME)
    pools = [(p["id"], p["score"]) for p in tracker.memory_stats()["objects"][7]["pathways"]]
    engine.fail_on = engine.frame + 1
    with pytest.raises(RuntimeError, match="injected"):  # 9 is tracked: propose fails
        tracker.step(FRAME, prompts={8: box, 7: Prompt(box=(1, 1, 9, 9))})
    assert tracker.object_ids == [7, 9] and tracker.frame_index == before.frame_index + 1
    stats = tracker.memory_stats()["objects"][7]
    assert [(p["id"], p["score"]) for p in stats["pathways"]] == pools  # not re-prompted
    assert stats["conditioning"] == 1
    after = tracker.step(FRAME)
    assert after.frame_index == before.frame_index + 1 and after.object_ids == [7, 9]
    assert after.scores[7].cumulative_score < 0  # still the old pool, no restart
