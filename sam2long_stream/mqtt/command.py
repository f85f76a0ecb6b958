"""`sam2long-stream mqtt`: the bridge's command line (flags -> `BridgeConfig` -> `Bridge`).

Usage mistakes (a bad broker URL, a password in it, a bad prefix) exit 2; a missing
password file, a refused password or a missing paho-mqtt exit 1; one line each.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from sam2long_stream import security
from sam2long_stream.mqtt.config import (
    DEFAULT_PREFIX,
    DEFAULT_QUEUE,
    PASSWORD_ENV,
    BridgeConfig,
    parse_broker_url,
    read_password,
)
from sam2long_stream.usage import UsageError

PROG = "sam2long-stream"


def add_parser(
    subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Add the `mqtt` subcommand to the sam2long-stream CLI."""
    p = subparsers.add_parser(
        "mqtt",
        parents=list(parents),
        help="bridge a node's events (and masks) to an MQTT broker; Home Assistant discovery",
        description="Bridge a node's (or the launcher proxy's) ZeroMQ output to an MQTT "
        "broker: <prefix>/available, <prefix>/<stream>/events, retained "
        "<prefix>/<stream>/objects/<id> and zones/<zone>; see docs/integrations.md.",
    )
    p.add_argument("--pub", required=True, metavar="tcp://HOST:PORT", help="node PUB address")
    p.add_argument(
        "--broker", required=True, metavar="mqtt://[USER@]HOST:PORT", help="mqtts:// for TLS"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"topic prefix ({DEFAULT_PREFIX})")
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"the broker password (first line); or set ${PASSWORD_ENV}",
    )
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2), help="events' QoS (1)")
    p.add_argument(
        "--retain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="retain object and zone state (default on)",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=DEFAULT_QUEUE,
        metavar="N",
        help=f"messages that may wait for the broker; beyond, drops are counted ({DEFAULT_QUEUE})",
    )
    p.add_argument(
        "--masks-rate",
        type=float,
        default=0.0,
        metavar="HZ",
        help="also publish masks (COCO RLE) at most HZ per stream (default 0: off)",
    )
    p.add_argument("--ha-discovery", action="store_true", help="Home Assistant MQTT discovery")
    p.add_argument("--ha-prefix", default="homeassistant", help="HA discovery prefix")
    p.add_argument("--stream-id", dest="stream_id", help="only this stream")
    p.add_argument("--client-id", dest="client_id", help="MQTT client id (default random)")
    p.add_argument("--tls-ca", dest="tls_ca", metavar="PEM", help="CA file for mqtts://")
    p.add_argument("--keepalive", type=int, default=30, metavar="S", help="MQTT keepalive (30)")
    p.add_argument(
        "--reconnect-max", type=int, default=30, metavar="S", help="reconnect backoff cap (30)"
    )
    p.add_argument(
        "--status-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="publish <prefix>/bridge/status every S seconds (10)",
    )
    p.add_argument(
        "--curve-secret", metavar="FILE", help="CurveZMQ: this client's .key_secret file"
    )
    p.add_argument("--curve-server", metavar="FILE", help="CurveZMQ: the node's public .key")
    p.set_defaults(func=cmd_mqtt)
    return p


def bridge_config(args: argparse.Namespace) -> BridgeConfig:
    """The BridgeConfig of the flags; UsageError (exit 2) for a bad value."""
    try:
        security.check_connect_address(args.pub)
    except ValueError as exc:
        raise UsageError(f"--pub: {exc}") from None
    try:
        broker = parse_broker_url(args.broker)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    password = read_password(args.password_file)  # ValueError: exit 1 (a file problem)
    try:
        return BridgeConfig(
            pub=args.pub,
            broker=broker,
            prefix=args.prefix,
            password=password,
            qos=args.qos,
            retain=args.retain,
            queue_size=args.queue_size,
            masks_rate=args.masks_rate,
            ha_discovery=args.ha_discovery,
            ha_prefix=args.ha_prefix,
            stream_id=args.stream_id,
            client_id=args.client_id,
            tls_ca=args.tls_ca,
            keepalive_s=args.keepalive,
            reconnect_max_s=args.reconnect_max,
            status_interval_s=args.status_interval,
            curve_secret=args.curve_secret,
            curve_server=args.curve_server,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_mqtt(args: argparse.Namespace) -> int:
    config = bridge_config(args)
    try:
        from sam2long_stream.mqtt.bridge import Bridge
    except ImportError:
        raise OSError(
            "the mqtt command needs paho-mqtt: pip install 'sam2long-stream[mqtt]'"
        ) from None

    def say(line: str) -> None:
        print(f"{PROG} mqtt: {line}", file=sys.stderr, flush=True)

    bridge = Bridge(config, say=say)
    signal.signal(signal.SIGINT, lambda *_: bridge.stop())
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    say(
        f"{args.pub} -> {config.broker} (prefix {config.prefix}, QoS {config.qos}, "
        f"queue {config.queue_size}{', HA discovery' if config.ha_discovery else ''})"
    )
    stats = bridge.run()
    say(
        f"stopped: {stats.events} events, {stats.published} messages published, "
        f"{stats.dropped} dropped ({stats.dropped_events} events), "
        f"{stats.connects} connections"
    )
    return 0
