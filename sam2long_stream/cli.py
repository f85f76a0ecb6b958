"""`sam2long-stream`: run a tracker node, watch its output, and steer it.

    sam2long-stream run rtsp://127.0.0.1:8554/cam --checkpoint sam2.1_hiera_tiny.pt \\
        --box 120,100,200,180 --overlay-out demo-out/overlay.mp4
    sam2long-stream run rtsp://10.0.0.5/a rtsp://10.0.0.6/b    # two cameras, one model
    sam2long-stream subscribe --count 10
    sam2long-stream view --out demo-out/masks.mp4 --count 50
    sam2long-stream prompt add --id 2 --box 10,10,80,90
    sam2long-stream prompt --stream cam1 add --box 10,10,80,90   # with several streams
    sam2long-stream prompt add-stream rtsp://10.0.0.7/c --stream door
    sam2long-stream prompt remove-stream door
    sam2long-stream prompt add-zone driveway 0,120 160,120 160,240 0,240 --stream door
    sam2long-stream prompt status
    sam2long-stream keys --out keys --name node      # CurveZMQ keypair (see docs)
    sam2long-stream mqtt --pub tcp://127.0.0.1:5556 --broker mqtt://127.0.0.1:1883

Several sources: one process, one model; each camera is a stream with its own tracker
and topics (``masks/<id>``, ``status/<id>``), ids ``cam0``, ``cam1``, ... in the order
given unless ``--stream-id`` is repeated, once per source.

Prompts on the command line (applied to every stream's first frame): each ``--box`` is
one object, ids 1, 2, ... in order. Each ``--point x,y[,label]`` is an object of its own
(ids continuing after the boxes), unless ``--point-object ID`` is given: then all points
form one prompt for object ID (combined with the box of that id, if there is one).
Label 1 (default) is positive, 0 negative.

``--config node.toml`` takes the same keys as the flags (underscores: ``image_size``,
``stream_id``, ...), ``[[prompts]]`` tables (``id`` and ``box`` or ``points`` +
``labels``), and either one ``source`` or ``[[streams]]`` tables (``source``,
``stream_id``, stream options and their own ``[[streams.prompts]]``). Flags given on the
command line override it, sources given on the command line replace its sources, and
prompts given on the command line replace its prompts. See launch/node.example.toml.

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

User errors print one line (``sam2long-stream: error: ...``, user input in it shortened);
``--debug`` shows tracebacks. Exit statuses: 2 for a usage error (a bad flag or config
file, or a source, file, address or key it names that cannot be used, found before
anything runs: for subscribe/view/prompt also a malformed ``--pub``/``--control``, a
``--timeout`` that is not finite seconds, a ``--count`` below 1), 1 for a runtime
failure (a source that fails before its first frame, an address in use, a refused
control request, nothing received or no reply within ``--timeout``), 0 otherwise;
128 + signal for a second SIGINT/SIGTERM during shutdown.
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
from collections.abc import Sequence
from typing import Any

from sam2long_stream import security, settings
from sam2long_stream.control.client import DEFAULT_TIMEOUT_S
from sam2long_stream.control.protocol import DEFAULT_ADDRESS as DEFAULT_CONTROL
from sam2long_stream.control.protocol import MAX_FRAME_SEQ
from sam2long_stream.limits import MAX_ERROR_CHARS, quote, shorten, shown
from sam2long_stream.models import RANDOM_WEIGHTS, check_checkpoint_file
from sam2long_stream.redact import redact_url
from sam2long_stream.settings import DEFAULT_PUB
from sam2long_stream.transport import wire
from sam2long_stream.usage import PROG, UsageError, UsageParser

MAX_TIMEOUT_S = 7 * 86400.0  # --timeout: a week; longer is a typo (and overflows polls)
CHECKPOINT_HINT = (
    "random weights: masks are meaningless; leave out --model/--checkpoint for the bundled "
    "sam2long_mini, or pass --checkpoint sam2.1_hiera_tiny.pt --model sam2.1_hiera_t"
)


# --------------------------------------------------------------------------- parsing


def _arg(fn: Any) -> Any:
    """An argparse `type` that turns our ValueError into argparse's one-line error."""

    def convert(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = fn.__name__
    return convert


def _whole(low: int, high: int | None, what: str) -> Any:
    """A flag's integer in low..high (``what`` names it in the error)."""
    bounds = f"in {low}..{high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= (value if high is None else high):
            raise ValueError(f"must be {what} {bounds}, got {quote(text)}")
        return value

    parse.__name__ = what
    return parse


_count = _whole(1, None, "a whole number")  # --count: how many messages
_object_id = _whole(0, wire.MAX_OBJECT_ID, "an object id")  # --id, --point-object
_frame_seq = _whole(0, MAX_FRAME_SEQ, "a frame seq")  # --frame-seq


def _seconds(text: str) -> float:
    """``--timeout``: finite seconds > 0 (NaN would wait forever, inf overflows a poll,
    a negative one is a ZeroMQ poll without end)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(f"must be seconds in (0, {MAX_TIMEOUT_S:g}], got {quote(text)}")
    return value


def _vertex(text: str) -> tuple[float, float]:
    """A zone polygon's corner, ``x,y`` in frame pixels (the node checks the polygon)."""
    try:
        x, y = (float(part) for part in str(text).split(","))
    except ValueError:  # not numbers, or not two of them
        x = y = math.nan
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"bad corner {quote(text)}: expected x,y")
    return x, y


