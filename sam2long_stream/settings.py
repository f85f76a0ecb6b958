"""The node's settings schema: every option of `run` declared once.

Each `Option` carries its type, default, help, bounds and scope. The `run` flags
(`add_flags`), the TOML loader (`read_toml`), the launcher's per-stream tables and the
node's typed configs (`StreamConfig`, `NodeConfig`, and `TrackerConfig` through
`tracker_config`) are all derived from `OPTIONS`, so a new option is one entry here plus
the code that uses it.

Scopes: ``model`` options build the one shared `TrackerConfig`; ``node`` options are the
process's sockets and limits; ``stream`` options belong to each camera and may be set
per stream in ``[[streams]]`` tables (a top-level value is every stream's default).

Nothing here imports torch: the CLI and the launcher check a whole configuration, and
print one line about the first mistake, before the model is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sam2long_stream.control.protocol import DEFAULT_ADDRESS as DEFAULT_CONTROL
from sam2long_stream.events import DEFAULT_LOST_AFTER, Zone, parse_lost_after, read_zones
from sam2long_stream.limits import MAX_FRAME_SIDE, quote, shown
from sam2long_stream.models import IMAGE_SIZE_HELP, resolve_weights
from sam2long_stream.tracker.config import Prompt, TrackerConfig, model_config_name
from sam2long_stream.transport import wire

Scope = Literal["model", "node", "stream"]
SCOPES: tuple[Scope, ...] = ("model", "node", "stream")
OFF = ("", "off", "none")  # what turns an optional address off
DEFAULT_PUB = "tcp://127.0.0.1:5556"
POLICIES = ("latest", "all")
INT64 = (-(2**63), 2**63 - 1)
DEVICES_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N, mps"


@dataclass(frozen=True)
class Option:
    """One setting: its TOML key is `key`, its flag ``--key-with-dashes``, and `attr` the
    field it fills in its config (`TrackerConfig`, `NodeConfig` or `StreamConfig`)."""

    key: str
    kind: type  # bool, int, float or str
    default: Any
    help: str
    scope: Scope
    attr: str = ""  # defaults to key
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None  # inclusive bounds of numbers
    high: float | None = None
    nullable: bool = False  # "", "off", "none" mean None (optional addresses and files)
    validate: Callable[[Any], Any] | None = None  # more checks (ValueError); value kept

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def field(self) -> str:
        return self.attr or self.key

    def check(self, value: Any, where: str) -> Any:
        """The value converted and checked; ValueError names `where` (a flag or a TOML
        key) and says what was expected."""
        if value is None or (self.nullable and isinstance(value, str) and value.lower() in OFF):
            if self.default is None or self.nullable:
                return None
            raise ValueError(f"{where} needs a value")
        kind = self.kind
        if kind is bool:
            if type(value) is not bool:
                raise ValueError(f"{where} must be true or false, got {quote(value)}")
        elif kind is int:
            if type(value) is not int:
                raise ValueError(f"{where} must be an integer, got {quote(value)}")
            if not INT64[0] <= value <= INT64[1]:  # what TOML holds; more is a typo
                raise ValueError(f"{where} must be a 64-bit integer, got {quote(value)}")
        elif kind is float:
            if type(value) not in (int, float) or not math.isfinite(value):
                raise ValueError(f"{where} must be a number, got {quote(value)}")
            value = float(value)
        elif not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where} must be a non-empty string, got {quote(value)}")
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(self.choices)
            raise ValueError(f"{where} must be one of {choices}, got {quote(value)}")
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            low = "" if self.low is None else f"{self.low:g}"
            high = "" if self.high is None else f"{self.high:g}"
            what = f"in {low}..{high}" if low and high else f">= {low}" if low else f"<= {high}"
            noun = "an integer" if kind is int else "a number"
            raise ValueError(f"{where} must be {noun} {what}, got {quote(value)}")
        if self.validate is not None:
            try:
                self.validate(value)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        return value


def _check_video_path(path: str) -> None:
    from sam2long_stream.overlay import check_video_path

    check_video_path(path)


def _check_image_path(path: str) -> None:
    from sam2long_stream.overlay import check_image_path

    check_image_path(path)


def _check_model(name: str) -> None:
    """A model `TrackerConfig` knows. Checked here, with the name quoted shortened, so a
    hostile flag or TOML value never comes back whole in the error."""
    try:
        model_config_name(name)
    except ValueError as exc:
        raise ValueError(str(exc).replace(repr(name), quote(name), 1)) from None


def _o(key: str, kind: type, default: Any, help: str, scope: Scope, **kw: Any) -> Option:
    return Option(key, kind, default, help, scope, **kw)


OPTIONS: tuple[Option, ...] = (
    # --- model: one TrackerConfig shared by every stream of the process
    _o(
        "checkpoint",
        str,
        None,
        "official-format .pt (default: the bundled sam2long_mini weights; "
        "'random': random weights)",
        "model",
        metavar="PATH",
        nullable=True,
    ),
    _o(
        "model",
        str,
        "sam2long_mini",
        "sam2long_mini (default: small, trained here on synthetic scenes), "
        "sam2.1_hiera_t, _s, _b+, _l; sam2_hiera_*",
        "model",
        validate=_check_model,
    ),
    _o("device", str, "auto", f"torch device: {DEVICES_HELP}", "model"),
    _o(
        "image_size",
        int,
        None,
        IMAGE_SIZE_HELP,
        "model",
        low=64,
        high=MAX_FRAME_SIDE,  # never more than the largest frame the node accepts
    ),
    _o(
        "pathways",
        int,
        3,
        "SAM2Long pathways per object (1: one pathway, still with SAM2Long's memory selection)",
        "model",
        attr="num_pathways",
        low=1,
        high=16,
    ),
    _o(
        "iou_threshold",
        float,
        TrackerConfig.iou_threshold,
        "SAM2Long's memory threshold: a frame whose mask scored a predicted IoU of T or "
        "less stays out of memory (0..0.99)",
        "model",
        metavar="T",
        low=0,
        high=0.99,
    ),
    _o(
        "uncertainty",
        float,
        TrackerConfig.uncertainty,
        "SAM2Long's pool selection: a frame is certain when an object-score logit exceeds "
        "U in magnitude",
        "model",
        metavar="U",
        low=0,
    ),
    _o("lag", int, 0, "also publish masks-lagged/ with L frames of hindsight", "model", low=0),
    _o("seed", int, 0, "seed of the random weights (no checkpoint)", "model"),
    _o(
        "compile",
        bool,
        False,
        "torch.compile the image encoder and memory attention (slow "
        "first frames; falls back to eager if compiling fails)",
        "model",
    ),
    # --- node: the process's sockets, limits and batching
    _o("pub", str, DEFAULT_PUB, "PUB address of masks and status", "node"),
    _o("control", str, DEFAULT_CONTROL, "control address ('off': none)", "node", nullable=True),
    _o(
        "http",
        str,
        None,
        "HOST:PORT of /healthz and /metrics (off by default)",
        "node",
        metavar="HOST:PORT",
        nullable=True,
    ),
    _o("allow_remote", bool, False, "allow non-loopback binds (use CurveZMQ and TLS too)", "node"),
    _o(
        "curve_secret",
        str,
        None,
        "CurveZMQ: the node's .key_secret file (with --curve-clients)",
        "node",
        metavar="FILE",
        nullable=True,
    ),
    _o(
        "curve_clients",
        str,
        None,
        "CurveZMQ: directory of authorised client .key files",
        "node",
        metavar="DIR",
        nullable=True,
    ),
    _o(
        "tls_cert",
        str,
        None,
        "TLS certificate (PEM) of the WHIP/HTTP listener",
        "node",
        metavar="FILE",
        nullable=True,
    ),
    _o(
        "tls_key",
        str,
        None,
        "TLS private key (PEM) of the WHIP/HTTP listener",
        "node",
        metavar="FILE",
        nullable=True,
    ),
    _o(
        "health_grace",
        float,
        30.0,
        "/healthz fails after S seconds without a frame",
        "node",
        attr="health_grace_s",
        metavar="S",
        low=1e-3,
    ),
    _o(
        "threads",
        int,
        None,
        "torch threads (default: torch's choice)",
        "node",
        attr="torch_threads",
        low=1,
    ),
    _o("encoding", str, "rle", "mask encoding on the wire", "node", choices=wire.ENCODINGS),
    _o(
        "max_batch",
        int,
        16,
        "most streams encoded together in one tick (the oldest frames first, so none starves)",
        "node",
        low=1,
    ),
    _o(
        "max_streams",
        int,
        64,
        "most streams the node holds at once (configured plus add_stream; an ended stream "
        "counts until remove_stream): more are refused",
        "node",
        low=1,
        high=1024,
    ),
    _o(
        "max_wait",
        float,
        0.02,
        "seconds a tick waits for more streams' frames once one "
        "has arrived (like nvstreammux's batched-push timeout)",
        "node",
        attr="max_wait_s",
        metavar="S",
        low=0.0,
        high=10.0,
    ),
    # --- stream: each camera's own (a top-level value is every stream's default)
    _o(
        "stream_id",
        str,
        None,
        "stream id in topics (default cam0, cam1, ... in order)",
        "stream",
        metavar="ID",
    ),
    _o(
        "policy",
        str,
        "latest",
        "frame queue: latest drops frames to stay live; all tracks every frame",
        "stream",
        choices=POLICIES,
    ),
    _o(
        "jitter_frames",
        int,
        1,
        "policy latest: the newest frames kept while the tracker is busy; 1 keeps only "
        "the newest (least latency), more absorb a slow step or a burst of frames "
        "without dropping any, adding at most one frame period each while behind",
        "stream",
        metavar="N",
        low=1,
        high=30,
    ),
    _o("max_frames", int, None, "stop the stream after N frames", "stream", low=1),
    _o(
        "max_objects",
        int,
        128,
        "objects per stream (tracked plus waiting prompts); more are refused",
        "stream",
        low=1,
        high=wire.MAX_OBJECTS,
    ),
    _o(
        "hwaccel",
        str,
        "none",
        "decoding of RTSP/file sources: none (software), auto, or an "
        "FFmpeg device type such as cuda (falls back to software)",
        "stream",
        metavar="{none,auto,TYPE}",
    ),
    _o("rtsp_transport", str, "tcp", "RTSP transport", "stream", choices=("tcp", "udp")),
    _o(
        "realtime",
        bool,
        True,
        "pace file sources by their timestamps, as a camera would be",
        "stream",
    ),
    _o(
        "lost_after",
        str,
        DEFAULT_LOST_AFTER,
        "track events: an object absent this long is lost (seconds: 1.5s; frames: 10f)",
        "stream",
        metavar="T",
        validate=parse_lost_after,
    ),
    _o(
        "overlay_out",
        str,
        None,
        "write masks over the frames they were computed from "
        "(one stream: this path; several: STREAM_ID is put before the extension)",
        "stream",
        metavar="MP4",
        nullable=True,
        validate=_check_video_path,
    ),
    _o(
        "overlay_png",
        str,
        None,
        "write the last overlay frame as PNG",
        "stream",
        metavar="PNG",
        nullable=True,
        validate=_check_image_path,
    ),
)
BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}
DEFAULTS: dict[str, Any] = {o.key: o.default for o in OPTIONS}


def options(*scopes: Scope) -> tuple[Option, ...]:
    return tuple(o for o in OPTIONS if o.scope in (scopes or SCOPES))


# --------------------------------------------------------------------------- prompts


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``x0,y0,x1,y1`` -> 4 finite floats with x0 < x1 and y0 < y1."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"bad box {quote(text)}: expected x0,y0,x1,y1 (4 numbers, frame pixels)")
    x0, y0, x1, y1 = values
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"bad box {quote(text)}: need x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def parse_point(text: str) -> tuple[float, float, int]:
    """``x,y`` or ``x,y,label`` (label 1 positive, default; 0 negative)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or not all(math.isfinite(v) for v in values):
        raise ValueError(f"bad point {quote(text)}: expected x,y or x,y,label")
    label = 1 if len(values) == 2 else values[2]
    if label not in (0, 1):
        raise ValueError(f"bad point {quote(text)}: label must be 1 (positive) or 0 (negative)")
    return values[0], values[1], int(label)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_log_level(text: str) -> str:
    """``--log-level``: one of LOG_LEVELS, any case. Checked, because `logging` takes a
    level name it does not know (or any of its own attribute names) as a crash."""
    level = str(text).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {quote(text)}")
    return level


