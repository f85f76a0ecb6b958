"""Topics and payloads the bridge publishes (docs/integrations.md), and Home Assistant
MQTT discovery: a binary sensor per object (present) and an occupancy sensor per zone,
so that they appear in Home Assistant with no YAML.

Pure functions: the bridge decides when, this module says what.
"""

from __future__ import annotations

import re
from typing import Any

from sam2long_stream.transport.wire import EventMessage, MasksMessage, dumps_json

ONLINE, OFFLINE = "online", "offline"


def available(prefix: str) -> str:
    return f"{prefix}/available"


def bridge_status(prefix: str) -> str:
    return f"{prefix}/bridge/status"


def events(prefix: str, stream: str) -> str:
    return f"{prefix}/{stream}/events"


def object_state(prefix: str, stream: str, object_id: int) -> str:
    return f"{prefix}/{stream}/objects/{object_id}"


def zone_state(prefix: str, stream: str, zone: str) -> str:
    return f"{prefix}/{stream}/zones/{zone}"


def masks(prefix: str, stream: str) -> str:
    return f"{prefix}/{stream}/masks"


# --------------------------------------------------------------------------- payloads


def event_payload(msg: EventMessage) -> bytes:
    """The event as Frigate-style JSON: ``type`` is the event kind (new, lost, ...),
    ``before``/``after`` the object's states; the wire header's other fields as they
    are (``stream_id``, ``object_id``, ``zone``, ``reason``, ``seq``, ``frame_index``,
    ``pts``, ``capture_time_ns``, ``time_ns``, ``event_seq``, ``schema``)."""
    body = {k: v for k, v in msg.header.items() if k not in ("type", "event")}
    return dumps_json({"type": msg.event, **body})


def state_payload(msg: EventMessage) -> bytes:
    """The object's retained state after an event: ``state`` is present, absent, lost or
    ended, with ``after``'s fields and the event that set it."""
    after = msg.after
    if msg.event == "end":
        state = "ended"
    elif msg.event == "lost":
        state = "lost"
    else:
        state = "present" if after.get("present") else "absent"
    return dumps_json(
        {
            "stream_id": msg.stream_id,
            "object_id": msg.object_id,
            "state": state,
            **after,
            "last_event": msg.event,
            "frame_index": msg.frame_index,
            "time_ns": msg.time_ns,
        }
    )


def zone_payload(stream: str, zone: str, objects: set[int]) -> bytes:
    return dumps_json(
        {
            "stream_id": stream,
            "zone": zone,
            "occupied": bool(objects),
            "count": len(objects),
            "objects": sorted(objects),
        }
    )


def masks_payload(msg: MasksMessage) -> bytes:
    """One masks message as the browser page gets it (docs/wire-format.md, "Browser page
    WebSocket", ``masks``): each object's COCO RLE counts string, column-major."""
    from sam2long_stream.web.bridge import page_message

    return dumps_json(page_message(msg))


# --------------------------------------------------------------------------- HA discovery


def _ha_id(text: str) -> str:
    """Home Assistant's node_id/object_id alphabet: [a-zA-Z0-9_-]."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _device(prefix: str, stream: str) -> dict[str, Any]:
    return {
        "identifiers": [f"{_ha_id(prefix)}_{_ha_id(stream)}"],
        "name": f"sam2long {stream}",
        "manufacturer": "sam2long-stream",
        "model": "SAM2Long tracker stream",
    }


def _common(prefix: str, stream: str, state_topic: str, unique_id: str) -> dict[str, Any]:
    return {
        "unique_id": unique_id,
        "state_topic": state_topic,
        "json_attributes_topic": state_topic,
        "availability_topic": available(prefix),
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": _device(prefix, stream),
    }


def _binary_sensor(
    ha_prefix: str,
    prefix: str,
    stream: str,
    what: str,
    state_topic: str,
    kind: tuple[str, str, str],
) -> tuple[str, bytes]:
    """(discovery topic, retained config) of one binary sensor; ``kind`` is (name,
    device class, the state JSON's boolean field)."""
    name, device_class, field = kind
    uid = f"{_ha_id(prefix)}_{_ha_id(stream)}_{what}"
    config = {
        "name": name,
        "device_class": device_class,
        "value_template": f"{{{{ 'ON' if value_json.{field} else 'OFF' }}}}",
        **_common(prefix, stream, state_topic, uid),
    }
    return f"{ha_prefix}/binary_sensor/{_ha_id(prefix)}/{uid}/config", dumps_json(config)


def object_discovery(ha_prefix: str, prefix: str, stream: str, object_id: int) -> tuple[str, bytes]:
    """The object's presence binary sensor."""
    state = object_state(prefix, stream, object_id)
    kind = (f"Object {object_id}", "presence", "present")
    return _binary_sensor(ha_prefix, prefix, stream, f"object_{object_id}", state, kind)


def zone_discovery(ha_prefix: str, prefix: str, stream: str, zone: str) -> tuple[str, bytes]:
    """The zone's occupancy binary sensor."""
    state = zone_state(prefix, stream, zone)
    kind = (f"Zone {zone}", "occupancy", "occupied")
    return _binary_sensor(ha_prefix, prefix, stream, f"zone_{_ha_id(zone)}", state, kind)
