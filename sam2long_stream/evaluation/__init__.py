"""Evaluation on DAVIS- and SA-V-format datasets: J, F and J&F, as the official toolkits
score them. Used by ``sam2long-stream eval`` and by training.

Modules, one idea each: `metrics` (J, F, the frame rule, summaries; numpy only),
`datasets` (reading videos, splits and predictions, writing PNGs), `scoring` (a video's
scored frames, a prediction folder), `runner` (the tracker over a dataset: `run_eval`,
`score_folder`), `report` (the table, the J-per-frame picture; matplotlib, optional) and
`cli` (the ``eval`` command). Importing this package imports neither torch nor
matplotlib.
"""

from sam2long_stream.evaluation.cli import main
from sam2long_stream.evaluation.datasets import (
    FORMATS,
    VOID_LABEL,
    EvalError,
    Format,
    Video,
    check_prediction_root,
    compose_labels,
    davis_palette,
    list_videos,
    load_video,
    read_binary,
    read_labels,
    read_pred_davis,
    read_pred_sav,
    read_rgb,
    read_split,
    read_video_list,
    select_videos,
    split_file,
    write_binary_png,
    write_palette_png,
)
from sam2long_stream.evaluation.metrics import (
    BOUND_TH,
    ObjectScores,
    boundary_radius,
    db_eval_boundary,
    db_eval_iou,
    dilate_disk,
    disk,
    scored_frames,
    seg2bmap,
    summarize,
)
from sam2long_stream.evaluation.report import format_table, plot_j_per_frame
from sam2long_stream.evaluation.runner import (
    build_engine,
    choose_videos,
    evaluate_video,
    run_eval,
    score_folder,
    tracker_factory,
)
from sam2long_stream.evaluation.scoring import (
    objects_by_frame,
    per_frame_j,
    score_frame,
    score_prediction,
)

__all__ = [
    "BOUND_TH",
    "FORMATS",
    "VOID_LABEL",
    "EvalError",
    "Format",
    "ObjectScores",
    "Video",
    "boundary_radius",
    "build_engine",
    "check_prediction_root",
    "choose_videos",
    "compose_labels",
    "davis_palette",
    "db_eval_boundary",
    "db_eval_iou",
    "dilate_disk",
    "disk",
    "evaluate_video",
    "format_table",
    "list_videos",
    "load_video",
    "main",
    "objects_by_frame",
    "per_frame_j",
    "plot_j_per_frame",
    "read_binary",
    "read_labels",
    "read_pred_davis",
    "read_pred_sav",
    "read_rgb",
    "read_split",
    "read_video_list",
    "run_eval",
    "score_folder",
    "score_frame",
    "score_prediction",
    "scored_frames",
    "seg2bmap",
    "select_videos",
    "split_file",
    "summarize",
    "tracker_factory",
    "write_binary_png",
    "write_palette_png",
]
