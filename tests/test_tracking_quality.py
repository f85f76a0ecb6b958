"""The bundled model tracks: a held-out synthetic scene played by the real RTSP test
camera, the node with the bundled sam2long_mini weights and a box prompt, ZeroMQ, and
the subscriber SDK; the masks received are scored against the scene's exact ground
truth (mean IoU over the run). And it tracks a scene of another generator."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from sam2long_stream.evaluation import db_eval_iou
from sam2long_stream.models import BUNDLED_MODEL, bundled_checkpoint, resolve_weights
from sam2long_stream.scenes import HELD_OUT_SEED_START, make_scene
from sam2long_stream.scenes.davis import write_jpeg_frames
from sam2long_stream.testing import RtspCamera

FPS = 10
SEED = HELD_OUT_SEED_START + 90_000  # a held-out scene: training draws seeds below the start


@pytest.mark.rtsp
def test_bundled_model_tracks_an_rtsp_scene_end_to_end(
    rtsp_camera_factory: Callable[..., RtspCamera], tmp_path
) -> None:
    from sam2long_stream import Prompt, TrackerConfig
    from sam2long_stream.node import Node, NodeConfig
    from sam2long_stream.transport.subscriber import Subscriber

    assert bundled_checkpoint() is not None, "the bundled model file is missing"
    checkpoint, image_size = resolve_weights(BUNDLED_MODEL, None, None)  # what `run` uses
    scene = make_scene(SEED, 320, 240, 60)
    camera = rtsp_camera_factory(
        width=320, height=240, fps=FPS, frames=str(write_jpeg_frames(scene, tmp_path / "f"))
    )
    prompts = {obj: Prompt(box=box) for obj, box in scene.boxes(0).items()}
    config = NodeConfig.one_stream(
        source=camera.url,
        tracker=TrackerConfig(model=BUNDLED_MODEL, checkpoint=checkpoint, image_size=image_size),
        prompts=prompts,
        policy="all",  # every frame, in order: the camera's frame 0 is the node's first
        pub="tcp://127.0.0.1:*",
        control=None,
        stream_id="scene",
    )
    node = Node(config)
    scores: dict[int, list[float]] = {obj: [] for obj in prompts}
    try:
        with Subscriber(node.endpoint, topics=("masks/",)) as sub:
            node.start()
            deadline = time.monotonic() + 600
            count = 0
            while count < scene.num_frames and time.monotonic() < deadline:
                msg = sub.recv(timeout_s=1.0)
                if msg is None:
                    continue
                index = 0 if msg.pts is None else round(msg.pts * FPS) % scene.num_frames
                _, truth = scene.frame(index)
                got = msg.masks
                for obj in prompts:
                    empty = np.zeros_like(truth[obj])
                    scores[obj].append(db_eval_iou(truth[obj], got.get(obj, empty)))
                count += 1
    finally:
        node.stop()
        node.join(30)
        node.close()
    assert count >= scene.num_frames, f"only {count} masks messages arrived"
    mean = float(np.mean([np.mean(s) for s in scores.values()]))
    # The goal is 0.8; the bundled model measured 0.70 here at its 192 px (0.62
    # at 128, docs/training.md). This bound guards that it tracks: holding the frame-0
    # mask scores 0.07, empty 0.
    print(f"end-to-end mean IoU {mean:.3f}")
    assert mean >= 0.6, {o: round(float(np.mean(s)), 3) for o, s in scores.items()}


@pytest.mark.parametrize("seed", [3, 11])
def test_bundled_model_tracks_another_generators_scene(seed: int) -> None:
    """Beyond the scenes it trained on: the moving-shapes source (flat-coloured disc,
    square and triangle whose paths cross and hide one another), never seen in
    training, boxed on frame 0 and tracked by the tree (P=3) as `run` would."""
    from sam2long_stream import Prompt, Tracker, TrackerConfig
    from sam2long_stream.sources.synthetic import moving_shapes_frame, moving_shapes_masks

    checkpoint, image_size = resolve_weights(BUNDLED_MODEL, None, None)
    tracker = Tracker(
        TrackerConfig(model=BUNDLED_MODEL, checkpoint=checkpoint, image_size=image_size)
    )
    width, height = 256, 192
    rgb, boxes = moving_shapes_frame(0, width, height, seed)
    tracker.step(rgb, prompts={obj: Prompt(box=box) for obj, box in boxes.items()})
    scores: dict[int, list[float]] = {obj: [] for obj in boxes}
    for t in range(1, 48):
        masks = tracker.step(moving_shapes_frame(t, width, height, seed)[0]).masks
        truth = moving_shapes_masks(t, width, height, seed)
        for obj in scores:
            scores[obj].append(db_eval_iou(truth[obj], masks.get(obj, np.zeros_like(truth[obj]))))
    per_object = {o: round(float(np.mean(s)), 3) for o, s in scores.items()}
    print(f"moving shapes seed {seed}: mean IoU per object {per_object}")
    # Measured 0.9+ per object (docs/training.md, tools/shapes_set.py for the J&F);
    # a mask that stays on the frame-0 box or jumps to another shape scores far lower.
    assert min(per_object.values()) >= 0.8, per_object
