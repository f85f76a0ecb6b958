"""Paired per-object J&F comparisons on synthetic sets, from `eval` reports and the
sets' events.json: the tree's gain (P pathways against one, or against SAM 2 itself) and
one set of weights against another (same P), per event kind and per video.

Every object is its own pair, so the figures that decide are the mean difference, its
standard error over objects, and how many objects got better or worse: sets of a few
dozen objects differ by a point or two by chance (docs/training.md).

An object counts towards an event kind when the scene put it through that event
(occlusion, distractor, exit); its J&F is over the whole video, since what the tree
changes is whether the object is kept *after* the hard moment.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2long_stream.scenes.davis import EVENTS_FILE
from sam2long_stream.scenes.scene import EVENT_KINDS

ObjectKey = tuple[str, int]  # (video, object id)
MARGIN = 0.01  # a J&F change of at most 1 point counts as neither better nor worse


@dataclass(frozen=True)
class Paired:
    """Means over n objects of a baseline and a new J&F (in [0, 1]), the mean of their
    per-object difference, its standard error, and the objects that got better/worse by
    more than the comparison's margin."""

    base: float
    new: float
    gain: float
    se: float
    better: int
    worse: int
    n: int


def object_scores(report: Mapping[str, Any], key: str) -> dict[ObjectKey, float]:
    """Per-object J&F of one result of an `eval` report (key "3", "1-online", ...)."""
    out = {}
    for video, v in report["results"][key]["videos"].items():
        for obj, scores in v["objects"].items():
            if scores["J&F"] is not None:
                out[(video, int(obj))] = float(scores["J&F"])
    return out


def pooled(reports: Iterable[Mapping[str, Any]], key: str) -> dict[ObjectKey, float]:
    """`object_scores` of several reports (one per set) together; ValueError when one
    lacks the result or two hold the same video (the same set twice)."""
    out: dict[ObjectKey, float] = {}
    for report in reports:
        if key not in report["results"]:
            found = ", ".join(report["results"])
            raise ValueError(f"the report of {report['data']} has no result {key!r} ({found})")
        scores = object_scores(report, key)
        twice = sorted({v for v, _ in scores} & {v for v, _ in out})
        if twice:
            raise ValueError(f"video {twice[0]} is in two reports (the same set twice?)")
        out.update(scores)
    return out


def pooled_events(reports: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The events of the sets of several reports (`report["data"]`), together."""
    out: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        out.update(load_events(report["data"]))
    return out


def paired(
    a: Mapping[ObjectKey, float],
    b: Mapping[ObjectKey, float],
    keys: Iterable[ObjectKey],
    margin: float = MARGIN,
) -> Paired | None:
    """The comparison of `b` against `a` over `keys` (None when there are none)."""
    keys = list(keys)
    if not keys:
        return None
    n = len(keys)
    diffs = [b[k] - a[k] for k in keys]
    gain = sum(diffs) / n
    var = sum((d - gain) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    return Paired(
        base=sum(a[k] for k in keys) / n,
        new=sum(b[k] for k in keys) / n,
        gain=gain,
        se=math.sqrt(var / n),
        better=sum(d > margin for d in diffs),
        worse=sum(d < -margin for d in diffs),
        n=n,
    )


def compare_table(
    a: Mapping[ObjectKey, float],
    b: Mapping[ObjectKey, float],
    events: Mapping[str, list[Mapping[str, Any]]],
    margin: float = MARGIN,
) -> dict[str, Any]:
    """{"videos": {video: Paired}, "kinds": {kind: Paired | None}, "all": Paired,
    "margin": margin} over the objects both sides scored."""
    common = sorted(a.keys() & b.keys())
    kinds = {}
    for kind in EVENT_KINDS:
        hit = {(v, int(e["object"])) for v, evs in events.items() for e in evs if e["kind"] == kind}
        kinds[kind] = paired(a, b, [k for k in common if k in hit], margin)
    calm = {(v, int(e["object"])) for v, evs in events.items() for e in evs}
    kinds["none"] = paired(a, b, [k for k in common if k not in calm], margin)
    names = dict.fromkeys(video for video, _ in common)
    videos = {v: paired(a, b, [k for k in common if k[0] == v], margin) for v in names}
    return {"videos": videos, "kinds": kinds, "all": paired(a, b, common, margin), "margin": margin}


def compare_reports(
    base: list[Mapping[str, Any]],
    base_key: str,
    new: list[Mapping[str, Any]],
    new_key: str,
    margin: float = MARGIN,
) -> dict[str, Any]:
    """`compare_table` of result `new_key` of the reports `new` against result `base_key`
    of `base` (one report per set, the same sets), events from the sets' folders."""
    a, b = pooled(base, base_key), pooled(new, new_key)
    return compare_table(a, b, pooled_events(base), margin)


def gain_table(
    report: Mapping[str, Any], events: Mapping[str, list[Mapping[str, Any]]], base: str, tree: str
) -> dict[str, Any]:
    """The tree's gain: `compare_table` of result `tree` against result `base` of one
    report."""
    return compare_table(object_scores(report, base), object_scores(report, tree), events)


def format_gain(table: Mapping[str, Any], base: str, tree: str, videos: bool = True) -> str:
    """A Markdown table: over all objects, per event kind, then (with `videos`) per video."""

    def row(name: str, v: Paired | None) -> str:
        if v is None:
            return f"| {name} | - | - | - | - | 0 |"
        return (
            f"| {name} | {100 * v.base:.1f} | {100 * v.new:.1f} | {100 * v.gain:+.1f} "
            f"(s.e. {100 * v.se:.1f}) | {v.better} / {v.worse} | {v.n} |"
        )

    head = (
        f"| | J&F {base} | J&F {tree} | difference (points) | objects better / worse "
        f"(by > {100 * table['margin']:g} points) | objects |\n|---|---|---|---|---|---|"
    )
    lines = [head, row("all objects", table["all"])]
    lines += [row(f"event: {k}", v) for k, v in table["kinds"].items()]
    if videos:
        lines += [row(v, s) for v, s in table["videos"].items()]
    return "\n".join(lines)


def add_comparison_flags(parser: argparse.ArgumentParser) -> None:
    """--mode and --margin, for the tools that print these tables (`args.margin` comes
    back as a fraction, as `compare_reports` takes it)."""
    parser.add_argument("--mode", choices=("offline", "online"), default=None)
    parser.add_argument(
        "--margin",
        type=lambda text: float(text) / 100,
        default=MARGIN,
        help=f"J&F points an object must move by to count as better or worse ({100 * MARGIN:g})",
    )


def load_events(data: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The events of a set written by `sam2long-stream scenes`."""
    path = Path(data) / EVENTS_FILE
    try:
        return json.loads(path.read_text())["events"]
    except FileNotFoundError:
        raise ValueError(f"{path} not found: is {data} a set written by `scenes`?") from None
