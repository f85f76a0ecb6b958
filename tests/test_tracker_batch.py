"""Many streams, one model: `step_many` on the real sam2 model code (random weights,
128 px) gives every stream what its own `Tracker.step` gives, with each model module
called once per tick for all streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.sources.synthetic import moving_shapes_frame
from sam2long_stream.tracker import step_many
from sam2long_stream.tracker.engine import Sam2Engine
from tests.engine_double import ScriptedEngine
from tests.scenes import moving_squares

NUM_TICKS = 6
LOGIT_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def engine() -> Sam2Engine:
    return Sam2Engine(TrackerConfig(seed=0, image_size=128))


def shapes(n: int, width: int, height: int, seed: int) -> tuple[list[np.ndarray], dict]:
    frames = [moving_shapes_frame(i, width, height, seed)[0] for i in range(n)]
    return frames, moving_shapes_frame(0, width, height, seed)[1]


def box_at(boxes: dict, oid: int) -> Prompt:
    x0, y0, x1, y1 = boxes[oid]
    return Prompt(box=(x0, y0, x1 - 1, y1 - 1))


def streams() -> list[dict]:
    """Three cameras: different scenes, sizes, object counts, prompts on different frames."""
    a_frames, a_boxes = shapes(NUM_TICKS, 160, 120, seed=0)
    b_frames = moving_squares(NUM_TICKS)  # 96 x 128
    c_frames, c_boxes = shapes(NUM_TICKS, 200, 144, seed=3)
    a3 = moving_shapes_frame(3, 160, 120, 0)[1]
    return [
        {  # two objects from the start, a third one prompted mid-way, one re-prompted
            "config": TrackerConfig(num_pathways=3),
            "frames": a_frames,
            "prompts": {
                0: {1: box_at(a_boxes, 1), 2: box_at(a_boxes, 2)},
                3: {3: box_at(a3, 3), 1: box_at(a3, 1)},
            },
        },
        {  # no object for two frames, then one; fixed lag 1
            "config": TrackerConfig(num_pathways=3, lag=1),
            "frames": b_frames,
            "prompts": {2: {5: Prompt(box=(14, 22, 45, 52))}},
        },
        {  # a point prompt, a narrower pool; the stream leaves the batch after tick 4
            "config": TrackerConfig(num_pathways=2),
            "frames": c_frames,
            "prompts": {0: {1: Prompt(points=[_centre(c_boxes[2])], labels=[1])}},
            "last_tick": 4,
        },
    ]


def _centre(box) -> tuple[float, float]:
    x0, y0, x1, y1 = box
    return ((x0 + x1) / 2, (y0 + y1) / 2)


def live_logits(tracker: Tracker) -> dict[int, torch.Tensor]:
    """Low-res logits of each object's best pathway on the last frame."""
    return {
        oid: tracker._best(obj).recent[-1].low_res.clone() for oid, obj in tracker._objects.items()
    }


def same_stats(a: dict, b: dict) -> bool:
    """Equal memory stats, pathway scores (sums of log IoUs) to float tolerance."""
    scores_a = [p.pop("score") for o in a["objects"].values() for p in o["pathways"]]
    scores_b = [p.pop("score") for o in b["objects"].values() for p in o["pathways"]]
    return a == b and scores_a == pytest.approx(scores_b, abs=1e-4)


def test_step_many_equals_one_tracker_per_stream(engine: Sam2Engine):
    specs = streams()
    alone = [Tracker(s["config"], engine=engine) for s in specs]
    together = [Tracker(s["config"], engine=engine) for s in specs]
    compared = 0
    for t in range(NUM_TICKS):
        live = [k for k, s in enumerate(specs) if t <= s.get("last_tick", NUM_TICKS)]
        frames = [specs[k]["frames"][t] for k in live]
        prompts = [specs[k]["prompts"].get(t) for k in live]
        if t == 5:  # a stream drops an object
            alone[0].remove_object(2)
            together[0].remove_object(2)
        expected, expected_logits = [], []
        for k, frame, p in zip(live, frames, prompts, strict=True):
            expected.append(alone[k].step(frame, prompts=p))
            expected_logits.append(live_logits(alone[k]))
        got = step_many([together[k] for k in live], frames, prompts)
        assert len(got) == len(live)
        for i, k in enumerate(live):
            a, b = expected[i], got[i]
            assert (a is None) == (b is None), (t, k)
            assert together[k].frame_index == alone[k].frame_index
            assert same_stats(together[k].memory_stats(), alone[k].memory_stats())
            logits = live_logits(together[k])
            assert logits.keys() == expected_logits[i].keys()
            for oid, x in logits.items():
                gap = float((x - expected_logits[i][oid]).abs().max())
                assert gap < LOGIT_TOLERANCE, (t, k, oid, gap)
            if a is None:
                continue
            assert (b.frame_index, b.height, b.width) == (a.frame_index, a.height, a.width)
            assert b.object_ids == a.object_ids
            for oid in a.object_ids:
                assert np.array_equal(b.masks[oid], a.masks[oid]), (t, k, oid)
                sa, sb = a.scores[oid], b.scores[oid]
                assert sb.pathway_id == sa.pathway_id and sb.area == sa.area
                assert sb.iou == pytest.approx(sa.iou, abs=1e-5)
                assert sb.cumulative_score == pytest.approx(sa.cumulative_score, abs=1e-4)
                compared += 1
    assert together[1].flush()[0].frame_index == NUM_TICKS - 1  # lag 1: the last frame
    # not vacuous: every stream tracked something, masks neither empty nor full
    assert compared >= 20
    assert all(together[k].object_ids for k in range(3))
    assert together[0].object_ids == [1, 3]
    stats = together[0].memory_stats()
    assert [o["pool_size"] for o in stats["objects"].values()] == [3, 3]
    assert stats["objects"][1]["conditioning"] == 2
    areas = [m.mean() for m in got[0].masks.values()]
    assert all(0.0 < a < 1.0 for a in areas)


