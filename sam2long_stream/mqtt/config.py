"""What the MQTT bridge needs to know: the broker URL, credentials, topics and bounds.

Everything is checked here, before any socket is opened, so a mistake is one line
(``sam2long-stream: error: ...``). A password never travels in the URL (it would show
in process lists and shell history): it comes from a file or the environment, and a
URL that carries one is refused with the password hidden.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field

from sam2long_stream.redact import redact_url

PASSWORD_ENV = "SAM2LONG_MQTT_PASSWORD"
DEFAULT_PREFIX = "sam2long"
DEFAULT_QUEUE = 10_000  # messages waiting for the broker (QoS >= 1), then drops counted
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_LEVEL_RE = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class BrokerURL:
    """``mqtt://[USER@]HOST[:PORT]`` (TLS: ``mqtts://``)."""

    host: str
    port: int
    tls: bool
    username: str | None = None

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerURL:
    """The broker URL; ValueError in one line (the password, if any, hidden)."""
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"--broker must be mqtt://[USER@]HOST[:PORT] or mqtts://..., got {shown}")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad --broker {shown}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"--broker scheme must be mqtt:// or mqtts://, got {shown}")
    if parts.password is not None:
        raise ValueError(
            f"--broker {shown}: put the password in --password-file or ${PASSWORD_ENV}, "
            "not in the URL"
        )
    if not parts.hostname:
        raise ValueError(f"--broker {shown} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"--broker {shown}: no path or query expected")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    return BrokerURL(
        host=parts.hostname,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        tls=scheme == "mqtts",
        username=user,
    )


def check_prefix(prefix: str, what: str = "--prefix") -> str:
    """A topic prefix: levels of [A-Za-z0-9_.-] separated by "/" (no wildcards, no
    empty level, no leading "$")."""
    levels = prefix.split("/") if isinstance(prefix, str) else [""]
    if not all(_LEVEL_RE.fullmatch(level) for level in levels):
        raise ValueError(
            f"{what} must be topic levels of A-Z a-z 0-9 _ . - separated by /, got {prefix!r}"
        )
    return prefix


def read_password(password_file: str | None, env: dict[str, str] | None = None) -> str | None:
    """The password from ``password_file`` (its first line) or ``$SAM2LONG_MQTT_PASSWORD``;
    None when neither is given. Never echoed."""
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                text = f.readline().rstrip("\r\n")
        except FileNotFoundError:
            raise ValueError(f"password file not found: {password_file}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read password file {password_file}: {exc}") from None
        if not text:
            raise ValueError(f"password file {password_file} is empty")
        return text
    value = (os.environ if env is None else env).get(PASSWORD_ENV)
    return value or None


@dataclass(frozen=True)
class BridgeConfig:
    """One bridge: a node's (or the launcher proxy's) ZeroMQ address to one broker."""

    pub: str
    broker: BrokerURL
    prefix: str = DEFAULT_PREFIX
    password: str | None = field(default=None, repr=False)
    qos: int = 1
    retain: bool = True
    queue_size: int = DEFAULT_QUEUE
    masks_rate: float = 0.0  # masks messages per second and stream; 0: none
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"
    stream_id: str | None = None  # only this stream
    client_id: str | None = None
    tls_ca: str | None = None
    keepalive_s: int = 30
    reconnect_max_s: int = 30
    status_interval_s: float = 10.0
    curve_secret: str | None = None
    curve_server: str | None = None

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        check_prefix(self.ha_prefix, "--ha-prefix")
        if self.qos not in (0, 1, 2):
            raise ValueError(f"--qos must be 0, 1 or 2, got {self.qos!r}")
        if type(self.queue_size) is not int or not 1 <= self.queue_size <= 10_000_000:
            raise ValueError(f"--queue-size must be in 1..10000000, got {self.queue_size!r}")
        if not 0 <= self.masks_rate <= 100:
            raise ValueError(f"--masks-rate must be in 0..100 per second, got {self.masks_rate}")
        if not 5 <= self.keepalive_s <= 3600:
            raise ValueError(f"--keepalive must be in 5..3600 s, got {self.keepalive_s}")
        if not 1 <= self.reconnect_max_s <= 3600:
            raise ValueError(f"--reconnect-max must be in 1..3600 s, got {self.reconnect_max_s}")
        if not 0.1 <= self.status_interval_s <= 86400:
            raise ValueError(f"--status-interval must be >= 0.1 s, got {self.status_interval_s}")
        if self.tls_ca is not None and not os.path.isfile(self.tls_ca):
            raise ValueError(f"--tls-ca file not found: {self.tls_ca}")
        if self.tls_ca is not None and not self.broker.tls:
            raise ValueError("--tls-ca needs an mqtts:// broker")
        if self.password is not None and self.broker.username is None:
            raise ValueError("a password needs a user name: --broker mqtt://USER@HOST:PORT")
