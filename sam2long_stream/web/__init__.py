"""The browser page a WHIP node serves at ``GET /`` on its WHIP listener.

The page publishes a camera to the node over WHIP and draws the node's masks over the
local video. It is a *client of the node's public interfaces*, like any other:

* masks and status come from the node's ZeroMQ PUB socket through the Subscriber SDK,
  forwarded to the page over a WebSocket (``GET /ws``; see docs/wire-format.md, "Browser
  page WebSocket");
* a box drawn on the video goes to the node's control socket through ControlClient, so
  it gets exactly the control socket's validation and replies.

The tracker knows nothing of the page; the ZeroMQ output is unchanged.
"""

from sam2long_stream.web.bridge import PageConfig, connect_address, mount_page, page_message

__all__ = ["PageConfig", "connect_address", "mount_page", "page_message"]
