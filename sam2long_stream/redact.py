"""One rule for showing a source without its secrets.

Source URLs carry credentials: ``rtsp://user:pass@cam/...``, ``whep+https://u:p@host``,
``whip://0.0.0.0:8080/whip/cam0?token=T``. Every place that shows a source (log lines,
error lines, the status topic, control replies, `/metrics`, the launcher's table and the
files it writes for people) passes it through `redact_url`, or an arbitrary message that
may quote one through `redact_text`, so none of them can leak what another hides.

What is hidden: the password of the userinfo on any scheme (the user name stays, it helps
tell cameras apart), a userinfo without a password (it may be a token), and the values of
query parameters whose names say they are secret.
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
# Query parameter names (lower case, "-" read as "_") whose values are secrets.
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "auth",
        "authorization",
        "bearer",
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "key",
        "api_key",
        "apikey",
        "sig",
        "signature",
        "credential",
        "credentials",
        "session",
        "jwt",
    }
)
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _secret_param(name: str) -> bool:
    key = name.lower().replace("-", "_")
    return key in SECRET_PARAMS or key.endswith(("_token", "_secret", "_password", "_key"))


def redact_url(url: str) -> str:
    """The URL with its password and secret query values replaced by ``***``; anything
    that is not a URL comes back unchanged."""
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
        query = parts.query
        if query:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
            if any(_secret_param(k) for k, _ in pairs):
                query = "&".join(
                    f"{urllib.parse.quote(k, safe='')}="
                    + (MASK if _secret_param(k) else urllib.parse.quote(v, safe=""))
                    for k, v in pairs
                )
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not parseable (bad port, brackets): hide everything after ://
        scheme = url.split("://", 1)[0]
        return f"{scheme}://{MASK}"


def redact_text(text: str) -> str:
    """A message with every URL in it redacted (for exception texts that quote one)."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
