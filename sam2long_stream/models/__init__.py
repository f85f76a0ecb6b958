"""Model configurations: sam2's own (sam2.1_hiera_t, ...) and the project's small one,
`sam2long_mini`, whose trained weights ship in this folder and are the default model.

Every model is sam2's `SAM2Base` built from a hydra-style config; this module only says
where a config lives and which weights and image size go with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sam2long_stream.limits import shorten

_HERE = Path(__file__).resolve().parent

BUNDLED_MODEL = "sam2long_mini"
# The project's own configs: name -> (config file, trained weights, native image size).
OWN_MODELS: dict[str, tuple[Path, Path, int]] = {
    "sam2long_mini": (_HERE / "sam2long_mini.yaml", _HERE / "sam2long_mini.pt", 192),
}


def bundled_checkpoint(model: str = BUNDLED_MODEL) -> Path | None:
    """The shipped weights of one of the project's models (None for sam2's own models,
    or when the file is missing from this checkout)."""
    own = OWN_MODELS.get(model)
    return own[1] if own is not None and own[1].is_file() else None


def native_image_size(model: str) -> int | None:
    """The image size a project model was trained at (None: sam2's models, 1024)."""
    own = OWN_MODELS.get(model)
    return own[2] if own is not None else None


def default_image_size(model: str, has_weights: bool) -> int:
    """The input size a model runs (or trains) at when none is asked for: a project
    model's own; sam2's at 1024 with weights, 256 from random init (1024 is slow)."""
    return native_image_size(model) or (1024 if has_weights else 256)


IMAGE_SIZE_HELP = (
    f"multiple of 64 (default: the model's own: {OWN_MODELS[BUNDLED_MODEL][2]} for "
    f"{BUNDLED_MODEL}, 1024 for sam2's with a checkpoint, 256 with random weights)"
)

RANDOM_WEIGHTS = "random"  # the checkpoint value that asks for random weights


def check_checkpoint_file(path: str, shown_as: str | None = None) -> None:
    """A ValueError unless `path` is a readable file (named `shown_as` in the message):
    the check a command makes when it starts, before anything loads."""
    name = path if shown_as is None else shown_as
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint not found: {name}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"checkpoint not readable: {name}")


def read_checkpoint(path: str) -> dict:
    """The state dict of an official-format checkpoint (``{"model": state_dict}``); a
    missing, unreadable or foreign file is a ValueError naming it, never a traceback."""
    import torch

    check_checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt or foreign file
        raise ValueError(f"unreadable checkpoint {path}: {type(e).__name__}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"checkpoint {path} has no 'model' state dict (official sam2 format)")
    return ckpt["model"]


def load_weights(module: Any, state: dict, path: str, model: str) -> None:
    """Load `state` (from `path`) into `module`, a `model` network; a mismatch is a
    one-line ValueError that counts the keys and names the first of each kind."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape
        detail = next((s.strip() for s in str(e).splitlines() if "size mismatch" in s), str(e))
    else:
        missing, unexpected = result.missing_keys, result.unexpected_keys
        if not missing and not unexpected:
            return
        detail = ", ".join(
            f"{len(keys)} {what} keys (first {keys[0]})"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        )
    raise ValueError(f"checkpoint {path} does not fit model {model}: {shorten(detail, 200)}")


def resolve_weights(
    model: str, checkpoint: str | None, image_size: int | None
) -> tuple[str | None, int | None]:
    """(checkpoint, image size) as the commands use them. No checkpoint: a project
    model gets its bundled weights, at the size it was trained at; ``random`` asks for
    random weights (None). sam2's models run at 1024 with a checkpoint, 256 without."""
    if checkpoint == RANDOM_WEIGHTS:
        checkpoint = None
    elif checkpoint is None and (bundled := bundled_checkpoint(model)) is not None:
        checkpoint = str(bundled)
    if image_size is None:
        image_size = default_image_size(model, checkpoint is not None)
    return checkpoint, image_size


def add_weight_flags(parser: Any) -> None:
    """--model, --checkpoint and --image-size, as `bench` and `eval` take them (run's
    come from settings.py, with the same defaults and the same `resolve_weights`)."""
    parser.add_argument("--model", default=BUNDLED_MODEL, help=f"default {BUNDLED_MODEL}")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="official-format .pt (default: the bundled sam2long_mini weights; sam2's models "
        f"without one, or '{RANDOM_WEIGHTS}': random weights)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"model input size, {IMAGE_SIZE_HELP}",
    )


def load_config(model: str, overrides: list[str] | None = None) -> Any:
    """The resolved OmegaConf config of `model`, with hydra-style `++key=value`
    overrides applied; sam2's models come from sam2's own config module."""
    from omegaconf import OmegaConf

    overrides = list(overrides or [])
    own = OWN_MODELS.get(model)
    if own is not None:
        cfg = OmegaConf.load(own[0])
        dotlist = [o.lstrip("+") for o in overrides]
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    else:
        import sam2  # noqa: F401  (registers sam2's hydra config module)
        from hydra import compose

        from sam2long_stream.tracker.config import model_config_name

        cfg = compose(config_name=model_config_name(model), overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg
