"""`sam2long-stream`: run a tracker node, watch its output, and steer it.

    sam2long-stream run rtsp://127.0.0.1:8554/cam --checkpoint sam2.1_hiera_tiny.pt \\
        --box 120,100,200,180 --overlay-out demo-out/overlay.mp4
    sam2long-stream subscribe --count 10
    sam2long-stream view --out demo-out/masks.mp4 --count 50
    sam2long-stream prompt add --id 2 --box 10,10,80,90
    sam2long-stream prompt status
    sam2long-stream keys --out keys --name node      # CurveZMQ keypair (see docs)

Prompts on the command line: each ``--box`` is one object, ids 1, 2, ... in order. Each
``--point x,y[,label]`` is an object of its own (ids continuing after the boxes), unless
``--point-object ID`` is given: then all points form one prompt for object ID (combined
with the box of that id, if there is one). Label 1 (default) is positive, 0 negative.

``--config node.toml`` takes the same keys as the flags (underscores: ``image_size``,
``stream_id``, ...) and ``[[prompts]]`` tables (``id`` and ``box`` or ``points`` +
``labels``); flags given on the command line override it, and prompts given on the
command line replace its prompts. See launch/node.example.toml.

Overlay: messages carry masks, not pixels, and pairing a second decode of the source with
the node's messages is unreliable (each client of a camera gets different frames). So the
overlay over real frames is written by the node itself (``run --overlay-out``), which
has each frame and its masks in hand. ``view`` draws the received masks on a plain
background: it shows what a subscriber gets, nothing more.

Security: every socket binds to 127.0.0.1 unless ``--allow-remote`` is given (a
non-loopback ``--pub``, ``--control`` or ``--http`` is refused otherwise). CurveZMQ:
``run --curve-secret node.key_secret --curve-clients DIR`` on the node,
``--curve-secret client.key_secret --curve-server node.key`` on subscribe/view/prompt.
``--http HOST:PORT`` serves /healthz and /metrics (see docs/operations.md).

User errors print one line (``sam2long-stream: error: ...``) and exit 1 (2 for bad
usage); ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import time
import tomllib
from collections.abc import Sequence
from typing import Any, NoReturn

PROG = "sam2long-stream"
DEFAULT_PUB = "tcp://127.0.0.1:5556"
DEFAULT_CONTROL = "tcp://127.0.0.1:5557"
CHECKPOINT_HINT = (
    "random weights: masks are meaningless; pass --checkpoint sam2.1_hiera_tiny.pt "
    "(with the matching --model, e.g. sam2.1_hiera_t)"
)

# run options: key -> (type, default). The TOML file uses the same keys.
RUN_OPTIONS: dict[str, tuple[type, Any]] = {
    "source": (str, None),
    "checkpoint": (str, None),
    "model": (str, "sam2.1_hiera_t"),
    "device": (str, "cpu"),
    "image_size": (int, None),  # None: the model's 1024 with a checkpoint, 256 without
    "pathways": (int, 3),
    "lag": (int, 0),
    "seed": (int, 0),
    "compile": (bool, False),
    "pub": (str, DEFAULT_PUB),
    "control": (str, DEFAULT_CONTROL),
    "stream_id": (str, "cam0"),
    "policy": (str, "latest"),
    "max_frames": (int, None),
    "overlay_out": (str, None),
    "overlay_png": (str, None),
    "threads": (int, None),
    "http": (str, None),
    "allow_remote": (bool, False),
    "curve_secret": (str, None),
    "curve_clients": (str, None),
    "health_grace": (float, 30.0),
    "hwaccel": (str, "none"),
    "tls_cert": (str, None),  # whip:// only: HTTPS for the WHIP listener and its page
    "tls_key": (str, None),
}


class UsageError(ValueError):
    """A bad flag value: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


