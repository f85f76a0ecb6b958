"""What the launcher hands each shard: a node TOML file and a command line.

The file is in the node's own format (`settings.parse_node_table`): the shard's options
at the top level, one ``[[streams]]`` table per camera. It holds the sources, which may
carry passwords, so it is written mode 0600 in a 0700 directory, and it is for the node
only: nothing the launcher shows people quotes it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from sam2long_stream import settings
from sam2long_stream.supervisor.config import ShardSpec

PROG = "sam2long-stream launch"
NODE_COMMAND = (sys.executable, "-m", "sam2long_stream.cli")

# PR_SET_PDEATHSIG (1) survives exec: the node gets SIGTERM when the launcher thread that
# spawned it dies, even by SIGKILL. The ppid check closes the race where it died first.
EXEC_STUB = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(70)\n"
    "try:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as exc:\n"
    "    print(f'cannot run {sys.argv[2]}: {exc.strerror or exc}', flush=True)\n"
    "    sys.exit(127)\n"
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to a node config")
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to a node config")


def _options(values: dict[str, Any]) -> dict[str, Any]:
    """Checked option values as TOML can hold them: an option turned off (None) is
    written "off" where its default is on (control), left out where it is off anyway."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            if settings.DEFAULTS[key] is not None:
                out[key] = "off"
            continue
        out[key] = value
    return out


def node_table(shard: ShardSpec) -> dict[str, Any]:
    """The shard's node file as the dict `tomllib` gives back for it."""
    table = _options(dict(shard.values))
    if shard.prompts:
        table["prompts"] = [dict(p) for p in shard.prompts]
    if shard.zones is not None:
        table["zones"] = [dict(z) for z in shard.zones]
    streams = []
    for s in shard.streams:
        entry: dict[str, Any] = {"stream_id": s.stream_id, "source": s.source}
        entry.update(_options(dict(s.values)))
        if s.prompts is not None:
            entry["prompts"] = [dict(p) for p in s.prompts]
        if s.zones is not None:
            entry["zones"] = [dict(z) for z in s.zones]
        streams.append(entry)
    table["streams"] = streams
    return table


_TABLE_ARRAYS = ("prompts", "zones")  # [[prompts]], [[zones]] and their [[streams.*]]


def _array_of_tables(name: str, tables: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for table in tables:
        lines += ["", f"[[{name}]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return lines


def node_toml(shard: ShardSpec, origin: str = "") -> str:
    """The shard's node file as TOML that `run --config` reads (checked by reading it
    back with the node's reader, so a writer bug cannot hand a node another config)."""
    table = node_table(shard)
    lines = [f"# written by {PROG}" + (f" from {origin}" if origin else "") + "; do not edit"]
    lines += [
        f"{k} = {_toml_value(v)}"
        for k, v in table.items()
        if k not in (*_TABLE_ARRAYS, "streams") or (k in _TABLE_ARRAYS and not v)
    ]
    for name in _TABLE_ARRAYS:
        lines += _array_of_tables(name, table.get(name) or [])
    for stream in table["streams"]:
        lines += ["", "[[streams]]"]
        for key, value in stream.items():
            if key not in _TABLE_ARRAYS or not value:
                lines.append(f"{key} = {_toml_value(value)}")
        for name in _TABLE_ARRAYS:
            lines += _array_of_tables(f"streams.{name}", stream.get(name) or [])
    text = "\n".join(lines) + "\n"
    back = tomllib.loads(text)
    where = f"node file of shard {shard.shard_id}"
    if back != table or settings.parse_node_table(back, where) != settings.parse_node_table(
        table, where
    ):
        raise AssertionError(f"the node file of shard {shard.shard_id} did not round-trip")
    return text


def write_node_file(run_dir: Path, shard: ShardSpec, origin: str = "") -> Path:
    """``run_dir/<shard>.toml``, mode 0600 (its sources may carry passwords)."""
    path = run_dir / f"{shard.shard_id}.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(node_toml(shard, origin))
    os.chmod(path, 0o600)  # an older file of the same name keeps its mode otherwise
    return path


def node_argv(shard: ShardSpec, config_path: str) -> list[str]:
    """The command line of one shard: ``run --config FILE`` and the shard's own args."""
    command = list(shard.command) if shard.command else list(NODE_COMMAND)
    return [*command, "run", "--config", config_path, *shard.args]


def spawn_argv(argv: list[str]) -> list[str]:
    """``argv`` behind the exec stub on Linux, so the child dies with the launcher."""
    if sys.platform != "linux":
        return argv
    return [sys.executable, "-c", EXEC_STUB, str(os.getpid()), *argv]
