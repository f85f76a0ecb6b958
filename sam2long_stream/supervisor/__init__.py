"""`sam2long-stream launch site.toml`: many cameras on a machine, one process per GPU.

A launch file groups streams into shards. Each ``[[shards]]`` table is one
``sam2long-stream run --config <shard>.toml`` process (one model on one device, serving
the shard's ``[[shards.streams]]``); its table *is* a node config in the node's own
format (`settings.parse_node_table`), written out per shard, so the node is not
re-implemented here and a shard started by hand behaves the same. The launcher

* restarts a shard that exits with an error (or is killed) after a capped exponential
  backoff, reset once it has stayed up ``restart_reset_after_s``;
* kills and restarts a shard whose streams all went silent for ``hang_timeout_s`` (a
  wedged GPU or decoder: the process lives but its loop does not);
* forwards SIGTERM/SIGINT to every shard, waits ``stop_timeout_s``, SIGKILLs the rest
  and reaps them all. Shards run in their own session (a Ctrl-C reaches only the
  launcher, which then stops each once) and, on Linux, die with the launcher even when
  it is SIGKILLed (PR_SET_PDEATHSIG), so no node outlives it;
* with ``[proxy]``, runs a ZeroMQ XSUB/XPUB proxy whose XSUB *connects* to every shard's
  PUB and whose XPUB binds the one public address: a subscriber connects once and gets
  every stream of every shard. ``upstreams`` adds other proxies (a fan-in for many
  machines, see docs/deploy.md);
* subscribes to every shard's ``status/`` topics (directly, not through the proxy) and
  prints a table, one row per stream with its shard, about once a second; ``--http
  HOST:PORT`` serves ``/healthz``, ``/readyz`` and ``/metrics`` for the whole launch.

Sources may carry secrets: everything the launcher shows (table, logs, endpoints,
``--check``) passes them through `redact.redact_url`; only the 0600 node files hold them.

Modules: `config` (the launch file), `node_files` (per-shard TOML and argv), `proxy`,
`state` and `table` (what is known, and its text form), `endpoints` (/metrics),
`supervise` (the `Launcher`), `command` (the CLI).
"""

from sam2long_stream.supervisor.command import add_parser, check_report, cmd_launch, main
from sam2long_stream.supervisor.config import (
    LaunchConfig,
    LaunchError,
    ProxySpec,
    ShardSpec,
    StreamSpec,
    load_launch_file,
    parse_launch,
)
from sam2long_stream.supervisor.node_files import node_argv, node_table, node_toml
from sam2long_stream.supervisor.proxy import Proxy, Upstream, connect_upstreams
from sam2long_stream.supervisor.supervise import Launcher
from sam2long_stream.supervisor.table import format_table

__all__ = [
    "LaunchConfig",
    "LaunchError",
    "Launcher",
    "Proxy",
    "ProxySpec",
    "ShardSpec",
    "StreamSpec",
    "Upstream",
    "add_parser",
    "check_report",
    "cmd_launch",
    "connect_upstreams",
    "format_table",
    "load_launch_file",
    "main",
    "node_argv",
    "node_table",
    "node_toml",
    "parse_launch",
]
