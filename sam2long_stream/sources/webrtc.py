"""WebRTC sources (import point): WHIP ingest served by the node, WHEP pull from a server.

The implementations live in `webrtc_whip`, `webrtc_whep` and `webrtc_common`.
"""

from sam2long_stream.sources.webrtc_whep import WhepError, WhepSource
from sam2long_stream.sources.webrtc_whip import WhipSource

__all__ = ["WhepError", "WhepSource", "WhipSource"]
