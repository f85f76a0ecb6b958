"""Test infrastructure shipped with the package: real peers for tests, demos and benches.

* `camera` -- `RtspCamera`: the gst-rtsp-server test camera (`rtsp_camera.py`, run by
  Debian's ``/usr/bin/python3`` from its path in this package), `camera_problem` (can it
  run here?), `free_port`, `listens`;
* `webrtc_peers` -- a WHIP publisher and a WHEP server (aiortc) pushing synthetic video;
* `soak` -- the soak run (``python -m sam2long_stream.testing.soak``; needs the dev
  extra's psutil);
* `engine_double` -- `ScriptedEngine`, the tracker's engine protocol with scripted
  candidates and no network (tracker tests; ``soak --engine scripted``).

Only `camera` is imported here: the others pull in aiortc or psutil.
"""

from sam2long_stream.testing.camera import (
    CameraUnavailable,
    RtspCamera,
    camera_problem,
    free_port,
    listens,
)

__all__ = [
    "CameraUnavailable",
    "RtspCamera",
    "camera_problem",
    "free_port",
    "listens",
]