def _fraction(text: str) -> float:
    """``--enter``/``--leave``: a share of the object's mask, in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails too
        raise ValueError(f"must be a fraction in [0, 1], got {quote(text)}")
    return value


def _video_path(text: str) -> str:
    """``view --out``: a file name whose extension FFmpeg can write."""
    from sam2long_stream.overlay import check_video_path

    check_video_path(text)
    return text


def _image_path(text: str) -> str:
    """``view --png``: a file name whose extension Pillow can write."""
    from sam2long_stream.overlay import check_image_path

    check_image_path(text)
    return text


def _usage(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; its ValueError is a usage mistake (exit status 2)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run_config(args: argparse.Namespace) -> settings.NodeConfig:
    """The NodeConfig of ``run``'s TOML file and flags (see the module docstring).
    ValueError (UsageError for a bad flag) in one line, before torch is imported."""
    file = settings.read_toml(args.config) if args.config else None
    flags = _usage(settings.read_flags, args)
    values = {**(file.values if file else {}), **flags}
    given_ids: list[str] | None = args.stream_id
    cli_prompts = None
    if args.box or args.point or args.point_object is not None:
        cli_prompts = _usage(settings.cli_prompts, args.box, args.point, args.point_object)
    top_prompts = file.prompts if file else {}
    streams: list[tuple[str, str, dict[str, Any], Any]] = []
    if args.sources or (file and file.sources):
        sources = list(args.sources or file.sources)  # type: ignore[union-attr]
        if given_ids is None and len(sources) == 1 and values.get("stream_id"):
            given_ids = [values["stream_id"]]
        ids = _usage(settings.stream_ids, len(sources), given_ids)
        prompts = cli_prompts if cli_prompts is not None else top_prompts
        streams = [(sid, src, {}, prompts) for sid, src in zip(ids, sources, strict=True)]
    elif file and file.streams:
        n = len(file.streams)
        ids = _usage(settings.stream_ids, n, given_ids) if given_ids else None
        for k, (table, own_prompts) in enumerate(file.streams):
            own = {key: v for key, v in table.items() if key not in ("source", "stream_id")}
            own = {key: v for key, v in own.items() if key not in flags}  # flags win
            sid = ids[k] if ids else table.get("stream_id") or f"cam{k}"
            prompts = (
                cli_prompts
                if cli_prompts is not None
                else own_prompts
                if own_prompts is not None
                else top_prompts
            )
            streams.append((sid, table["source"], own, prompts))
    else:
        raise UsageError(
            "no SOURCE given (on the command line, or as source or [[streams]] in --config)"
        )
    values.pop("stream_id", None)
    if values.get("tls_cert") and not any(
        src.strip().lower().startswith("whip://") for _, src, _, _ in streams
    ):
        raise UsageError("--tls-cert/--tls-key apply to whip:// sources only")
    ckpt = values.get("checkpoint")
    if ckpt is not None and ckpt != RANDOM_WEIGHTS:
        check_checkpoint_file(ckpt, shown(ckpt))
    return settings.node_config(values, streams)


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    """Build the node from TOML + flags and run it until stopped or done."""
    # Everything wrong in what was asked (flags, the TOML, the sources, files and
    # addresses they name) is found before the node runs: a usage error, exit 2.
    config = _usage(run_config, args)
    from sam2long_stream.node import Node, format_summary

    node = _usage(Node, config)  # a ValueError; OSError (an address in use) is runtime
    streams = config.streams
    if len(streams) == 1:
        what = f"{redact_url(streams[0].source)} -> {node.endpoint} (stream {streams[0].stream_id})"
    else:
        listed = ", ".join(f"{s.stream_id} <- {redact_url(s.source)}" for s in streams)
        what = f"{len(streams)} streams -> {node.endpoint} ({listed})"
    print(
        f"{PROG}: {what}"
        + f", device {node.device}"
        + (f", control {node.control_endpoint}" if node.control_endpoint else "")
        + (f", health {node.http_endpoint}/healthz" if node.http_endpoint else "")
        + (", CurveZMQ on" if config.curve_secret else ""),
        file=sys.stderr,
        flush=True,
    )

    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        """The first SIGINT/SIGTERM stops the node cleanly; another one during that
        shutdown exits at once, always the same way: one line, status 128 + signal
        (no interpreter teardown under running threads, so no traceback or abort)."""
        if stopping:
            name = signal.Signals(signum).name
            os.write(2, f"{PROG}: {name} during shutdown: exiting now\n".encode())
            os._exit(128 + signum)
        stopping.append(signum)
        node.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # The loop runs on its own thread; this one only waits, so a signal handler never
    # interrupts the loop in the middle of a frame.
    node.start()
    warned = config.tracker.checkpoint is not None
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
    for s in (stream.config for stream in node.streams()):  # paths as the node made them
        outs = [p for p in (s.overlay_out, s.overlay_png) if p]
        if outs:
            frames = summary["streams"].get(s.stream_id, {}).get("overlay_frames", 0)
            label = f" of {s.stream_id}" if len(streams) > 1 else ""
            of = f"{frames} frames" if s.overlay_out else f"the last of {frames} frames"
            print(f"overlay{label}: {' and '.join(outs)} ({of})", flush=True)
    return 0


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


def _describe_event(msg: Any) -> str:
    after = msg.after
    where = f" zone={msg.zone}" if msg.zone else ""
    why = f" reason={msg.reason}" if msg.reason else ""
    return (
        f"event {msg.stream_id} #{msg.event_seq} {msg.event} object={msg.object_id}{where}{why} "
        f"seq={msg.seq} present={after['present']} zones={','.join(after['zones']) or '-'}"
    )


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def cmd_subscribe(args: argparse.Namespace) -> int:
    """Print one line per message until --count messages or --timeout."""
    from sam2long_stream.transport.subscriber import Subscriber

    topics = args.topic or ["masks/", "masks-lagged/", "status/", "events/"]
    got = 0
    deadline = _deadline(args.timeout)
    # A key file that cannot be used, like a bad flag, is a usage error (exit 2).
    with _usage(
        Subscriber,
        args.pub,
        topics=topics,
        stream_id=args.stream_id,
        curve_secret=args.curve_secret,
        curve_server=args.curve_server,
    ) as sub:
        shown = " ".join(t if t.isprintable() and " " not in t else quote(t) for t in topics)
        print(f"{PROG}: subscribed to {args.pub} ({shorten(shown)})", file=sys.stderr, flush=True)
        while args.count is None or got < args.count:
            msg = sub.recv(timeout_s=_left(deadline) if deadline is not None else 0.5)
            if msg is None:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                continue
            got += 1
            if hasattr(msg, "state"):
                line = _describe_status(msg)
            elif hasattr(msg, "event"):
                line = _describe_event(msg)
            else:
                line = _describe_masks(msg)
            print(line, flush=True)
    if args.count is not None and got < args.count:
        raise TimeoutError(f"received {got} of {args.count} messages from {args.pub}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Draw received masks on a plain background into a video (and a PNG)."""
    import numpy as np

    from sam2long_stream.overlay import OverlayWriter, frame_time_s
    from sam2long_stream.transport.subscriber import MasksMessage, Subscriber

    topic = "masks-lagged/" if args.lagged else "masks/"
    curve = {"curve_secret": args.curve_secret, "curve_server": args.curve_server}
    _usage(Subscriber, args.pub, topics=[topic], **curve).close()  # bad keys: fail early
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
                if not isinstance(msg, MasksMessage):
                    continue
                background = np.full((msg.height, msg.width, 3), 40, dtype=np.uint8)
                writer.write(background, msg.masks, frame_time_s(msg.pts, msg.capture_time_ns))
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
    stream = getattr(args, "stream", None)
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
    elif args.action == "add_stream":
        req["source"] = args.source
        prompts = _usage(settings.cli_prompts, args.box, args.point, args.point_object)
        if prompts:
            req["prompts"] = [_prompt_json(oid, p) for oid, p in sorted(prompts.items())]
    elif args.action == "add_zone":
        req.update(name=args.name, polygon=[list(v) for v in args.corners])
        req.update(
            {k: getattr(args, k) for k in ("enter", "leave") if getattr(args, k) is not None}
        )
    elif args.action == "remove_zone":
        req["name"] = args.name
    elif args.action == "remove_stream":
        stream = args.stream_arg or stream
        if stream is None:
            raise UsageError("prompt remove-stream needs the stream's id")
    if stream is not None:
        req["stream"] = stream
    with _usage(
        ControlClient,
        args.control,
        timeout_s=args.timeout,
        curve_secret=args.curve_secret,
        curve_server=args.curve_server,
    ) as client:
        reply = client.request(req)
    print(json.dumps(reply), flush=True)
    return 0 if reply.get("ok") else 1


