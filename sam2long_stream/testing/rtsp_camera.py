#!/usr/bin/python3
"""RTSP test camera: a moving synthetic scene served as H.264 over RTSP on 127.0.0.1.

Runs under Debian's system python (``/usr/bin/python3``) because the GObject bindings
for gst-rtsp-server come from Debian packages, not from the virtual environment; it is
run by its path inside the installed package and imports nothing from it (start it from
Python with `sam2long_stream.testing.RtspCamera`):

    /usr/bin/python3 sam2long_stream/testing/rtsp_camera.py --port 8554 --path /cam

Prints exactly one line ``READY rtsp://127.0.0.1:<port><path>`` once it serves, and exits
with code 0 on SIGTERM/SIGINT. ``--check`` exits 0 iff everything it needs is installed.

``--protocols udp`` (or ``tcp``) serves only that RTSP lower transport, as cameras that
refuse interleaved TCP do; the default serves both.

Each client gets its own pipeline (non-shared factory): a client that drops and comes
back always starts a fresh encoder, gets a key frame at once, and never inherits the
state of a half-torn-down shared media.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

DEBIAN_PACKAGES = (
    "gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
)
REQUIRED_ELEMENTS = (
    "videotestsrc",
    "videoconvert",
    "videoscale",
    "compositor",
    "x264enc",
    "rtph264pay",
    "multifilesrc",
    "jpegdec",
)

# Default scene: two discs of different colours on different paths over a dark
# background; the second crosses (occludes) the first now and then.
SHAPES = "shapes"
PROTOCOLS = ("all", "tcp", "udp")


def _import_gst():  # -> (Gst, GstRtspServer, GLib)
    """Import the GObject bindings; raises ImportError/ValueError when a piece is missing."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    return Gst, GstRtspServer, GLib


def _lower_transports(protocols: str):  # -> GstRtsp.RTSPLowerTrans
    """The RTSP lower transports to offer: UDP (unicast and multicast), TCP, or all."""
    import gi

    gi.require_version("GstRtsp", "1.0")
    from gi.repository import GstRtsp

    trans = GstRtsp.RTSPLowerTrans
    udp = trans.UDP | trans.UDP_MCAST
    return {"udp": udp, "tcp": trans.TCP, "all": udp | trans.TCP}[protocols]


def check() -> int:
    """Return 0 when gi, GstRtspServer and every needed GStreamer element are present."""
    try:
        gst, _, _ = _import_gst()
    except (ImportError, ValueError) as exc:
        print(f"missing GObject/GStreamer bindings ({exc}); install: {DEBIAN_PACKAGES}")
        return 1
    missing = [name for name in REQUIRED_ELEMENTS if gst.ElementFactory.find(name) is None]
    if missing:
        print(f"missing GStreamer elements {', '.join(missing)}; install: {DEBIAN_PACKAGES}")
        return 1
    print("ok")
    return 0


def _even(value: int) -> int:
    return max(2, value - value % 2)


