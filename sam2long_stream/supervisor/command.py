"""`sam2long-stream launch LAUNCH.toml` and `python -m sam2long_stream.supervisor`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from sam2long_stream import settings
from sam2long_stream.supervisor.config import LaunchConfig, load_launch_file
from sam2long_stream.supervisor.supervise import Launcher
from sam2long_stream.usage import UsageError, UsageParser


def check_report(config: LaunchConfig) -> str:
    """The plan `--check` prints: shards, their streams, sources with secrets masked."""
    n, m = len(config.streams), len(config.shards)
    lines = [
        f"{config.path}: {n} stream{'' if n == 1 else 's'} in {m} shard{'' if m == 1 else 's'} OK"
    ]
    if config.proxy is not None:
        ups = f" (+ {len(config.proxy.upstreams)} upstreams)" if config.proxy.upstreams else ""
        lines.append(f"proxy: subscribers connect to {config.proxy.bind}{ups}")
    for shard in config.shards:
        lines.append(
            f"shard {shard.shard_id}: one process on {shard.device}, pub {shard.pub}, "
            f"control {shard.control or 'off'}"
            + (f", http {shard.http}" if shard.http else "")
            + f", {len(shard.streams)} stream{'' if len(shard.streams) == 1 else 's'}"
        )
        for s in shard.streams:
            lines.append(f"  {s.stream_id}: {s.shown_source}")
    return "\n".join(lines)


def add_parser(
    subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Add the `launch` subcommand to the sam2long-stream CLI (or any subparsers)."""
    p = subparsers.add_parser(
        "launch",
        parents=list(parents),
        help="run one multi-stream node per shard (GPU) of a launch file, restart them, "
        "proxy their output",
        description="Run one `sam2long-stream run` process per [[shards]] table of a "
        "launch TOML file, each serving its [[shards.streams]] (see launch/*.toml and "
        "docs/deploy.md).",
    )
    p.add_argument("launch_file", metavar="LAUNCH.toml", help="the launch file")
    p.add_argument(
        "--no-table", dest="table", action="store_false", help="log lines only, no live table"
    )
    p.add_argument(
        "--http", metavar="HOST:PORT", help="serve /healthz, /readyz, /metrics (overrides the file)"
    )
    p.add_argument(
        "--check", action="store_true", help="validate the launch file, print the plan, exit"
    )
    p.set_defaults(func=cmd_launch)
    return p


def cmd_launch(args: argparse.Namespace) -> int:
    """Validate, then supervise until SIGTERM/SIGINT (or until every shard is done)."""
    config = load_launch_file(args.launch_file)
    if args.check:
        print(check_report(config), flush=True)
        return 0
    launcher = Launcher(config, table=args.table, http=args.http)
    launcher.install_signal_handlers()
    return launcher.run()


def _log_level(text: str) -> str:
    try:
        return settings.parse_log_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sam2long_stream.supervisor site.toml`: the same as `sam2long-stream
    launch`, without importing the rest of the CLI."""
    parser = UsageParser(prog="sam2long-stream")
    common = UsageParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    common.add_argument("--log-level", default="INFO", type=_log_level, help="logging level (INFO)")
    sub = parser.add_subparsers(dest="command")
    launch_parser = add_parser(sub, [common])
    launch_parser.prog = "sam2long-stream launch"
    args = launch_parser.parse_args(argv)
    level = "DEBUG" if args.debug else str(args.log_level).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="sam2long-stream: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"sam2long-stream: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
