"""The SAM 2 engine: sam2's own modules, driven for a pool of pathways at once.

The tracker asks four things of an engine: encode frames, segment a prompted object,
propose 3 candidates per pathway given that pathway's memory, and encode the memory of
chosen candidates. `Sam2Engine` answers them with sam2's `SAM2Base` modules, batching
all pathways of all objects into one call per module wherever their memory layouts
match. The frames of one call may come from several streams (`tracker.step_many`): the
features then hold one column per frame, and every pathway row names its frame.
Tests can substitute an engine double with the same four methods.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from sam2.modeling.sam2_utils import get_1d_sine_pe
from torch import Tensor

from sam2long_stream.models import load_config, load_weights, read_checkpoint
from sam2long_stream.tracker.config import Prompt, TrackerConfig
from sam2long_stream.tracker.transfer import upload

log = logging.getLogger(__name__)

_IMG_MEAN = (0.485, 0.456, 0.406)
_IMG_STD = (0.229, 0.224, 0.225)

# The overrides sam2's build_sam2_video_predictor applies (its "postprocessing"), so
# that with the tree off we are the video predictor, mask for mask.
VIDEO_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
]


@dataclass
class FrameFeatures:
    """Image-encoder output of N frames (one per stream), shared by every pathway and
    object of its frame: column i of every level belongs to frame i."""

    vision_feats: list[Tensor]  # per level: (HW, N, C)
    vision_pos: list[Tensor]
    feat_sizes: list[tuple[int, int]]

    @property
    def num_frames(self) -> int:
        return self.vision_feats[-1].shape[1]

    def frame(self, i: int) -> FrameFeatures:
        """Frame i alone (views, no copy): what a per-object prompt call needs."""
        if self.num_frames == 1:
            return self
        return FrameFeatures(
            [x[:, i : i + 1] for x in self.vision_feats],
            [x[:, i : i + 1] for x in self.vision_pos],
            self.feat_sizes,
        )

    def columns(self, x: Tensor, frames: Sequence[int]) -> Tensor:
        """x (HW, N, C) of this batch, one column per row: frame frames[r] for row r.
        One frame: a broadcast view, exactly what the single-stream step always used."""
        if self.num_frames == 1:
            return x.expand(-1, len(frames), -1)
        return x.index_select(1, upload(frames, torch.long, x.device))


@dataclass
class PromptOutput:
    """SAM 2's answer on a prompted (conditioning) frame for one object."""

    low_res_mask: Tensor  # (1, h, w) logits
    iou: float
    object_score_logit: float
    obj_ptr: Tensor
    maskmem: Tensor


@dataclass
class MemoryView:
    """What one pathway of one object attends to on this frame.

    frames: (t_pos, memory features) with conditioning frames at t_pos 0;
    pointers: (temporal position, object pointer). Weights scale the key input of each
    frame / pointer in memory cross-attention (attention modulation); None: unscaled.
    """

    frames: list[tuple[int, Any]]  # the engine's memory features (Tensors here)
    pointers: list[tuple[int, Any]]
    frame_weights: list[float] | None = None
    pointer_weights: list[float] | None = None
    frame: int = 0  # which frame of the features batch (which stream) this row tracks on

    @property
    def layout(self) -> tuple[int, int]:
        return len(self.frames), len(self.pointers)


@dataclass
class Candidates:
    """Three candidate masks per pathway, as the multimask decoder gives them."""

    low_res: Tensor  # (B, 3, h, w) logits, absent objects set to NO_OBJ_SCORE
    ious: Tensor  # (B, 3)
    object_logits: Tensor  # (B,)
    obj_ptrs: Tensor  # (B, 3, C), hard-gated by presence


