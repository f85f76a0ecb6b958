"""The tree's gain on a synthetic set: J&F with P pathways minus J&F with one (plain SAM
2), per video and per event kind, from an `eval` report and the set's events.json.

An object counts towards an event kind when the scene put it through that event
(occlusion, distractor, exit); its J&F is over the whole video, since what the tree
changes is whether the object is kept *after* the hard moment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sam2long_stream.scenes.davis import EVENTS_FILE
from sam2long_stream.scenes.scene import EVENT_KINDS


def _objects(report: Mapping[str, Any], key: str) -> dict[tuple[str, int], float]:
    out = {}
    for video, v in report["results"][key]["videos"].items():
        for obj, scores in v["objects"].items():
            if scores["J&F"] is not None:
                out[(video, int(obj))] = float(scores["J&F"])
    return out


def gain_table(
    report: Mapping[str, Any], events: Mapping[str, list[Mapping[str, Any]]], base: str, tree: str
) -> dict[str, Any]:
    """{"videos": {video: (base, tree, gain)}, "kinds": {kind: (base, tree, gain, n)},
    "all": (base, tree, gain, n)}, J&F in [0, 1], for result keys `base` and `tree`."""
    a, b = _objects(report, base), _objects(report, tree)
    common = sorted(a.keys() & b.keys())

    def mean(keys: list[tuple[str, int]]) -> tuple[float, float, float, int] | None:
        if not keys:
            return None
        ma = sum(a[k] for k in keys) / len(keys)
        mb = sum(b[k] for k in keys) / len(keys)
        return ma, mb, mb - ma, len(keys)

    kinds = {}
    for kind in EVENT_KINDS:
        hit = {(v, int(e["object"])) for v, evs in events.items() for e in evs if e["kind"] == kind}
        kinds[kind] = mean([k for k in common if k in hit])
    calm = {(v, int(e["object"])) for v, evs in events.items() for e in evs}
    kinds["none"] = mean([k for k in common if k not in calm])
    names = dict.fromkeys(video for video, _ in common)
    videos = {v: mean([k for k in common if k[0] == v]) for v in names}
    return {"videos": videos, "kinds": kinds, "all": mean(common)}


def format_gain(table: Mapping[str, Any], base: str, tree: str) -> str:
    """A Markdown table: per event kind, then per video."""

    def row(name: str, v: tuple | None) -> str:
        if v is None:
            return f"| {name} | - | - | - | 0 |"
        return f"| {name} | {100 * v[0]:.1f} | {100 * v[1]:.1f} | {100 * v[2]:+.1f} | {v[3]} |"

    head = f"| | J&F {base} | J&F {tree} | gain (points) | objects |\n|---|---|---|---|---|"
    lines = [head, row("all objects", table["all"])]
    lines += [row(f"event: {k}", v) for k, v in table["kinds"].items()]
    lines += [row(v, s) for v, s in table["videos"].items()]
    return "\n".join(lines)


def load_events(data: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The events of a set written by `sam2long-stream scenes`."""
    path = Path(data) / EVENTS_FILE
    try:
        return json.loads(path.read_text())["events"]
    except FileNotFoundError:
        raise ValueError(f"{path} not found: is {data} a set written by `scenes`?") from None
