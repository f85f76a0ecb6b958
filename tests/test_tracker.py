"""The tracker on the real sam2 model code (random weights, 256 px): API, batching,
bounded memory, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2long_stream import ObjectScore, Prompt, StepResult, Tracker, TrackerConfig
from tests.scenes import moving_squares

FRAMES = moving_squares(12)
H, W = FRAMES[0].shape[:2]


@pytest.fixture(scope="module")
def tracker() -> Tracker:
    return Tracker(TrackerConfig(num_pathways=3, seed=0))


@pytest.fixture
def fresh(tracker: Tracker) -> Tracker:
    tracker.reset()
    return tracker


def count_calls(module: torch.nn.Module) -> list[int]:
    """Batch sizes of every forward call of a module."""
    sizes: list[int] = []

    def hook(_module, args, kwargs, _output):
        x = args[0] if args else next(iter(kwargs.values()))
        sizes.append(x[0].shape[1] if isinstance(x, list) else x.shape[0])  # lists: seq-first

    module.register_forward_hook(hook, with_kwargs=True)
    return sizes


def test_step_returns_masks_and_scores_per_object(fresh: Tracker):
    prompts = {1: Prompt(box=(10, 20, 40, 50)), 2: Prompt(points=[(98, 48)], labels=[1])}
    r = fresh.step(FRAMES[0], prompts=prompts)
    assert isinstance(r, StepResult) and r.frame_index == fresh.frame_index - 1
    for t in range(1, 5):
        r = fresh.step(FRAMES[t])
        assert r.object_ids == [1, 2]
        for oid in (1, 2):
            m = r.masks[oid]
            assert m.dtype == bool and m.shape == (H, W)
            s = r.scores[oid]
            assert isinstance(s, ObjectScore)
            assert s["iou"] == s.iou and set(s.keys()) >= {"iou", "cumulative_score", "pathway_id"}
            assert s.area == int(m.sum()) and s.present == (s.object_score_logit > 0)
            if s.area:
                x0, y0, x1, y1 = s.bbox
                assert m[y0, x0 : x1 + 1].any() and m[y0 : y1 + 1, x0].any()
    assert r.scores[1].cumulative_score < 0  # sum of log IoUs since the prompt


def test_pathways_and_objects_are_batched_into_one_call_per_module(fresh: Tracker):
    m = fresh.model
    attn = count_calls(m.memory_attention)
    dec = count_calls(m.sam_mask_decoder)
    enc = count_calls(m.memory_encoder)
    img = count_calls(m.image_encoder)
    prompts = {i: Prompt(box=(10 + 5 * i, 20, 40 + 5 * i, 50)) for i in range(1, 5)}
    fresh.step(FRAMES[0], prompts=prompts)
    fresh.step(FRAMES[1])  # plain SAM 2: one pathway per object
    attn.clear(), dec.clear(), enc.clear(), img.clear()
    fresh.step(FRAMES[2])  # the pool forks: its P copies are identical, computed once
    fresh.step(FRAMES[3])  # then 4 objects x 3 pathways
    fresh.step(FRAMES[4])
    assert img == [1, 1, 1]  # one image encoding per frame
    assert attn == [4, 12, 12] and dec == [4, 12, 12]  # all pathways of all objects at once
    assert enc == [12, 12, 12]  # one call: every object's P chosen candidates


def test_history_stays_bounded(fresh: Tracker):
    fresh.step(FRAMES[0], prompts={1: Prompt(box=(10, 20, 40, 50))})
    for i in range(40):
        fresh.step(FRAMES[i % len(FRAMES)])
        stats = fresh.memory_stats()
        pathways = stats["objects"][1]["pathways"]
        assert len(pathways) == (1 if i == 0 else 3)
        for pathway in pathways:
            assert pathway["history"] <= 16
            assert pathway["with_features"] <= 6
            assert pathway["recent"] == 1  # lag 0 keeps only the current choice
        # the prompt's entry plus the histories, shared among pathways: counted once
        stored = 1 + sum(p["history"] for p in pathways)
        assert stats["entries"] <= stored
        if i == 1:  # the fork: 3 pathways on the one entry of frame 1, stored once
            assert stats["entries"] == 1 + 1 + 3 < stored
        assert 1 <= stats["entries_with_features"] <= stats["entries"]


def test_reprompt_remove_and_reset(fresh: Tracker):
    fresh.step(FRAMES[0], prompts={1: Prompt(box=(10, 20, 40, 50))})
    fresh.step(FRAMES[1], prompts={2: Prompt(box=(80, 30, 110, 60))})  # a new object later
    r = fresh.step(FRAMES[2], prompts={1: Prompt(points=[(30, 30)], labels=[1])})
    assert r.object_ids == [1, 2] and r.scores[1].cumulative_score == 0.0
    assert fresh.memory_stats()["objects"][1]["conditioning"] == 2
    fresh.remove_object(2)
    assert fresh.step(FRAMES[3]).object_ids == [1]
    with pytest.raises(ValueError, match="unknown object id 2"):
        fresh.remove_object(2)
    fresh.reset()
    assert fresh.step(FRAMES[4]).masks == {}


def test_mask_prompt_and_any_frame_size(fresh: Tracker):
    frame = np.ascontiguousarray(np.pad(FRAMES[0], ((0, 37), (0, 11), (0, 0)))[:, ::-1])
    mask = np.zeros(frame.shape[:2], dtype=bool)
    mask[40:70, 60:100] = True
    r = fresh.step(frame, prompts={4: Prompt(mask=mask)})
    assert r.masks[4].shape == frame.shape[:2]
    assert r.scores[4].iou == 1.0  # SAM 2 takes a mask prompt as the output itself
    inter = np.logical_and(r.masks[4], mask).sum() / np.logical_or(r.masks[4], mask).sum()
    assert inter > 0.9


BAD_FRAMES = [
    (np.zeros((H, W, 3), dtype=np.float32), "uint8"),
    (np.zeros((H, W), dtype=np.uint8), r"\(H, W, 3\)"),
    (np.zeros((H, W, 4), dtype=np.uint8), r"\(H, W, 3\)"),
    ([[0, 0, 0]], "numpy array"),
]


@pytest.mark.parametrize(("frame", "message"), BAD_FRAMES)
def test_bad_frames_raise_value_error(fresh: Tracker, frame, message):
    with pytest.raises(ValueError, match=message):
        fresh.step(frame)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (Prompt(box=(10, 10, 10, 30)), "empty or inverted"),
        (Prompt(box=(50, 10, 20, 30)), "empty or inverted"),
        (Prompt(box=(W + 5, 0, W + 50, 30)), "outside"),
        (Prompt(box=(1, 2, 3)), "4 numbers"),
        (Prompt(box=(0, 0, float("nan"), 5)), "non-finite"),
        (Prompt(points=[(5, 5)], labels=[1, 1]), "as many labels"),
        (Prompt(points=[(5, H + 1)], labels=[1]), "outside"),
        (Prompt(points=[(5, 5)], labels=[2]), "labels must be"),
        (Prompt(points=[(5, 5)]), "together"),
        (Prompt(), "needs a box"),
        (Prompt(mask=np.zeros((3, 3), dtype=bool)), "shape"),
        (Prompt(mask=np.zeros((H, W), dtype=bool)), "empty"),
    ],
)
def test_bad_prompts_raise_value_error(fresh: Tracker, prompt, message):
    with pytest.raises(ValueError, match=message):
        fresh.step(FRAMES[0], prompts={1: prompt})
    assert fresh.object_ids == []  # nothing half-applied


def test_bad_object_ids_and_prompts_without_frame(fresh: Tracker):
    with pytest.raises(ValueError, match="prompts need the frame"):
        fresh.step(None, prompts={1: Prompt(box=(1, 1, 9, 9))})
    with pytest.raises(ValueError, match="ints"):
        fresh.step(FRAMES[0], prompts={"a": Prompt(box=(1, 1, 9, 9))})
    with pytest.raises(ValueError, match=">= 0"):
        fresh.step(FRAMES[0], prompts={-1: Prompt(box=(1, 1, 9, 9))})
    with pytest.raises(ValueError, match="must be a Prompt"):
        fresh.step(FRAMES[0], prompts={1: (1, 1, 9, 9)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "sam3_hiera_t"}, "unknown model"),
        ({"image_size": 250}, "multiple of 64"),
        ({"num_pathways": 0}, "num_pathways"),
        ({"lag": -1}, "lag"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"precision": "fp16"}, "precision"),
        ({"preprocess": "cv2"}, "preprocess"),
        ({"device": "cuda:0"} if not torch.cuda.is_available() else {"device": "tpu"}, "device"),
    ],
)
def test_bad_config_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Tracker(TrackerConfig(**kwargs))


def test_checkpoints_load_and_bad_ones_are_rejected(tracker: Tracker, tmp_path):
    good = tmp_path / "tiny.pt"
    torch.save({"model": tracker.model.state_dict()}, good)
    loaded = Tracker(TrackerConfig(checkpoint=str(good), seed=123))
    for (name, a), b in zip(
        tracker.model.state_dict().items(), loaded.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="checkpoint not found"):
        Tracker(TrackerConfig(checkpoint=str(tmp_path / "missing.pt")))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        Tracker(TrackerConfig(checkpoint=str(junk)))
    with pytest.raises(ValueError, match=r"does not fit model sam2\.1_hiera_s"):
        Tracker(TrackerConfig(model="sam2.1_hiera_s", checkpoint=str(good)))
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'model' state dict"):
        Tracker(TrackerConfig(checkpoint=str(tmp_path / "other.pt")))


def test_model_names_and_random_init_are_deterministic(tracker: Tracker):
    again = Tracker(TrackerConfig(seed=0))
    a = next(iter(tracker.model.state_dict().values()))
    b = next(iter(again.model.state_dict().values()))
    assert torch.equal(a, b)
    other = Tracker(TrackerConfig(model="sam2_hiera_tiny", seed=1))
    assert other.model.image_size == 256


def test_gpu_fast_path_functions_run_on_cpu(tracker: Tracker):
    """bf16 autocast and on-device preprocessing are the GPU defaults; here they run on
    the CPU through the same functions and must stay close to the exact fp32/PIL path."""
    fast = Tracker(TrackerConfig(seed=0, precision="bf16", preprocess="torch"))
    assert fast.engine.bf16 and fast.engine.torch_preprocess
    assert not tracker.engine.bf16 and not tracker.engine.torch_preprocess  # CPU defaults
    tracker.reset()
    prompts = {1: Prompt(box=(10, 20, 40, 50))}
    worst = 1.0
    for t in range(4):
        a = tracker.step(FRAMES[t], prompts=prompts if t == 0 else None).masks[1]
        b = fast.step(FRAMES[t], prompts=prompts if t == 0 else None).masks[1]
        worst = min(worst, np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))
    assert worst > 0.95
    x = fast.engine.preprocess(FRAMES[0])
    y = tracker.engine.preprocess(FRAMES[0])
    assert x.shape == y.shape == (1, 3, 256, 256)
    assert float((x - y).abs().mean()) < 0.05  # torch bicubic vs PIL bicubic


HOST_READS = ("tolist", "item", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


def test_a_tracked_step_queues_all_its_model_work_before_reading_back(fresh: Tracker, monkeypatch):
    """On a GPU every read of a device value to the host waits for the queue to drain.
    A tracked step may read back only after its last model call (the memory encoder):
    once for the selection numbers, once for the output masks."""
    events: list[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def read(self, *args, _name=name, _original=original, **kwargs):
            events.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, read)
    for module in ("image_encoder", "memory_attention", "sam_mask_decoder", "memory_encoder"):
        getattr(fresh.model, module).register_forward_pre_hook(
            lambda *_, _m=module: events.append(_m)
        )
    fresh.step(
        FRAMES[0], prompts={1: Prompt(box=(10, 20, 40, 50)), 2: Prompt(box=(60, 20, 90, 50))}
    )
    for t in range(1, 4):  # prompt frame, fork, then steady state
        events.clear()
        fresh.step(FRAMES[t])
        last_model_call = max(i for i, e in enumerate(events) if e == "memory_encoder")
        reads = [e for e in events[: last_model_call + 1] if e in HOST_READS]
        assert reads == [], (t, events)
        assert events.count("memory_encoder") == 1
        assert [e for e in events if e in HOST_READS] == ["tolist", "cpu", "numpy"], events