def read_prompts(tables: Any, where: str) -> dict[int, Prompt]:
    """``[[prompts]]`` tables (``id`` and ``box`` or ``points`` + ``labels``) -> prompts."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{where}: prompts must be [[prompts]] tables")
    prompts: dict[int, Prompt] = {}
    for n, table in enumerate(tables, 1):
        unknown = sorted(set(table) - {"id", "box", "points", "labels"})
        if unknown:
            named = ", ".join(quote(k) for k in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise ValueError(
                f"{where}: prompt #{n} has unknown key(s) {named}{more}; "
                "expected id, box, points, labels"
            )
        oid = table.get("id")
        if type(oid) is not int or not 0 <= oid <= wire.MAX_OBJECT_ID:
            raise ValueError(f"{where}: prompt #{n} needs an integer id in 0..{wire.MAX_OBJECT_ID}")
        if oid in prompts:
            raise ValueError(f"{where}: two prompts for object {oid}")
        box, points, labels = table.get("box"), table.get("points"), table.get("labels")
        if box is None and points is None:
            raise ValueError(f"{where}: prompt for object {oid} needs a box or points")
        try:
            if box is not None:
                if not isinstance(box, list):
                    raise ValueError("box must be [x0, y0, x1, y1]")
                box = parse_box(",".join(str(v) for v in box))
            if points is not None:
                if not isinstance(points, list) or not all(
                    isinstance(p, list) and len(p) == 2 for p in points
                ):
                    raise ValueError("points must be [[x, y], ...]")
                labels = [1] * len(points) if labels is None else labels
                if not isinstance(labels, list) or len(labels) != len(points):
                    raise ValueError("needs one label per point")
                pairs = zip(points, labels, strict=True)
                parsed = [parse_point(f"{x},{y},{lab}") for (x, y), lab in pairs]
                points = [(x, y) for x, y, _ in parsed]
                labels = [lab for _, _, lab in parsed]
        except ValueError as exc:
            raise ValueError(f"{where}: object {oid}: {exc}") from None
        prompts[oid] = Prompt(box=box, points=points, labels=labels)
    return prompts


def cli_prompts(
    boxes: Sequence[tuple[float, float, float, float]] | None,
    points: Sequence[tuple[float, float, int]] | None,
    point_object: int | None,
) -> dict[int, Prompt]:
    """``--box`` (ids 1, 2, ...) and ``--point`` (each its own object after the boxes,
    or all one prompt for ``--point-object``) -> prompts."""
    by_id = dict(enumerate(boxes or [], 1))
    prompts = {i: Prompt(box=b) for i, b in by_id.items()}
    points = list(points or [])
    if point_object is not None:
        if not points:
            raise ValueError("--point-object needs at least one --point")
        prompts[point_object] = Prompt(
            box=by_id.get(point_object),
            points=[(x, y) for x, y, _ in points],
            labels=[lab for _, _, lab in points],
        )
    else:
        for n, (x, y, lab) in enumerate(points, len(by_id) + 1):
            prompts[n] = Prompt(points=[(x, y)], labels=[lab])
    return prompts


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class StreamConfig:
    """One camera of a node. Validated on construction (ValueError)."""

    source: str  # a URL `sources.open_source` accepts
    stream_id: str = "cam0"
    prompts: Mapping[int, Prompt] = field(default_factory=dict)  # for the first frame
    policy: str = DEFAULTS["policy"]
    jitter_frames: int = DEFAULTS["jitter_frames"]
    max_frames: int | None = DEFAULTS["max_frames"]
    max_objects: int = DEFAULTS["max_objects"]
    hwaccel: str = DEFAULTS["hwaccel"]
    rtsp_transport: str = DEFAULTS["rtsp_transport"]
    realtime: bool = DEFAULTS["realtime"]
    overlay_out: str | None = DEFAULTS["overlay_out"]
    overlay_png: str | None = DEFAULTS["overlay_png"]
    lost_after: str = DEFAULTS["lost_after"]
    zones: tuple[Zone, ...] = ()  # named polygons for zone_enter/zone_leave events
    source_options: Mapping[str, Any] = field(default_factory=dict)  # more source kwargs

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("source must be a non-empty URL or path")
        wire.check_stream_id(self.stream_id)
        _check_fields(self, "stream")
        for oid, prompt in self.prompts.items():
            if type(oid) is not int or not 0 <= oid <= wire.MAX_OBJECT_ID:
                raise ValueError(
                    f"object ids must be ints in 0..{wire.MAX_OBJECT_ID}, got {quote(oid)}"
                )
            if not isinstance(prompt, Prompt):
                raise ValueError(f"prompt for object {oid} must be a Prompt, got {quote(prompt)}")
        zones = tuple(self.zones)
        if not all(isinstance(z, Zone) for z in zones):
            raise ValueError(f"stream {self.stream_id}: zones must be Zone objects")
        read_zones([z.as_dict() for z in zones], f"stream {self.stream_id}")  # names unique
        object.__setattr__(self, "zones", zones)
        from sam2long_stream.sources.hwdecode import check_hwaccel  # lazily: imports av

        object.__setattr__(self, "hwaccel", check_hwaccel(self.hwaccel))
        if len(self.prompts) > self.max_objects:
            raise ValueError(
                f"stream {self.stream_id}: {len(self.prompts)} prompts, max_objects is "
                f"{self.max_objects}"
            )


@dataclass(frozen=True)
class NodeConfig:
    """One node process: its streams, the shared tracker, sockets and limits.
    Validated on construction (ValueError); the loopback rule is `security.check_bind`'s."""

    streams: tuple[StreamConfig, ...]
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    pub: str = DEFAULTS["pub"]
    control: str | None = DEFAULTS["control"]
    http: str | None = DEFAULTS["http"]
    allow_remote: bool = DEFAULTS["allow_remote"]
    curve_secret: str | None = DEFAULTS["curve_secret"]
    curve_clients: str | None = DEFAULTS["curve_clients"]
    tls_cert: str | None = DEFAULTS["tls_cert"]
    tls_key: str | None = DEFAULTS["tls_key"]
    health_grace_s: float = DEFAULTS["health_grace"]
    torch_threads: int | None = DEFAULTS["threads"]
    encoding: str = DEFAULTS["encoding"]
    max_batch: int = DEFAULTS["max_batch"]
    max_streams: int = DEFAULTS["max_streams"]
    max_wait_s: float = DEFAULTS["max_wait"]
    # Internal knobs (no flag): tests and embedders tune them.
    hwm: int = 32  # messages queued per subscriber
    status_interval_s: float = 1.0
    unhealthy_after: int = 5  # consecutive tracker failures before "unhealthy"
    fail_fast: bool = True  # a single stream's error before its first frame ends the node
    # An add_object reply waits for its frame at least this long (longer when frames are
    # slow: 3x the recent p95 tick), never more than 8 s (the client waits 10 s).
    control_wait_s: float = 2.5

    def __post_init__(self) -> None:
        streams = tuple(self.streams)
        object.__setattr__(self, "streams", streams)
        if not streams or not all(isinstance(s, StreamConfig) for s in streams):
            raise ValueError("a node needs at least one StreamConfig")
        ids = [s.stream_id for s in streams]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate stream id(s): {', '.join(dupes)}")
        if not isinstance(self.tracker, TrackerConfig):
            raise ValueError("tracker must be a TrackerConfig")
        _check_fields(self, "node")
        if len(streams) > self.max_streams:
            raise ValueError(
                f"{len(streams)} streams configured, max_streams is {self.max_streams}"
            )
        for name in ("hwm", "unhealthy_after"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {quote(v)}")
        for name in ("status_interval_s", "control_wait_s"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a number > 0, got {quote(v)}")
        if (self.curve_secret is None) != (self.curve_clients is None):
            raise ValueError(
                "CurveZMQ needs both curve_secret (the node's .key_secret file) and "
                "curve_clients (a directory of authorised client .key files)"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
        if self.tls_cert is not None and not any(_is_whip(s.source) for s in streams):
            raise ValueError("--tls-cert/--tls-key apply to whip:// sources only")
        self.remote_binds()  # the loopback rule; raises ValueError

    @classmethod
    def one_stream(cls, source: str, **fields: Any) -> NodeConfig:
        """A node of one stream: ``fields`` are StreamConfig's and NodeConfig's, sorted
        out by name (tests, embedding: ``NodeConfig.one_stream(url, prompts=..., pub=...)``)."""
        names = {f.name for f in dataclasses.fields(StreamConfig)}
        own = {k: v for k, v in fields.items() if k in names}
        rest = {k: v for k, v in fields.items() if k not in names}
        return cls(streams=(StreamConfig(source=source, **own),), **rest)

    def remote_binds(self) -> list[str]:
        """The sockets other hosts could reach ("publisher", "control socket", "HTTP
        endpoint"). Raises ValueError for a malformed address or a non-loopback one
        without allow_remote."""
        from sam2long_stream import security

        binds: list[tuple[str, str, str | None]] = [
            ("publisher", self.pub, security.zmq_bind_host(self.pub))
        ]
        if self.control:
            binds.append(("control socket", self.control, security.zmq_bind_host(self.control)))
        if self.http:
            binds.append(("HTTP endpoint", self.http, security.parse_http_address(self.http)[0]))
        for s in self.streams:
            listener = security.source_listener(s.source)
            if listener is not None:  # whip://: the WHIP endpoint and its browser page
                binds.append(("WHIP listener", *listener))
        return [
            what
            for what, address, host in binds
            if security.check_bind(what, address, host, self.allow_remote)
        ]

    def stream(self, stream_id: str) -> StreamConfig:
        for s in self.streams:
            if s.stream_id == stream_id:
                return s
        raise KeyError(stream_id)


def _is_whip(source: str) -> bool:
    return source.strip().lower().startswith("whip://")


def _check_fields(config: Any, scope: Scope) -> None:
    for opt in options(scope):
        if opt.key == "stream_id":
            continue
        value = opt.check(getattr(config, opt.field), opt.field)
        object.__setattr__(config, opt.field, value)


# --------------------------------------------------------------------------- loading


def add_flags(parser: argparse.ArgumentParser, *scopes: Scope) -> None:
    """One flag per option of these scopes, all defaulting to None ("not given"), so
    that flags can be layered over a TOML file."""
    for opt in options(*scopes):
        if opt.key == "stream_id":
            parser.add_argument(
                opt.flag,
                dest=opt.key,
                action="append",
                metavar=opt.metavar,
                help="stream id in topics, once per source (default cam0, cam1, ...)",
            )
            continue
        default = "" if opt.default is None else f" (default {_show(opt.default)})"
        if opt.kind is bool:
            parser.add_argument(
                opt.flag,
                dest=opt.key,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=opt.help + default,
            )
            continue
        parser.add_argument(
            opt.flag,
            dest=opt.key,
            type=str if opt.nullable else opt.kind,
            choices=opt.choices,
            metavar=opt.metavar or (None if opt.choices else "V"),
            default=None,
            help=opt.help + default,
        )


def _show(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def read_flags(args: argparse.Namespace, *scopes: Scope) -> dict[str, Any]:
    """The options given on the command line, checked (ValueError names the flag)."""
    out: dict[str, Any] = {}
    for opt in options(*scopes):
        value = getattr(args, opt.key, None)
        if value is None or opt.key == "stream_id":
            continue
        out[opt.key] = opt.check(value, opt.flag)
    return out


def read_table(table: Mapping[str, Any], where: str, *scopes: Scope) -> dict[str, Any]:
    """A TOML table's options, checked; an unknown key is an error naming the known ones.
    Dashes in keys are read as underscores."""
    allowed = {o.key: o for o in options(*scopes)}
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        opt = allowed.get(key)
        if opt is None:
            raise ValueError(
                f"{where}: unknown key {quote(raw_key)}; expected one of {', '.join(allowed)}"
            )
        if key == "stream_id":
            if not isinstance(value, str):
                raise ValueError(f"{where}: stream_id must be a string, got {quote(value)}")
            try:
                out[key] = wire.check_stream_id(value)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            continue
        out[key] = opt.check(value, f"{where}: {raw_key}")
    return out


@dataclass(frozen=True)
class NodeFile:
    """A node TOML file: top-level options (``model``/``node`` scopes and stream
    defaults), top-level ``[[prompts]]``, and ``[[streams]]`` tables, each with
    ``source``, ``stream_id``, stream options and its own ``[[streams.prompts]]``."""

    values: Mapping[str, Any]
    prompts: Mapping[int, Prompt]
    sources: tuple[str, ...]  # top-level `source` (one stream), or empty
    streams: tuple[tuple[Mapping[str, Any], Mapping[int, Prompt] | None], ...]


def load_toml(path: str, what: str = "config file") -> dict[str, Any]:
    """A TOML file's content; ValueError in one line naming the file (`what` says which
    kind of file it is to the user)."""
    name = shown(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"{what} not found: {name}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {name} is a directory") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{name}: not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{name}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ValueError(f"{name}: not valid TOML (arrays or tables nested too deeply)") from None


def read_toml(path: str) -> NodeFile:
    """Read and check a node TOML file; ValueError (one line, naming the file and key)."""
    return parse_node_table(load_toml(path), shown(path))


def _got(value: Any) -> str:
    """What a TOML value was instead: its TOML type and the value, shortened."""
    if isinstance(value, str):
        kind = "a string of blanks" if value else "an empty string"
    elif isinstance(value, float):
        kind = "a float"
    else:
        kinds = {list: "an array", dict: "a table", bool: "a boolean", int: "an integer"}
        kind = kinds.get(type(value), "a date or time")
    return f"got {kind}: {quote(value)}"


def parse_node_table(data: Mapping[str, Any], where: str) -> NodeFile:
    """A node file's content as read by tomllib (see `NodeFile`)."""
    top = dict(data)
    prompts = read_prompts(top.pop("prompts", []), where)
    top_zones = read_zones(top.pop("zones"), where) if "zones" in top else None
    raw_streams = top.pop("streams", [])
    source = top.pop("source", None)
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise ValueError(f"{where}: source must be a URL or path (a string), {_got(source)}")
    values = read_table(top, where)
    if top_zones is not None:
        values["zones"] = top_zones
    if not isinstance(raw_streams, list) or not all(isinstance(t, dict) for t in raw_streams):
        raise ValueError(f"{where}: streams must be [[streams]] tables")
    if raw_streams and source is not None:
        raise ValueError(f"{where}: give either source or [[streams]] tables, not both")
    streams = []
    for n, table in enumerate(raw_streams, 1):
        at = f"{where}: streams #{n}"
        table = dict(table)
        src = table.pop("source", None)
        if src is None:
            raise ValueError(f"{at} needs a source")
        if not isinstance(src, str) or not src.strip():
            raise ValueError(f"{at}: source must be a URL or path (a string), {_got(src)}")
        own = read_prompts(table.pop("prompts"), at) if "prompts" in table else None
        zones = read_zones(table.pop("zones"), at) if "zones" in table else None
        stream_values = read_table(table, at, "stream")
        if zones is not None:
            stream_values["zones"] = zones
        streams.append(({**stream_values, "source": src}, own))
    return NodeFile(values, prompts, (source,) if source else (), tuple(streams))


# --------------------------------------------------------------------------- building


def tracker_config(values: Mapping[str, Any]) -> TrackerConfig:
    """The shared TrackerConfig from option values (defaults filled in), with the
    weights and image size `models.resolve_weights` gives the model."""
    v = {**DEFAULTS, **values}
    kwargs = {o.field: v[o.key] for o in options("model")}
    kwargs["checkpoint"], kwargs["image_size"] = resolve_weights(
        kwargs["model"], kwargs["checkpoint"], kwargs["image_size"]
    )
    return TrackerConfig(**kwargs)


def stream_ids(count: int, given: Sequence[str] | None) -> list[str]:
    """``cam0``, ``cam1``, ... unless ids are given, one per source."""
    if not given:
        return [f"cam{i}" for i in range(count)]
    if len(given) != count:
        raise ValueError(f"--stream-id given {len(given)} times for {count} source(s)")
    return [wire.check_stream_id(s) for s in given]


def node_config(
    values: Mapping[str, Any],
    streams: Iterable[tuple[str, str, Mapping[str, Any], Mapping[int, Prompt]]],
    **internal: Any,
) -> NodeConfig:
    """The NodeConfig of option values and (stream id, source, stream values, prompts)
    per stream; stream values fall back to the node-wide ones, then the defaults."""
    v = {**DEFAULTS, **values}
    built = []
    for stream_id, source, own, prompts in streams:
        sv = {**v, **own}
        kwargs = {o.field: sv[o.key] for o in options("stream") if o.key != "stream_id"}
        kwargs["zones"] = sv.get("zones", ())  # [[zones]] / [[streams.zones]] tables
        built.append(StreamConfig(source=source, stream_id=stream_id, prompts=prompts, **kwargs))
    kwargs = {o.field: v[o.key] for o in options("node")}
    return NodeConfig(streams=tuple(built), tracker=tracker_config(v), **kwargs, **internal)
