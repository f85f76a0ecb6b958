"""Runtime control of a node over a ZeroMQ REQ/REP socket: prompts, removal, reset,
status, options and the node's streams (see docs/wire-format.md, "Control socket")."""

from sam2long_stream.control.client import ControlClient
from sam2long_stream.control.protocol import (
    DEFAULT_ADDRESS,
    AddObject,
    AddStream,
    AddZone,
    ControlError,
    RemoveObject,
    RemoveStream,
    RemoveZone,
    Request,
    Reset,
    SetOption,
    Status,
    parse_request,
)
from sam2long_stream.control.server import ControlHandler, ControlServer

__all__ = [
    "DEFAULT_ADDRESS",
    "AddObject",
    "AddStream",
    "AddZone",
    "ControlClient",
    "ControlError",
    "ControlHandler",
    "ControlServer",
    "RemoveObject",
    "RemoveStream",
    "RemoveZone",
    "Request",
    "Reset",
    "SetOption",
    "Status",
    "parse_request",
]