def _count(module: torch.nn.Module, sizes: list[int]):
    def hook(_module, args, kwargs, _output):
        x = args[0] if args else next(iter(kwargs.values()))
        sizes.append(x[0].shape[1] if isinstance(x, list) else x.shape[0])  # lists: seq-first

    return module.register_forward_hook(hook, with_kwargs=True)


def test_one_call_per_module_per_tick_for_all_streams(engine: Sam2Engine):
    sizes = [(160, 120), (96, 128), (200, 144)]
    scenes = [shapes(5, w, h, seed) for seed, (w, h) in enumerate(sizes)]
    trackers = [Tracker(TrackerConfig(num_pathways=3), engine=engine) for _ in scenes]
    counts: dict[str, list[int]] = {}
    names = ("image_encoder", "memory_attention", "sam_mask_decoder", "memory_encoder")
    hooks = [_count(getattr(engine.model, n), counts.setdefault(n, [])) for n in names]
    try:
        objects = [1, 2, 1]  # different object counts per stream
        prompts = [
            {oid: box_at(boxes, oid) for oid in range(1, n + 1)}
            for (_, boxes), n in zip(scenes, objects, strict=True)
        ]
        step_many(trackers, [f[0] for f, _ in scenes], prompts)
        assert counts["image_encoder"] == [3]  # one image encoding for the three frames
        for c in counts.values():
            c.clear()
        for t in range(1, 5):
            step_many(trackers, [f[t] for f, _ in scenes])
        assert counts["image_encoder"] == [3, 3, 3, 3]
        # 4 objects: one pathway each after the prompt and on the fork (its P copies
        # are identical, computed once), then 3 each; 1 then P chosen per object
        assert counts["memory_attention"] == [4, 4, 12, 12]
        assert counts["sam_mask_decoder"] == [4, 4, 12, 12]
        assert counts["memory_encoder"] == [4, 12, 12, 12]
    finally:
        for h in hooks:
            h.remove()


def test_streams_without_objects_cost_no_encoding(engine: Sam2Engine):
    frames = moving_squares(2)
    busy, idle = Tracker(engine=engine), Tracker(engine=engine)
    sizes: list[int] = []
    hook = _count(engine.model.image_encoder, sizes)
    try:
        step_many([busy, idle], [frames[0], frames[0]], [{1: Prompt(box=(10, 20, 40, 50))}, None])
        r = step_many([busy, idle], [frames[1], frames[1]])
    finally:
        hook.remove()
    assert sizes == [1, 1]
    assert r[0].object_ids == [1] and r[1].masks == {} and r[1].frame_index == 1


def test_bad_batches_raise_value_error_and_change_nothing():
    shared = ScriptedEngine()
    a, b = Tracker(engine=shared), Tracker(engine=shared)
    frame = np.zeros((24, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="share one engine"):
        step_many([a, Tracker(engine=ScriptedEngine())], [frame, frame])
    with pytest.raises(ValueError, match="2 trackers, 1 frames"):
        step_many([a, b], [frame])
    with pytest.raises(ValueError, match="2 trackers, 2 frames, 3 prompts"):
        step_many([a, b], [frame, frame], [None, None, None])
    with pytest.raises(ValueError, match="same tracker twice"):
        step_many([a, a], [frame, frame])
    with pytest.raises(ValueError, match="not a Tracker"):
        step_many([a, "cam1"], [frame, frame])
    box = Prompt(box=(2, 2, 20, 20))
    with pytest.raises(ValueError, match=r"stream 1: .*outside"):
        step_many([a, b], [frame, frame], [{1: box}, {2: Prompt(box=(40, 2, 50, 9))}])
    with pytest.raises(ValueError, match="stream 0: frame must be uint8"):
        step_many([a, b], [frame.astype(np.float32), frame])
    assert a.object_ids == b.object_ids == [] and a.frame_index == b.frame_index == 0
    assert step_many([], []) == []


def test_failed_batch_changes_no_tracker():
    class Failing(ScriptedEngine):
        fail = False

        def propose(self, features, views):
            if self.fail:
                raise RuntimeError("CUDA out of memory (injected)")
            return super().propose(features, views)

    engine = Failing()
    trackers = [Tracker(TrackerConfig(num_pathways=3), engine=engine) for _ in range(2)]
    frame = np.zeros((24, 32, 3), dtype=np.uint8)
    box = Prompt(box=(2, 2, 20, 20))
    step_many(trackers, [frame, frame], [{7: box}, {1: box}])
    for _ in range(3):
        step_many(trackers, [frame, frame])
    before = [tr.memory_stats() for tr in trackers]
    engine.fail = True
    with pytest.raises(RuntimeError, match="injected"):
        step_many(trackers, [frame, frame], [{8: box}, {1: Prompt(box=(1, 1, 9, 9))}])
    assert [tr.memory_stats() for tr in trackers] == before  # no prompt, no pool changed
    assert [tr.object_ids for tr in trackers] == [[7], [1]]
    assert [tr.frame_index for tr in trackers] == [4, 4]
    engine.fail = False
    after = step_many(trackers, [frame, frame])
    assert [r.frame_index for r in after] == [4, 4]
    assert after[1].scores[1].cumulative_score < 0  # the old pool, not re-prompted


def test_out_of_memory_helpers():
    from sam2long_stream.tracker import is_out_of_memory, release_cached_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("frame must be uint8"))
    release_cached_memory()  # no CUDA here: only a garbage collection, no error
