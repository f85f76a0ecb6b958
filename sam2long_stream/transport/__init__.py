"""The node's output and its readers: the wire format (`wire`), the node's ZeroMQ
`Publisher`, and the subscriber SDK (`Subscriber`). One package so the encoder and the
decoder share one definition of every message; none of it imports torch."""

from sam2long_stream.transport.publisher import Publisher
from sam2long_stream.transport.subscriber import (
    EventMessage,
    MasksMessage,
    Message,
    StatusMessage,
    Subscriber,
    WireFormatError,
)

__all__ = [
    "EventMessage",
    "MasksMessage",
    "Message",
    "Publisher",
    "StatusMessage",
    "Subscriber",
    "WireFormatError",
]