def build_launch(pattern: str, width: int, height: int, fps: int, frames: str | None = None) -> str:
    """The gst-rtsp-server launch line for one client's pipeline. With `frames` (a folder
    of 00000.jpg, 00001.jpg, ...) the camera plays those frames in a loop, from frame 0
    for every client, at `fps`: a scene whose ground truth the caller knows."""
    caps = f"width={width},height={height},framerate={fps}/1"
    enc = (
        f"videoconvert ! video/x-raw,format=I420 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(1, fps)} "
        f"bitrate=1500 threads=1 ! video/x-h264,profile=constrained-baseline ! "
        f"rtph264pay name=pay0 pt=96 config-interval=1"
    )
    if frames is not None:
        location = os.path.join(frames, "%05d.jpg")
        return (
            f'( multifilesrc location="{location}" index=0 loop=true '
            f'caps="image/jpeg,framerate={fps}/1" ! jpegdec ! identity sync=true '
            f"! videoconvert ! videoscale ! video/x-raw,{caps} ! {enc} )"
        )
    if pattern == SHAPES:
        # Rendered at half size and scaled up so the discs are big enough to track. The
        # second disc moves on its own path inside a smaller, transparent frame placed
        # off-centre, so the two paths differ and the discs cross (one occludes the other).
        sw, sh = _even(width // 2), _even(height // 2)
        w2, h2 = _even(sw // 2 + sw // 6), _even(sh // 2 + sh // 6)
        return (
            f"( compositor name=mix background=black "
            f"sink_1::xpos={sw // 6} sink_1::ypos={sh // 4} "
            f"! video/x-raw,width={sw},height={sh},framerate={fps}/1 "
            f"! videoscale ! video/x-raw,{caps} ! {enc} "
            f"videotestsrc is-live=true pattern=ball motion=wavy "
            f"foreground-color=0xffe0503c background-color=0xff202428 "
            f"! video/x-raw,format=AYUV,width={sw},height={sh},framerate={fps}/1 ! mix.sink_0 "
            f"videotestsrc is-live=true pattern=ball motion=wavy "
            f"foreground-color=0xff3cb4f0 background-color=0x00000000 "
            f"! video/x-raw,format=AYUV,width={w2},height={h2},framerate={fps}/1 ! mix.sink_1 )"
        )
    extra = " background-color=0xff202428" if pattern == "ball" else ""
    return f"( videotestsrc is-live=true pattern={pattern}{extra} ! video/x-raw,{caps} ! {enc} )"


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; return the process exit code."""
    try:
        gst, rtsp, glib = _import_gst()
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}; install: {DEBIAN_PACKAGES}", file=sys.stderr)
        return 1

    path = args.path if args.path.startswith("/") else "/" + args.path
    server = rtsp.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    launch = build_launch(args.pattern, args.width, args.height, args.fps, args.frames)
    try:  # fail now, not when the first client connects
        gst.parse_launch(launch).set_state(gst.State.NULL)
    except glib.Error as exc:
        print(f"error: bad pipeline for --pattern {args.pattern!r}: {exc.message}", file=sys.stderr)
        return 2
    factory = rtsp.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)
    factory.set_latency(0)
    factory.set_protocols(_lower_transports(args.protocols))
    server.get_mount_points().add_factory(path, factory)

    if server.attach(None) == 0:
        print(f"error: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    port = server.get_bound_port()

    loop = glib.MainLoop()

    def quit_loop() -> bool:
        loop.quit()
        return glib.SOURCE_REMOVE

    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGTERM, quit_loop)
    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGINT, quit_loop)

    # Sessions of clients that vanished without TEARDOWN would otherwise linger for
    # their full timeout; sweep them often so reconnect storms do not pile up.
    pool = server.get_session_pool()

    def cleanup() -> bool:
        pool.cleanup()
        return glib.SOURCE_CONTINUE

    glib.timeout_add_seconds(2, cleanup)

    print(f"READY rtsp://127.0.0.1:{port}{path}", flush=True)
    loop.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 0 iff dependencies exist")
    parser.add_argument("--port", type=int, default=8554, help="TCP port (0: pick a free one)")
    parser.add_argument("--path", default="/cam", help="mount path, e.g. /cam")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument(
        "--pattern",
        default=SHAPES,
        help=f"'{SHAPES}' (two moving discs, default) or any videotestsrc pattern name "
        "(ball, smpte, snow, ...)",
    )
    parser.add_argument(
        "--frames",
        metavar="DIR",
        help="play DIR/00000.jpg, 00001.jpg, ... in a loop instead of a pattern",
    )
    parser.add_argument(
        "--protocols",
        choices=PROTOCOLS,
        default="all",
        help="RTSP lower transports served: all (default), tcp only or udp only",
    )
    args = parser.parse_args(argv)
    if args.check:
        return check()
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
