"""The node's side of track events (`sam2long_stream.events`): publishing a stream's
events on ``events/<stream-id>`` and the control socket's zone requests. Kept out of
the loop so that the loop calls it in a few lines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import zmq

from sam2long_stream.control import AddZone, RemoveZone

if TYPE_CHECKING:
    from sam2long_stream.node.stream import Stream
    from sam2long_stream.transport.publisher import Publisher

log = logging.getLogger(__name__)


def publish_events(publisher: Publisher | None, s: Stream, events: list[dict[str, Any]]) -> None:
    """Send each event (loop thread); a failure is counted as a publish error and
    logged, never raised: events must not stop tracking."""
    if publisher is None:
        return
    for event in events:
        try:
            publisher.publish_event(event, stream_id=s.id)
        except (ValueError, TypeError, zmq.ZMQError) as exc:
            with s.lock:
                s.stats.publish_errors += 1
            log.error("stream %s: event %s not published: %s", s.id, event.get("event"), exc)


def zone_request(s: Stream, req: AddZone | RemoveZone) -> dict[str, Any]:
    """add_zone / remove_zone (control thread): recorded at once, judged from the
    stream's next frame (objects in a removed zone leave it then)."""
    applies = "from the stream's next frame"
    if isinstance(req, AddZone):
        names = s.tracks.set_zone(req.zone)
        return {"zone": req.zone.name, "zones": names, "stream": s.id, "applies": applies}
    names = s.tracks.remove_zone(req.name)  # ValueError: unknown zone
    return {"zone": req.name, "zones": names, "stream": s.id, "applies": applies}
