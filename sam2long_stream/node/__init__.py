"""The tracker node: one or more live sources in, one model, masks and status out over
ZeroMQ, control in.

Modules: `loop` (the `Node`: lifecycle and the tick), built on `execution` (control
commands, applied by the loop), `membership` (streams added, started, ended),
`snapshots` (status, summary, health, metrics) and `base` (shared state, status
messages); `stream` (one camera: source, queue, tracker, prompts, counters), `control`
(requests, on the control thread), `commands` (a request on its way to the loop),
`stats` (counters, timings and their snapshots), `sockets` (PUB, control, HTTP). The configs
are `settings.NodeConfig`/`StreamConfig`. Importing this package does not import torch.
"""

from sam2long_stream.node.loop import Node, NodeError
from sam2long_stream.node.snapshots import format_summary
from sam2long_stream.settings import NodeConfig, StreamConfig

__all__ = ["Node", "NodeConfig", "NodeError", "StreamConfig", "format_summary"]
