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
    """One masks message as JSON: each object's COCO RLE counts string (column-major,
    as on the wire; ``bits`` masks are re-encoded)."""
    from sam2long_stream.transport.wire import rle_from_mask

    objects = []
    for i, obj in enumerate(msg.objects):
        if obj["encoding"] == "rle":
            rle = msg.frames[i].decode("ascii")
        else:
            rle = rle_from_mask(msg.masks[obj["id"]])
        objects.append(
            {
                "id": obj["id"],
                "present": obj["present"],
                "score": obj["iou"],
                "area": obj["area"],
                "box": obj["bbox"],
                "rle": rle,
            }
        )
    return dumps_json(
        {
            "stream_id": msg.stream_id,
            "seq": msg.seq,
            "frame_index": msg.frame_index,
            "width": msg.width,
            "height": msg.height,
            "capture_time_ns": msg.capture_time_ns,
            "publish_time_ns": msg.publish_time_ns,
            "objects": objects,
        }
    )


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


def object_discovery(ha_prefix: str, prefix: str, stream: str, object_id: int) -> tuple[str, bytes]:
    """(topic, retained config) of the object's presence binary sensor."""
    uid = f"{_ha_id(prefix)}_{_ha_id(stream)}_object_{object_id}"
    config = {
        "name": f"Object {object_id}",
        "device_class": "presence",
        "value_template": "{{ 'ON' if value_json.present else 'OFF' }}",
        **_common(prefix, stream, object_state(prefix, stream, object_id), uid),
    }
    return f"{ha_prefix}/binary_sensor/{_ha_id(prefix)}/{uid}/config", dumps_json(config)


def zone_discovery(ha_prefix: str, prefix: str, stream: str, zone: str) -> tuple[str, bytes]:
    """(topic, retained config) of the zone's occupancy binary sensor."""
    uid = f"{_ha_id(prefix)}_{_ha_id(stream)}_zone_{_ha_id(zone)}"
    config = {
        "name": f"Zone {zone}",
        "device_class": "occupancy",
        "value_template": "{{ 'ON' if value_json.occupied else 'OFF' }}",
        **_common(prefix, stream, zone_state(prefix, stream, zone), uid),
    }
    return f"{ha_prefix}/binary_sensor/{_ha_id(prefix)}/{uid}/config", dumps_json(config)