class Sam2Engine:
    """sam2 model code with batched multi-pathway tracking steps."""

    def __init__(self, config: TrackerConfig) -> None:
        self.device = resolve_device(config.device)
        self.model: Any = build_sam2_model(config, self.device)  # sam2's SAM2Base
        m: Any = self.model
        self.image_size: int = m.image_size
        self.low_res_size: int = m.image_size // 4
        self.num_maskmem: int = m.num_maskmem
        # The pointer window; offline, the official code (as sam2's predictor) narrows it
        # to the video's length: min(num_frames, max_obj_ptrs_in_encoder).
        self.max_obj_ptrs: int = m.max_obj_ptrs_in_encoder
        if config.stream_length is not None:
            self.max_obj_ptrs = min(config.stream_length, self.max_obj_ptrs)
        self._mean = torch.tensor(_IMG_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(_IMG_STD, dtype=torch.float32)[:, None, None]
        self._mean_on_device = self._mean.to(self.device)  # uploaded once, not per frame
        self._std_on_device = self._std.to(self.device)
        cuda = self.device.type == "cuda"
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
        self.torch_preprocess = config.preprocess == "torch" or (
            config.preprocess == "auto" and cuda
        )
        if cuda:  # TF32 for the fp32 matmuls and convolutions autocast leaves
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # torch.compile: the image encoder sees one shape per stream count N, (N, 3, S, S):
        # static (step_many with a changing N compiles a graph per N). Memory
        # attention sees batch B (pathways x objects of one memory layout) and memory
        # length L (frames x HW + pointer tokens), both growing over the warm-up and
        # varying with layouts: dynamic, so one graph serves them all (B = 1 and the first
        # frame without pointers aside). Weights are explicit inputs, always a tensor.
        self._image_encoder = _CompiledOrEager(
            m.image_encoder.forward, "image encoder", config, dynamic=False
        )
        self._memory_attention = _CompiledOrEager(
            self._run_memory_attention, "memory attention", config, dynamic=True
        )
        if self._image_encoder.compiled is not None:
            m.image_encoder.forward = self._image_encoder
        self._maskmem_pos: Tensor | None = None  # memory pos-enc: the same for every frame
        self._key_weights: Tensor | None = None
        for layer in m.memory_attention.layers:
            layer.cross_attn_image.k_proj.register_forward_pre_hook(self._scale_keys)
        if self._image_encoder.active or self._memory_attention.active:
            self._fill_lazy_state()

    @torch.inference_mode()
    def _fill_lazy_state(self) -> None:
        """Run both compiled modules once eagerly on blank inputs, before any tracing.

        sam2 fills state on first use: the image position encodings are cached per size,
        RoPE frequencies are recomputed for this resolution. Traced, that first call
        mutates what the graph guards on, and the second call would compile again."""
        m = self.model
        image = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        with self.autocast():
            feats = self._image_encoder.eager(image)["vision_features"]
            hw = feats.shape[-2] * feats.shape[-1]
            curr = torch.zeros(hw, 1, m.hidden_dim, device=self.device)
            memory = torch.zeros(hw, 1, m.mem_dim, device=self.device)
            self._run_memory_attention(curr, curr, memory, memory, None, 0)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast where configured (sam2's own GPU recipe); a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    # -- frames -------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray) -> Tensor:
        """Resize to the model's square input and normalise.

        "pil" is exactly sam2's video loader (PIL bicubic on the host); "torch" uploads
        the uint8 frame (pinned on CUDA) and resizes on the device, which is what a GPU
        wants, at the price of slightly different bicubic rounding.
        """
        s = self.image_size
        if self.torch_preprocess:
            x = torch.from_numpy(rgb)
            if self.device.type == "cuda":
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=True).permute(2, 0, 1)[None].float() / 255.0
            x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True)
            return (x.clamp(0.0, 1.0) - self._mean_on_device) / self._std_on_device
        img = np.asarray(Image.fromarray(rgb).resize((s, s))) / 255.0
        t = torch.from_numpy(img).permute(2, 0, 1).float()
        t = (t - self._mean) / self._std
        return t.unsqueeze(0).to(self.device, non_blocking=True)

    def encode(self, rgb: np.ndarray) -> FrameFeatures:
        return self.encode_many([rgb])

    def encode_many(self, rgbs: Sequence[np.ndarray]) -> FrameFeatures:
        """One image-encoder call for frames of any sizes: each is resized to the square
        input first, so they stack into one batch (column i of the features: rgbs[i])."""
        images = [self.preprocess(rgb) for rgb in rgbs]
        image = images[0] if len(images) == 1 else torch.cat(images)
        with self.autocast():
            backbone = self.model.forward_image(image)
            _, feats, pos, sizes = self.model._prepare_backbone_features(backbone)
        return FrameFeatures(vision_feats=feats, vision_pos=pos, feat_sizes=sizes)

    # -- prompts ------------------------------------------------------------------
    def prompt(
        self,
        features: FrameFeatures,
        prompt: Prompt,
        height: int,
        width: int,
        frame_index: int,
        frame: int = 0,
    ) -> PromptOutput:
        """Segment a prompted object on its conditioning frame (column `frame` of the
        features), as SAM 2 does."""
        with self.autocast():
            return self._prompt(features.frame(frame), prompt, height, width, frame_index)

    def _prompt(self, features, prompt, height, width, frame_index) -> PromptOutput:
        m = self.model
        point_inputs, mask_inputs = self._prompt_inputs(prompt, height, width)
        _, sam_out, _, _ = m._track_step(
            frame_index,
            True,  # is_init_cond_frame: prompts arrive with a frame not yet tracked
            features.vision_feats,
            features.vision_pos,
            features.feat_sizes,
            point_inputs,
            mask_inputs,
            {},
            None,
            False,
            None,
        )
        _, _, ious, low_res, _, obj_ptr, obj_logits = sam_out
        # The video predictor encodes prompt-frame memory from the low-res mask, upsampled
        # and binarised ("mask from points"), and stores it in bfloat16.
        high_res = F.interpolate(
            low_res, size=(self.image_size,) * 2, mode="bilinear", align_corners=False
        )
        maskmem = self._encode(features, high_res, obj_logits, from_points=True)
        stats = torch.stack([ious.max().float(), obj_logits.flatten()[0].float()]).tolist()
        return PromptOutput(
            low_res_mask=low_res[0],
            iou=stats[0],
            object_score_logit=stats[1],
            obj_ptr=obj_ptr[0].float(),
            maskmem=maskmem[0],
        )

    def _prompt_inputs(
        self, prompt: Prompt, height: int, width: int
    ) -> tuple[dict | None, Tensor | None]:
        s = self.image_size
        if prompt.mask is not None:
            mask = torch.as_tensor(np.asarray(prompt.mask, dtype=bool), device=self.device)
            mask = mask[None, None].float()
            if mask.shape[-2:] != (s, s):
                mask = F.interpolate(
                    mask, size=(s, s), mode="bilinear", align_corners=False, antialias=True
                )
                mask = (mask >= 0.5).float()
            return None, mask
        coords: list[Sequence[float]] = []
        labels: list[int] = []
        if prompt.box is not None:
            x0, y0, x1, y1 = (float(v) for v in prompt.box)
            coords += [(x0, y0), (x1, y1)]
            labels += [2, 3]
        if prompt.points is not None:
            coords += [tuple(map(float, p)) for p in prompt.points]
            labels += [int(v) for v in prompt.labels or ()]
        pts = torch.tensor(coords, dtype=torch.float32)[None]
        pts = pts / torch.tensor([width, height]) * s
        lab = torch.tensor(labels, dtype=torch.int32)[None]
        return {"point_coords": pts.to(self.device), "point_labels": lab.to(self.device)}, None

    # -- tracking -----------------------------------------------------------------
    def propose(self, features: FrameFeatures, views: Sequence[MemoryView]) -> Candidates:
        """Memory attention per pathway (batched by memory layout), then one decoder call."""
        with self.autocast():
            return self._propose(features, views)

    def _propose(self, features: FrameFeatures, views: Sequence[MemoryView]) -> Candidates:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, v in enumerate(views):
            groups.setdefault(v.layout, []).append(i)
        parts: list[Tensor] = []
        order: list[int] = []
        for idx in groups.values():
            parts.append(self._attend(features, [views[i] for i in idx]))
            order += idx
        pix = torch.cat(parts) if len(parts) > 1 else parts[0]
        if order != sorted(order):
            pix = pix[torch.argsort(torch.tensor(order, device=pix.device))]
        return self._decode(features, pix, [v.frame for v in views])

    def _attend(self, features: FrameFeatures, views: Sequence[MemoryView]) -> Tensor:
        """sam2's _prepare_memory_conditioned_features for a batch of same-layout views."""
        m = self.model
        b = len(views)
        c = m.hidden_dim
        h, w = features.feat_sizes[-1]
        memory, memory_pos, weights = [], [], []
        for v in views:
            mem, pos, wts = self._memory_tokens(v, h * w)
            memory.append(mem)
            memory_pos.append(pos)
            weights.append(wts)
        curr = features.columns(features.vision_feats[-1], [v.frame for v in views])
        curr_pos = features.vision_pos[-1][:, :1].expand(-1, b, -1)  # same for every frame
        n_ptr_tokens = len(views[0].pointers) * (c // m.mem_dim)
        memory_t = torch.stack(memory, dim=1)
        key_weights = None
        if any(wt is not None for wt in weights) or self._memory_attention.active:
            # compiled: always a tensor (x 1.0 is exact), so no guard on None vs tensor
            ones = torch.ones(memory_t.shape[0], device=memory_t.device)
            key_weights = torch.stack([ones if wt is None else wt for wt in weights])[:, :, None]
        out = self._memory_attention(
            curr, curr_pos, memory_t, torch.stack(memory_pos, dim=1), key_weights, n_ptr_tokens
        )
        return out.permute(1, 2, 0).reshape(b, c, h, w)

    def _memory_tokens(self, view: MemoryView, hw: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """One pathway's memory tokens (N, mem_dim), their positions, and key weights."""
        m = self.model
        c, mem_dim = m.hidden_dim, m.mem_dim
        assert self._maskmem_pos is not None, "memory positions are set by the first encode"
        tokens, pos = [], []
        for t_pos, feats in view.frames:
            tokens.append(feats.to(self.device).float().flatten(1).t())
            pos.append(self._maskmem_pos + m.maskmem_tpos_enc[m.num_maskmem - t_pos - 1][0])
        n_ptr = len(view.pointers)
        if n_ptr:
            ptrs = torch.stack([p for _, p in view.pointers])
            split = c // mem_dim
            t_diff_max = self.max_obj_ptrs - 1
            tpos_dim = c if m.proj_tpos_enc_in_obj_ptrs else mem_dim
            rel = upload([t for t, _ in view.pointers], torch.float32, self.device) / t_diff_max
            ptr_pos = m.obj_ptr_tpos_proj(get_1d_sine_pe(rel, dim=tpos_dim))
            if not m.add_tpos_enc_to_obj_ptrs:
                ptr_pos = torch.zeros_like(ptr_pos)
            tokens.append(ptrs.reshape(n_ptr * split, mem_dim))
            pos.append(ptr_pos.repeat_interleave(split, dim=0))
        weights = None
        if view.frame_weights is not None or view.pointer_weights is not None:
            fw = view.frame_weights or [1.0] * len(view.frames)
            pw = view.pointer_weights or [1.0] * n_ptr
            per_token = [hw] * len(fw) + [c // mem_dim] * len(pw)
            host = torch.tensor(fw + pw).repeat_interleave(torch.tensor(per_token))
            if self.bf16:  # under autocast the reference's scores, so its weights, are bf16
                host = host.to(torch.bfloat16).float()
            weights = upload(host, torch.float32, self.device)
        return torch.cat(tokens), torch.cat(pos), weights

    def _run_memory_attention(
        self,
        curr: Tensor,
        curr_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        key_weights: Tensor | None,
        num_obj_ptr_tokens: int,
    ) -> Tensor:
        """sam2's memory attention with key inputs scaled by key_weights (B, L, 1) (hooks).

        Compiled, this is the traced function: the weights are its input, and setting the
        attribute the hooks read is traced as well (and undone before returning)."""
        self._key_weights = key_weights
        try:
            return self.model.memory_attention(
                curr=[curr],
                curr_pos=[curr_pos],
                memory=memory,
                memory_pos=memory_pos,
                num_obj_ptr_tokens=num_obj_ptr_tokens,
            )
        finally:
            self._key_weights = None

    def _scale_keys(self, _module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        # As the official code: the key projection's input (memory plus its positional
        # encoding) is scaled, so the projection's bias is not (docs/algorithm.md).
        if self._key_weights is None:
            return None
        key = inputs[0]
        return (key * self._key_weights.to(key.dtype), *inputs[1:])

    def _decode(self, features: FrameFeatures, pix: Tensor, frames: Sequence[int]) -> Candidates:
        """sam2's _forward_sam_heads in multimask mode, keeping all 3 candidates."""
        m = self.model
        b = pix.shape[0]
        high_res_feats = [
            features.columns(x, frames).permute(1, 2, 0).reshape(b, x.shape[2], *s)
            for x, s in zip(features.vision_feats[:-1], features.feat_sizes[:-1], strict=True)
        ]
        coords = torch.zeros(b, 1, 2, device=pix.device)
        labels = -torch.ones(b, 1, dtype=torch.int32, device=pix.device)
        sparse, dense = m.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, ious, tokens, obj_logits = m.sam_mask_decoder(
            image_embeddings=pix,
            image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=high_res_feats if m.use_high_res_features_in_sam else None,
        )
        present = obj_logits > 0  # (B, 1)
        if m.pred_obj_scores:
            low_res = torch.where(present[:, None, None], low_res, NO_OBJ_SCORE)
        low_res = low_res.float()
        ptrs = m.obj_ptr_proj(tokens).expand(-1, 3, -1)
        if m.pred_obj_scores:
            gate = present.float()[:, :, None]  # hard gate, as the reference fixes it
            if m.fixed_no_obj_ptr:
                ptrs = gate * ptrs
            ptrs = ptrs + (1 - gate) * m.no_obj_ptr
        return Candidates(
            low_res=low_res,
            ious=ious.float(),
            object_logits=obj_logits[:, 0].float(),
            obj_ptrs=ptrs.float(),
        )

    def encode_memory(
        self,
        features: FrameFeatures,
        low_res: Tensor,
        object_logits: Tensor,
        frames: Sequence[int] | None = None,
    ) -> Tensor:
        """Memory features (bfloat16, as sam2 stores them) for chosen tracked masks;
        row r on frame frames[r] of the features (None: all on frame 0).

        Only the chosen low-res masks (B, 1, h, w) are upsampled, as sam2 would upsample
        them (bilinear, per channel, so choosing first changes nothing)."""
        high_res = F.interpolate(
            low_res, size=(self.image_size,) * 2, mode="bilinear", align_corners=False
        )
        with self.autocast():
            return self._encode(
                features, high_res, object_logits[:, None], from_points=False, frames=frames
            )

    def _encode(
        self,
        features: FrameFeatures,
        high_res: Tensor,
        object_logits: Tensor,
        from_points: bool,
        frames: Sequence[int] | None = None,
    ) -> Tensor:
        b = high_res.shape[0]
        feats = [features.columns(features.vision_feats[-1], frames or [0] * b)]
        maskmem, pos = self.model._encode_new_memory(
            current_vision_feats=feats,
            feat_sizes=features.feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=object_logits,
            is_mask_from_pts=from_points,
        )
        if self._maskmem_pos is None:
            self._maskmem_pos = pos[-1][0:1].flatten(2)[0].t().contiguous()
        return maskmem.to(torch.bfloat16)


class _CompiledOrEager:
    """A function run through torch.compile when configured; if compiling fails (at
    torch.compile or at any later (re)compilation), one WARNING, and eager from then on."""

    def __init__(self, fn, what: str, config: TrackerConfig, dynamic: bool) -> None:
        self.eager = fn
        self.what = what
        self.compiled = None
        if config.compile:
            try:
                self.compiled = torch.compile(fn, backend=config.compile_backend, dynamic=dynamic)
            except Exception as e:  # e.g. an unknown backend
                self._give_up(e)

    @property
    def active(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise  # not a compile failure: eager would not fit either
        except Exception as e:  # dynamo/inductor raise many kinds
            self._give_up(e)
            return self.eager(*args, **kwargs)

    def _give_up(self, e: Exception) -> None:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        log.warning(
            "torch.compile of the %s failed (%s: %s); running it eager",
            self.what,
            type(e).__name__,
            " ".join(lines[:2])[:300],
        )
        self.compiled = None


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; anything else is a torch device name."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu or cuda")
    return dev


def build_sam2_model(config: TrackerConfig, device: torch.device) -> torch.nn.Module:
    """Instantiate sam2's SAM2Base from its own hydra config; load or randomly init weights."""
    from hydra.utils import instantiate

    overrides = list(VIDEO_OVERRIDES)
    if config.image_size is not None:
        overrides.append(f"++model.image_size={config.image_size}")
    cfg = load_config(config.model, overrides)
    state = read_checkpoint(config.checkpoint) if config.checkpoint else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = instantiate(cfg.model, _recursive_=True)
    if state is not None:
        load_weights(model, state, str(config.checkpoint), config.model)
    return model.to(device).eval()
