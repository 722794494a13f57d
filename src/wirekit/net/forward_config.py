"""Forwarding rules from a TOML file (``wirekit forward --config FILE``).

    # every key but listen/target is optional and overrides the command-line value
    [[forward]]
    listen = ":8080"
    target = "example.org:80"
    max_conns = 100
    connect_timeout = 5
    idle_timeout = 60
    allow = ["127.0.0.0/8"]
    deny = []

    [[forward]]
    listen = "udp://:5353"
    target = "udp://127.0.0.1:53"
    udp_idle = 30
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from wirekit.errors import UsageError
from wirekit.net.acl import AccessList
from wirekit.net.forward import Rule
from wirekit.net.gate import Limits

__all__ = ["load_rules", "parse_rule_option", "rules_from_toml"]

_KEYS = {"listen", "target", "max_conns", "connect_timeout", "idle_timeout", "udp_idle",
         "allow", "deny", "grace"}


def parse_rule_option(text: str) -> Rule:
    """``LISTEN=TARGET`` as given to ``-f``."""
    if "=" not in text:
        raise UsageError(f"-f wants LISTEN=TARGET, got {text!r} (e.g. -f :8080=example.org:80)")
    listen, target = text.split("=", 1)
    return Rule.parse(listen, target)


def load_rules(path: str | Path, defaults: Limits) -> list[Rule]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read config {str(path)!r}: {exc.strerror}") from None
    return rules_from_toml(text, defaults, source=str(path))


def rules_from_toml(text: str, defaults: Limits, *, source: str = "config") -> list[Rule]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    extra = set(doc) - {"forward"}
    if extra:
        raise UsageError(f"{source}: unknown top-level key(s) {', '.join(sorted(extra))} "
                         "(write [[forward]] tables)")
    entries = doc.get("forward", [])
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{source}: no [[forward]] rules")
    return [_rule(entry, defaults, f"{source}: rule {i + 1}") for i, entry in enumerate(entries)]


def _rule(entry: Any, defaults: Limits, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: not a table")
    unknown = set(entry) - _KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_KEYS))})")
    for key in ("listen", "target"):
        if not isinstance(entry.get(key), str):
            raise UsageError(f"{where}: {key} must be a string like \":8080\"")
    limits: Limits | None = None
    changes: dict[str, Any] = {}
    if "max_conns" in entry:
        changes["max_conns"] = _number(entry, "max_conns", where, integer=True)
    if "idle_timeout" in entry:
        changes["idle_timeout"] = _number(entry, "idle_timeout", where)
    if "grace" in entry:
        changes["grace"] = _number(entry, "grace", where)
    if "allow" in entry or "deny" in entry:
        changes["acl"] = AccessList.from_strings(_strings(entry, "allow", where),
                                                 _strings(entry, "deny", where))
    if changes:
        limits = replace(defaults, **changes)
    settings: dict[str, Any] = {"limits": limits}
    if "connect_timeout" in entry:
        settings["connect_timeout"] = _number(entry, "connect_timeout", where)
    if "udp_idle" in entry:
        settings["udp_idle"] = _number(entry, "udp_idle", where)
    return Rule.parse(entry["listen"], entry["target"], **settings)


def _number(entry: dict[str, Any], key: str, where: str, *, integer: bool = False) -> Any:
    value = entry[key]
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise UsageError(f"{where}: {key} must be {kind}, got {value!r}")
    return value


def _strings(entry: dict[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a list of networks like [\"10.0.0.0/8\"]")
    return value
