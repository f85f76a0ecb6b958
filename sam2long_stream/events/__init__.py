"""Track events derived in the node (`track`: new, lost, found, end, zone_enter,
zone_leave) and the named polygon zones they are judged against (`zones`). Numpy only:
no torch, no sockets."""

from sam2long_stream.events.track import (
    DEFAULT_LOST_AFTER,
    END_REASONS,
    EVENT_TYPES,
    LostAfter,
    StreamEvents,
    parse_lost_after,
)
from sam2long_stream.events.zones import Zone, read_zones, zone_from_table

__all__ = [
    "DEFAULT_LOST_AFTER",
    "END_REASONS",
    "EVENT_TYPES",
    "LostAfter",
    "StreamEvents",
    "Zone",
    "parse_lost_after",
    "read_zones",
    "zone_from_table",
]
