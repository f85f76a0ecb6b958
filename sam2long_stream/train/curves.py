"""The training curves as one PNG: loss per step, and validation J&F per step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_curves(
    loss: Sequence[tuple[int, float]],
    val: Sequence[tuple[int, Mapping[str, float]]],
    path: Path,
) -> Path | None:
    """Write the curves; None (and no file) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    if loss:
        steps, values = zip(*loss, strict=True)
        ax_loss.plot(steps, values, lw=1)
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="loss (sam2's, log scale)", title="training loss")
    ax_loss.grid(alpha=0.3)
    keys = sorted({k for _, scores in val for k in scores})
    for key in keys:
        pts = [(s, 100 * scores[key]) for s, scores in val if key in scores]
        ax_val.plot(*zip(*pts, strict=True), marker="o", label=key)
    ax_val.set(xlabel="step", ylabel="J&F (%)", title="validation (--val folder)", ylim=(0, 100))
    ax_val.grid(alpha=0.3)
    if keys:
        ax_val.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