# --------------------------------------------------------------------------- parsing


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``x0,y0,x1,y1`` -> 4 finite floats with x0 < x1 and y0 < y1."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise UsageError(f"bad box {text!r}: expected x0,y0,x1,y1 (4 numbers, frame pixels)")
    x0, y0, x1, y1 = values
    if not (x0 < x1 and y0 < y1):
        raise UsageError(f"bad box {text!r}: need x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def parse_point(text: str) -> tuple[float, float, int]:
    """``x,y`` or ``x,y,label`` (label 1 positive, default; 0 negative)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
    except (ValueError, IndexError):
        x = y = math.nan
        label = 1
    if len(parts) not in (2, 3) or not (math.isfinite(x) and math.isfinite(y)):
        raise UsageError(f"bad point {text!r}: expected x,y or x,y,label")
    if label not in (0, 1):
        raise UsageError(f"bad point {text!r}: label must be 1 (positive) or 0 (negative)")
    return x, y, label


def _arg(fn: Any) -> Any:
    """An argparse `type` that turns our ValueError into argparse's one-line error."""

    def convert(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = fn.__name__
    return convert


def load_config(path: str) -> dict[str, Any]:
    """Read a node TOML file into run options (+ "prompts": list of tables)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"config file {path} is a directory") from None
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key == "prompts":
            if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
                raise ValueError(f"{path}: prompts must be [[prompts]] tables")
            out["prompts"] = value
            continue
        if key not in RUN_OPTIONS:
            raise ValueError(
                f"{path}: unknown key {raw_key!r}; expected prompts or one of "
                f"{', '.join(RUN_OPTIONS)}"
            )
        kind = RUN_OPTIONS[key][0]
        if kind is int and (type(value) is not int):
            raise ValueError(f"{path}: {raw_key} must be an integer, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise ValueError(f"{path}: {raw_key} must be a string, got {value!r}")
        if kind is bool and type(value) is not bool:
            raise ValueError(f"{path}: {raw_key} must be true or false, got {value!r}")
        if kind is float:
            if type(value) not in (int, float):
                raise ValueError(f"{path}: {raw_key} must be a number, got {value!r}")
            value = float(value)
        out[key] = value
    return out


def _config_prompts(tables: list[dict[str, Any]], where: str) -> dict[int, Any]:
    from sam2long_stream.tracker import Prompt

    prompts: dict[int, Any] = {}
    for n, table in enumerate(tables, 1):
        unknown = sorted(set(table) - {"id", "box", "points", "labels"})
        if unknown:
            raise ValueError(f"{where}: prompt #{n} has unknown key(s) {', '.join(unknown)}")
        oid = table.get("id")
        if type(oid) is not int or oid < 0:
            raise ValueError(f"{where}: prompt #{n} needs an integer id >= 0")
        if oid in prompts:
            raise ValueError(f"{where}: two prompts for object {oid}")
        box = table.get("box")
        points, labels = table.get("points"), table.get("labels")
        if box is None and points is None:
            raise ValueError(f"{where}: prompt for object {oid} needs a box or points")
        if box is not None:
            if not isinstance(box, list):
                raise ValueError(f"{where}: box of object {oid} must be [x0, y0, x1, y1]")
            box = parse_box(",".join(str(v) for v in box))
        if points is not None:
            if not isinstance(points, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in points
            ):
                raise ValueError(f"{where}: points of object {oid} must be [[x, y], ...]")
            labels = [1] * len(points) if labels is None else labels
            if not isinstance(labels, list) or len(labels) != len(points):
                raise ValueError(f"{where}: object {oid} needs one label per point")
            pairs = zip(points, labels, strict=True)
            parsed = [parse_point(f"{x},{y},{lab}") for (x, y), lab in pairs]
            points = [(x, y) for x, y, _ in parsed]
            labels = [lab for _, _, lab in parsed]
        prompts[oid] = Prompt(box=box, points=points, labels=labels)
    return prompts


def _cli_prompts(args: argparse.Namespace) -> dict[int, Any]:
    """--box / --point / --point-object -> {object id: Prompt} (see the module doc)."""
    from sam2long_stream.tracker import Prompt

    boxes: dict[int, Any] = {i: b for i, b in enumerate(args.box or [], 1)}
    points = list(args.point or [])
    prompts: dict[int, Any] = {i: Prompt(box=b) for i, b in boxes.items()}
    if args.point_object is not None:
        if not points:
            raise UsageError("--point-object needs at least one --point")
        oid = args.point_object
        prompts[oid] = Prompt(
            box=boxes.get(oid),
            points=[(x, y) for x, y, _ in points],
            labels=[lab for _, _, lab in points],
        )
    else:
        for n, (x, y, lab) in enumerate(points, len(boxes) + 1):
            prompts[n] = Prompt(points=[(x, y)], labels=[lab])
    return prompts


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    """Build the node from TOML + flags and run it until stopped or done."""
    opts = {key: default for key, (_, default) in RUN_OPTIONS.items()}
    toml_prompts: dict[int, Any] = {}
    if args.config:
        loaded = load_config(args.config)
        toml_prompts = _config_prompts(loaded.pop("prompts", []), args.config)
        opts.update(loaded)
    for key in RUN_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    if not opts["source"]:
        raise UsageError("no SOURCE given (on the command line or as source in --config)")
    prompts = _cli_prompts(args) if (args.box or args.point) else toml_prompts
    _check_run_options(opts)
    ckpt = opts["checkpoint"]
    if ckpt is not None:
        if not os.path.isfile(ckpt):
            raise ValueError(f"checkpoint not found: {ckpt}")
        if not os.access(ckpt, os.R_OK):
            raise ValueError(f"checkpoint not readable: {ckpt}")

    from sam2long_stream.node import Node, NodeConfig, format_summary
    from sam2long_stream.tracker import TrackerConfig

    tracker = TrackerConfig(
        model=opts["model"],
        checkpoint=ckpt,
        seed=opts["seed"],
        device=opts["device"],
        # SAM 2 is trained at 1024 px; random weights only need to exercise the code.
        image_size=opts["image_size"] or (None if ckpt else 256),
        num_pathways=opts["pathways"],
        lag=opts["lag"],
        compile=opts["compile"],
    )
    tls = {k: opts[k] for k in ("tls_cert", "tls_key") if opts[k]}
    if tls and not str(opts["source"]).strip().lower().startswith("whip://"):
        raise UsageError("--tls-cert/--tls-key apply to whip:// sources only")
    control = opts["control"]
    config = NodeConfig(
        source_options=tls,
        source=opts["source"],
        tracker=tracker,
        prompts=prompts,
        pub=opts["pub"],
        control=None if control in ("", "off", "none") else control,
        stream_id=opts["stream_id"],
        policy=opts["policy"],
        max_frames=opts["max_frames"],
        overlay_out=opts["overlay_out"],
        overlay_png=opts["overlay_png"],
        torch_threads=opts["threads"],
        allow_remote=opts["allow_remote"],
        curve_secret=opts["curve_secret"],
        curve_clients=opts["curve_clients"],
        http=None if opts["http"] in ("", "off", "none") else opts["http"],
        health_grace_s=opts["health_grace"],
        hwaccel=opts["hwaccel"],
    )
    node = Node(config)
    print(
        f"{PROG}: {config.source} -> {node.endpoint} (stream {config.stream_id})"
        + (f", control {node.control_endpoint}" if node.control_endpoint else "")
        + (f", health {node.http_endpoint}/healthz" if node.http_endpoint else "")
        + (", CurveZMQ on" if config.curve_secret else ""),
        file=sys.stderr,
        flush=True,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        node.stop()
        signal.signal(signum, signal.default_int_handler)  # a second one interrupts hard

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # The loop runs on its own thread; this one only waits, so a signal handler never
    # interrupts the loop in the middle of a frame.
    node.start()
    warned = ckpt is not None
    while not node.join(0.2):
        if not warned and node.state in ("running", "unhealthy"):
            print(f"{PROG}: warning: {CHECKPOINT_HINT}", file=sys.stderr, flush=True)
            warned = True
    if node.error is not None:
        raise node.error
    summary = node.summary()
    if not warned and summary["frames"]:
        print(f"{PROG}: warning: {CHECKPOINT_HINT}", file=sys.stderr, flush=True)
    print(format_summary(summary), flush=True)
    if config.overlay_out or config.overlay_png:
        outs = " and ".join(p for p in (config.overlay_out, config.overlay_png) if p)
        print(f"overlay: {outs} ({summary['overlay_frames']} frames)", flush=True)
    return 0


def _check_run_options(opts: dict[str, Any]) -> None:
    """Values that are wrong whatever the node: one line naming the flag, before torch
    is imported (the node checks everything again)."""

    def at_least(key: str, lo: int, hi: int | None = None) -> None:
        v = opts[key]
        if v is None:
            return
        flag = "--" + key.replace("_", "-")
        if type(v) is not int or v < lo or (hi is not None and v > hi):
            limits = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
            raise UsageError(f"{flag} must be an integer {limits}, got {v!r}")

    at_least("pathways", 1, 16)
    at_least("lag", 0)
    at_least("threads", 1)
    at_least("max_frames", 1)
    if opts["policy"] not in ("latest", "all"):
        raise UsageError(f"--policy must be latest or all, got {opts['policy']!r}")
    grace = opts["health_grace"]
    if not (isinstance(grace, int | float) and math.isfinite(grace) and grace > 0):
        raise UsageError(f"--health-grace must be a number of seconds > 0, got {grace!r}")
    if (opts["curve_secret"] is None) != (opts["curve_clients"] is None):
        raise UsageError(
            "--curve-secret and --curve-clients go together (see sam2long-stream keys)"
        )


def cmd_keys(args: argparse.Namespace) -> int:
    """Write a CurveZMQ keypair: NAME.key (public, give it out) and NAME.key_secret."""
    from sam2long_stream.security import create_keys

    public, secret = create_keys(args.out, args.name, force=args.force)
    print(f"public key: {public}\nsecret key: {secret} (mode 600; keep it private)", flush=True)
    return 0


def _describe_masks(msg: Any) -> str:
    objs = " ".join(
        f"{o['id']}:{'present' if o['present'] else 'absent'}/"
        f"{'-' if o['iou'] is None else format(o['iou'], '.2f')}/{o['area']}"
        for o in msg.objects
    )
    switched = int(bool(msg.header.get("pathway_switched")))
    kind = "lagged" if msg.lag else "masks"
    return (
        f"{kind} {msg.stream_id} seq={msg.seq} idx={msg.frame_index} "
        f"latency={msg.latency_ms:.1f}ms node={msg.node_latency_ms:.1f}ms "
        f"dropped={msg.dropped_frames} switch={switched} {objs or '(no objects)'}"
    )


def _describe_status(msg: Any) -> str:
    skip = {"schema", "type", "stream_id", "state", "time_ns", "timings_ms"}
    fields = " ".join(
        f"{k}={json.dumps(v, separators=(',', ':'))}"
        for k, v in msg.header.items()
        if k not in skip and v is not None
    )
    return f"status {msg.stream_id} {msg.state} {fields}".rstrip()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def cmd_subscribe(args: argparse.Namespace) -> int:
    """Print one line per message until --count messages or --timeout."""
    from sam2long_stream.transport.subscriber import Subscriber

    topics = args.topic or ["masks/", "masks-lagged/", "status/"]
    got = 0
    deadline = _deadline(args.timeout)
    with Subscriber(
        args.pub,
        topics=topics,
        stream_id=args.stream_id,
        curve_secret=args.curve_secret,
        curve_server=args.curve_server,
    ) as sub:
        print(f"{PROG}: subscribed to {args.pub} ({' '.join(topics)})", file=sys.stderr, flush=True)
        while args.count is None or got < args.count:
            msg = sub.recv(timeout_s=_left(deadline) if deadline is not None else 0.5)
            if msg is None:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                continue
            got += 1
            line = _describe_status(msg) if hasattr(msg, "state") else _describe_masks(msg)
            print(line, flush=True)
    if args.count is not None and got < args.count:
        raise TimeoutError(f"received {got} of {args.count} messages from {args.pub}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Draw received masks on a plain background into a video (and a PNG)."""
    import numpy as np

    from sam2long_stream.overlay import OverlayWriter
    from sam2long_stream.transport.subscriber import Subscriber

    topic = "masks-lagged/" if args.lagged else "masks/"
    curve = {"curve_secret": args.curve_secret, "curve_server": args.curve_server}
    Subscriber(args.pub, topics=[topic], **curve).close()  # bad keys or address: fail early
    writer = OverlayWriter(args.out, args.png)
    got = 0
    deadline = _deadline(args.timeout)
    try:
        with Subscriber(args.pub, topics=[topic], stream_id=args.stream_id, **curve) as sub:
            print(f"{PROG}: subscribed to {args.pub} ({topic})", file=sys.stderr, flush=True)
            while args.count is None or got < args.count:
                msg = sub.recv(timeout_s=_left(deadline) if deadline is not None else 0.5)
                if msg is None:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    continue
                background = np.full((msg.height, msg.width, 3), 40, dtype=np.uint8)
                writer.write(background, msg.masks, msg.capture_time_ns / 1e9)
                got += 1
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
    outs = " and ".join(p for p in (args.out, args.png) if p)
    print(f"wrote {got} frames of masks (on a plain background) to {outs}", flush=True)
    if got == 0:
        raise TimeoutError(f"no masks message from {args.pub}")
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    """Send one control request, print the JSON reply; exit 1 when ok is false."""
    from sam2long_stream.control import ControlClient

    req: dict[str, Any] = {"op": args.action}
    if args.action == "add_object":
        if args.box is None and not args.point:
            raise UsageError("prompt add needs --box and/or --point")
        if args.id is not None:
            req["object_id"] = args.id
        if args.box is not None:
            req["box"] = list(args.box)
        if args.point:
            req["points"] = [[x, y] for x, y, _ in args.point]
            req["labels"] = [lab for _, _, lab in args.point]
        if args.frame_seq is not None:
            req["frame_seq"] = args.frame_seq
    elif args.action == "remove_object":
        req["object_id"] = args.id
    elif args.action == "set":
        try:
            value = json.loads(args.value)
        except ValueError:
            value = args.value
        req.update(key=args.key, value=value)
    with ControlClient(
        args.control,
        timeout_s=args.timeout,
        curve_secret=args.curve_secret,
        curve_server=args.curve_server,
    ) as client:
        reply = client.request(req)
    print(json.dumps(reply), flush=True)
    return 0 if reply.get("ok") else 1


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common.add_argument(
        "--log-level", default="INFO", help="logging level (default INFO; --debug: DEBUG)"
    )
    client_curve = argparse.ArgumentParser(add_help=False)
    client_curve.add_argument(
        "--curve-secret",
        dest="curve_secret",
        metavar="FILE",
        help="CurveZMQ: this client's .key_secret file (with --curve-server)",
    )
    client_curve.add_argument(
        "--curve-server",
        dest="curve_server",
        metavar="FILE",
        help="CurveZMQ: the node's public .key file",
    )

    parser = _Parser(
        prog=PROG,
        description="Online SAM2Long tracker node: RTSP/WebRTC in, ZeroMQ masks out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    from sam2long_stream import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", parents=[common], help="run the tracker node")
    run.add_argument(
        "source",
        nargs="?",
        help="rtsp://..., whip://..., whep+http://..., "
        "synthetic://moving-shapes?..., or a video file",
    )
    run.add_argument("--config", metavar="FILE", help="node TOML file (flags override it)")
    run.add_argument("--checkpoint", metavar="PATH", help="official SAM 2 .pt checkpoint")
    run.add_argument("--model", help="sam2.1_hiera_t (default), _s, _b+, _l; sam2_hiera_*")
    run.add_argument("--device", help="torch device (default cpu)")
    run.add_argument(
        "--image-size",
        dest="image_size",
        type=int,
        help="multiple of 64 (default: 1024 with --checkpoint, 256 without)",
    )
    run.add_argument("--pathways", type=int, help="SAM2Long pathways per object (3)")
    run.add_argument(
        "--lag", type=int, help="also publish masks-lagged/ with L frames of hindsight"
    )
    run.add_argument("--seed", type=int, help="seed for random weights (no checkpoint)")
    run.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the image encoder and memory attention (slow first frames; "
        "falls back to eager if compiling fails)",
    )
    run.add_argument(
        "--box",
        action="append",
        type=_arg(parse_box),
        metavar="x0,y0,x1,y1",
        help="an object's box on the first frame (repeatable; ids 1, 2, ...)",
    )
    run.add_argument(
        "--point",
        action="append",
        type=_arg(parse_point),
        metavar="x,y[,label]",
        help="a point prompt; each is its own object unless --point-object",
    )
    run.add_argument(
        "--point-object",
        dest="point_object",
        type=int,
        metavar="ID",
        help="put all --point flags into one prompt for object ID",
    )
    run.add_argument("--pub", help=f"PUB address (default {DEFAULT_PUB})")
    run.add_argument("--control", help=f"control address (default {DEFAULT_CONTROL}; off)")
    run.add_argument("--stream-id", dest="stream_id", help="stream id in topics (cam0)")
    run.add_argument("--policy", choices=("latest", "all"), help="frame queue policy (latest)")
    run.add_argument("--max-frames", dest="max_frames", type=int, help="stop after N frames")
    run.add_argument(
        "--overlay-out",
        dest="overlay_out",
        metavar="MP4",
        help="write masks over the very frames they were computed from",
    )
    run.add_argument(
        "--overlay-png",
        dest="overlay_png",
        metavar="PNG",
        help="write the last overlay frame as PNG",
    )
    run.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    run.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve /healthz and /metrics (off by default; e.g. 127.0.0.1:8080)",
    )
    run.add_argument(
        "--health-grace",
        dest="health_grace",
        type=float,
        metavar="S",
        help="/healthz fails after S seconds without a frame (30)",
    )
    run.add_argument(
        "--allow-remote",
        dest="allow_remote",
        action="store_true",
        default=None,
        help="allow --pub/--control/--http on non-loopback addresses (use CurveZMQ too)",
    )
    run.add_argument(
        "--curve-secret",
        dest="curve_secret",
        metavar="FILE",
        help="CurveZMQ: the node's .key_secret file (with --curve-clients)",
    )
    run.add_argument(
        "--curve-clients",
        dest="curve_clients",
        metavar="DIR",
        help="CurveZMQ: directory of authorised client public .key files",
    )
    run.add_argument(
        "--hwaccel",
        metavar="{none,auto,TYPE}",
        help="video decoding of RTSP/file sources: none (software, default), auto, or an "
        "FFmpeg device type such as cuda; an unusable device falls back to software",
    )
    run.add_argument(
        "--tls-cert",
        dest="tls_cert",
        metavar="PEM",
        help="whip:// sources: serve the WHIP endpoint and its page over HTTPS (with --tls-key)",
    )
    run.add_argument("--tls-key", dest="tls_key", metavar="PEM", help="key of --tls-cert")
    run.set_defaults(func=cmd_run)

    subs = sub.add_parser(
        "subscribe", parents=[common, client_curve], help="print received messages"
    )
    subs.add_argument("--pub", default=DEFAULT_PUB, help=f"node PUB address ({DEFAULT_PUB})")
    subs.add_argument(
        "--topic",
        action="append",
        metavar="PREFIX",
        help="topic prefix (repeatable; default masks/, masks-lagged/, status/)",
    )
    subs.add_argument("--stream-id", dest="stream_id", help="only this stream")
    subs.add_argument("--count", type=int, help="exit after N messages (any kind)")
    subs.add_argument(
        "--timeout", type=float, help="give up after S seconds (exit 1 if --count was not reached)"
    )
    subs.set_defaults(func=cmd_subscribe)

    view = sub.add_parser(
        "view",
        parents=[common, client_curve],
        help="draw received masks on a plain background (the overlay over real frames "
        "comes from run --overlay-out)",
    )
    view.add_argument("--pub", default=DEFAULT_PUB, help=f"node PUB address ({DEFAULT_PUB})")
    view.add_argument("--stream-id", dest="stream_id", help="only this stream")
    view.add_argument("--out", default="demo-out/masks.mp4", help="video to write")
    view.add_argument("--png", default=None, help="PNG of the last frame")
    view.add_argument("--count", type=int, help="stop after N masks messages")
    view.add_argument("--timeout", type=float, help="stop after S seconds")
    view.add_argument("--lagged", action="store_true", help="use masks-lagged/ instead")
    view.set_defaults(func=cmd_view)

    prompt = sub.add_parser("prompt", parents=[common, client_curve], help="send a control request")
    prompt.add_argument(
        "--control", default=DEFAULT_CONTROL, help=f"node control address ({DEFAULT_CONTROL})"
    )
    prompt.add_argument("--timeout", type=float, default=5.0, help="reply timeout, s (5)")
    actions = prompt.add_subparsers(dest="action_name", required=True, parser_class=_Parser)
    add = actions.add_parser("add", help="add (or re-prompt) an object")
    add.add_argument("--id", type=int, help="object id (default: the node picks one)")
    add.add_argument("--box", type=_arg(parse_box), metavar="x0,y0,x1,y1", help="box prompt")
    add.add_argument(
        "--point",
        action="append",
        type=_arg(parse_point),
        metavar="x,y[,label]",
        help="point prompt (repeatable: all points go to this one object)",
    )
    add.add_argument(
        "--frame-seq",
        dest="frame_seq",
        type=int,
        help="seq of the frame the prompt was drawn on (informative: the node applies it "
        "to its next frame and replies with that frame's seq)",
    )
    add.set_defaults(action="add_object")
    remove = actions.add_parser("remove", help="stop tracking an object")
    remove.add_argument("--id", type=int, required=True)
    remove.set_defaults(action="remove_object")
    actions.add_parser("reset", help="forget every object").set_defaults(action="reset")
    actions.add_parser("status", help="node state").set_defaults(action="status")
    setp = actions.add_parser(
        "set",
        help="set an option: num_pathways P (1..16) is taken up when the next add is "
        "applied, and from then on holds for every object",
    )
    setp.add_argument("key")
    setp.add_argument("value")
    setp.set_defaults(action="set")
    prompt.set_defaults(func=cmd_prompt)

    keys = sub.add_parser(
        "keys", parents=[common], help="write a CurveZMQ keypair (NAME.key, NAME.key_secret)"
    )
    keys.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    keys.add_argument("--name", default="node", help="file name stem (default node)")
    keys.add_argument("--force", action="store_true", help="replace existing files")
    keys.set_defaults(func=cmd_keys)

    from sam2long_stream.launch import add_parser as add_launch_parser

    add_launch_parser(sub, parents=[common])
    # Listed for --help; main() hands their arguments to the tool's own parser.
    for name, (_, help_text) in PASSTHROUGH.items():
        sub.add_parser(name, add_help=False, help=f"{help_text} (see {PROG} {name} --help)")
    return parser


def _is_user_error(exc: BaseException) -> bool:
    """ValueError (bad value, ControlError, WireFormatError), OSError (file, socket,
    TimeoutError) and NodeError are the user's to fix; anything else is a bug."""
    node = sys.modules.get("sam2long_stream.node")  # not imported by the light commands
    node_error = (node.NodeError,) if node is not None else ()
    return isinstance(exc, (ValueError, OSError, *node_error))


# Subcommands that are whole tools with their own argument parser and report.
PASSTHROUGH = {
    "bench": ("sam2long_stream.benchmark", "benchmark: speed and memory ratios, GPU FPS table"),
    "eval": ("sam2long_stream.eval_vos", "J&F on a DAVIS- or SA-V-format dataset, P=1 vs P=3"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        tool = importlib.import_module(PASSTHROUGH[argv[0]][0])
        return int(tool.main(argv[1:], prog=f"{PROG} {argv[0]}"))
    parser = build_parser()
    args = parser.parse_args(argv)
    level = "DEBUG" if args.debug else str(args.log_level).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug or not _is_user_error(exc):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())