def _prompt_json(object_id: int, prompt: Any) -> dict[str, Any]:
    """A Prompt as an add_stream prompt entry."""
    out: dict[str, Any] = {"object_id": object_id}
    if prompt.box is not None:
        out["box"] = [float(v) for v in prompt.box]
    if prompt.points is not None:
        out["points"] = [[float(x), float(y)] for x, y in prompt.points]
        out["labels"] = [int(v) for v in prompt.labels]
    return out


# --------------------------------------------------------------------------- parser


def _add_prompt_flags(parser: argparse.ArgumentParser, when: str) -> None:
    """--box / --point / --point-object, read by `settings.cli_prompts`."""
    parser.add_argument(
        "--box",
        action="append",
        type=_arg(settings.parse_box),
        metavar="x0,y0,x1,y1",
        help=f"an object's box on {when} (repeatable; ids 1, 2, ...)",
    )
    parser.add_argument(
        "--point",
        action="append",
        type=_arg(settings.parse_point),
        metavar="x,y[,label]",
        help="a point prompt; each is its own object unless --point-object",
    )
    parser.add_argument(
        "--point-object",
        dest="point_object",
        type=_arg(_object_id),
        metavar="ID",
        help="put all --point flags into one prompt for object ID",
    )


def build_parser() -> argparse.ArgumentParser:
    # Flag values checked as they are parsed: a bad one is a usage error (exit 2).
    address = _arg(security.check_connect_address)
    stream_id = _arg(wire.check_stream_id)
    count, seconds, object_id = _arg(_count), _arg(_seconds), _arg(_object_id)
    pub_help = f"node PUB address ({DEFAULT_PUB})"
    common = UsageParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common.add_argument(
        "--log-level",
        default="INFO",
        type=_arg(settings.parse_log_level),
        help=f"logging level: {', '.join(settings.LOG_LEVELS)} (default INFO; --debug: DEBUG)",
    )
    client_curve = UsageParser(add_help=False)
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

    parser = UsageParser(
        prog=PROG,
        description="Online SAM2Long tracker node: RTSP/WebRTC in, ZeroMQ masks out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    from sam2long_stream import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UsageParser)

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the tracker node (one or more sources, one model)",
    )
    run.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="rtsp://..., whip://..., whep+http://..., synthetic://moving-shapes?..., or a "
        "video file; several: one stream each (cam0, cam1, ...), one model",
    )
    run.add_argument("--config", metavar="FILE", help="node TOML file (flags override it)")
    _add_prompt_flags(run, "the first frame of every stream")
    settings.add_flags(run)
    run.set_defaults(func=cmd_run)

    subs = sub.add_parser(
        "subscribe", parents=[common, client_curve], help="print received messages"
    )
    subs.add_argument("--pub", default=DEFAULT_PUB, type=address, help=pub_help)
    subs.add_argument(
        "--topic",
        action="append",
        metavar="PREFIX",
        help="topic prefix (repeatable; default masks/, masks-lagged/, status/, events/)",
    )
    subs.add_argument("--stream-id", dest="stream_id", type=stream_id, help="only this stream")
    subs.add_argument("--count", type=count, help="exit after N messages (any kind)")
    subs.add_argument(
        "--timeout",
        type=seconds,
        help="give up after S seconds (exit 1 if --count was not reached)",
    )
    subs.set_defaults(func=cmd_subscribe)

    view = sub.add_parser(
        "view",
        parents=[common, client_curve],
        help="draw received masks on a plain background (the overlay over real frames "
        "comes from run --overlay-out)",
    )
    view.add_argument("--pub", default=DEFAULT_PUB, type=address, help=pub_help)
    view.add_argument("--stream-id", dest="stream_id", type=stream_id, help="only this stream")
    view.add_argument(
        "--out", default="demo-out/masks.mp4", type=_arg(_video_path), help="video to write"
    )
    view.add_argument("--png", default=None, type=_arg(_image_path), help="PNG of the last frame")
    view.add_argument("--count", type=count, help="stop after N masks messages")
    view.add_argument("--timeout", type=seconds, help="stop after S seconds")
    view.add_argument("--lagged", action="store_true", help="use masks-lagged/ instead")
    view.set_defaults(func=cmd_view)

    prompt = sub.add_parser("prompt", parents=[common, client_curve], help="send a control request")
    prompt.add_argument(
        "--control",
        default=DEFAULT_CONTROL,
        type=address,
        help=f"node control address ({DEFAULT_CONTROL})",
    )
    prompt.add_argument(
        "--timeout", type=seconds, default=DEFAULT_TIMEOUT_S, help="reply timeout, s (10)"
    )
    stream_help = "the stream the request is about (needed when the node has several)"
    prompt.add_argument("--stream", metavar="ID", type=stream_id, help=stream_help)
    on_stream = UsageParser(add_help=False)  # also accepted after the action
    on_stream.add_argument(
        "--stream", metavar="ID", type=stream_id, default=argparse.SUPPRESS, help=stream_help
    )
    actions = prompt.add_subparsers(dest="action_name", required=True, parser_class=UsageParser)
    add = actions.add_parser("add", parents=[on_stream], help="add (or re-prompt) an object")
    add.add_argument("--id", type=object_id, help="object id (default: the node picks one)")
    add.add_argument(
        "--box", type=_arg(settings.parse_box), metavar="x0,y0,x1,y1", help="box prompt"
    )
    add.add_argument(
        "--point",
        action="append",
        type=_arg(settings.parse_point),
        metavar="x,y[,label]",
        help="point prompt (repeatable: all points go to this one object)",
    )
    add.add_argument(
        "--frame-seq",
        dest="frame_seq",
        type=_arg(_frame_seq),
        help="seq of the frame the prompt was drawn on (informative: the node applies it "
        "to its next frame and replies with that frame's seq)",
    )
    add.set_defaults(action="add_object")
    remove = actions.add_parser("remove", parents=[on_stream], help="stop tracking an object")
    remove.add_argument("--id", type=object_id, required=True)
    remove.set_defaults(action="remove_object")
    actions.add_parser(
        "reset", parents=[on_stream], help="forget every object (of the stream)"
    ).set_defaults(action="reset")
    actions.add_parser(
        "status",
        parents=[on_stream],
        help="a stream's state (with several streams and no --stream: the node's)",
    ).set_defaults(action="status")
    setp = actions.add_parser(
        "set",
        parents=[on_stream],
        help="set an option: num_pathways P (1..16) is taken up when the stream's next add "
        "is applied, and from then on holds for every object of the stream",
    )
    setp.add_argument("key")
    setp.add_argument("value")
    setp.set_defaults(action="set")
    add_stream = actions.add_parser(
        "add-stream",
        parents=[on_stream],
        help="start tracking one more camera (--stream: its id; default camN)",
    )
    add_stream.add_argument("source", help="the new stream's source URL or file")
    _add_prompt_flags(add_stream, "its first frame")
    add_stream.set_defaults(action="add_stream")
    remove_stream = actions.add_parser(
        "remove-stream", parents=[on_stream], help="stop one stream; the others go on"
    )
    remove_stream.add_argument(
        "stream_arg", nargs="?", metavar="ID", type=stream_id, help="the stream's id"
    )
    remove_stream.set_defaults(action="remove_stream")
    add_zone = actions.add_parser(
        "add-zone",
        parents=[on_stream],
        help="add (or replace) a named polygon zone: zone_enter/zone_leave events from the "
        "stream's next frame",
    )
    add_zone.add_argument("name", help="the zone's name (its topic and events use it)")
    add_zone.add_argument(
        "corners", nargs="+", type=_arg(_vertex), metavar="x,y", help="3 or more corners, px"
    )
    for flag, share in (("enter", "0.5"), ("leave", "0.25")):
        add_zone.add_argument(
            f"--{flag}",
            type=_arg(_fraction),
            help=f"share of the object's mask inside the zone to {flag} it (node default {share})",
        )
    add_zone.set_defaults(action="add_zone")
    remove_zone = actions.add_parser("remove-zone", parents=[on_stream], help="drop a zone")
    remove_zone.add_argument("name", help="the zone's name")
    remove_zone.set_defaults(action="remove_zone")
    prompt.set_defaults(func=cmd_prompt)

    keys = sub.add_parser(
        "keys", parents=[common], help="write a CurveZMQ keypair (NAME.key, NAME.key_secret)"
    )
    keys.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    keys.add_argument("--name", default="node", help="file name stem (default node)")
    keys.add_argument("--force", action="store_true", help="replace existing files")
    keys.set_defaults(func=cmd_keys)

    from sam2long_stream.supervisor import add_parser as add_launch_parser

    add_launch_parser(sub, parents=[common])
    from sam2long_stream.mqtt.command import add_parser as add_mqtt_parser

    add_mqtt_parser(sub, parents=[common])
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
    "eval": ("sam2long_stream.evaluation", "J&F on a DAVIS- or SA-V-format dataset, P=1 vs P=3"),
    "train": ("sam2long_stream.train.cli", "train or fine-tune a SAM 2 model (sam2's own code)"),
    "scenes": ("sam2long_stream.scenes.cli", "write synthetic long-tracking scenes (DAVIS format)"),
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
        print(f"{PROG}: error: {shorten(message, MAX_ERROR_CHARS)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())
