"""The node's output side: masks and status on a ZeroMQ PUB socket (see docs/wire-format.md)."""

from sam2long_stream.publish.publisher import Publisher

__all__ = ["Publisher"]
