"""Human renderings of certificates and ``wirekit tls`` reports (rich renderables, pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wirekit.tls.certinfo import CertInfo, describe
from wirekit.tls.inspect import TLSReport
from wirekit.tls.verdicts import ERROR, Verdict

__all__ = ["render_certificate", "render_handshake", "render_report", "render_verdicts"]


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def render_certificate(info: CertInfo, *, title: str | None = None) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows = [
        ("subject", info.subject),
        ("issuer", info.issuer + ("  (self-signed)" if info.self_signed else "")),
        ("names", ", ".join(info.san) or "(no subjectAltName)"),
        ("valid", f"{_when(info.not_before)}  to  {_when(info.not_after)}"),
        ("serial", info.serial),
        ("sha256", info.sha256),
        ("key", info.key),
        ("signature", info.signature_algorithm),
        ("CA", "yes" if info.is_ca else "no"),
        ("usage", ", ".join(info.eku) or "(any)"),
    ]
    for label, value in rows:
        table.add_row(label, escape(value))
    if title is None:
        return table
    return Group(Text(title, style="bold cyan"), table)


def render_verdicts(verdicts: Sequence[Verdict], verified: bool) -> RenderableType:
    lines: list[RenderableType] = []
    if verified:
        lines.append(Text("✔ verified", style="bold green"))
    else:
        lines.append(Text("✘ NOT verified", style="bold red"))
    for v in verdicts:
        mark, style = ("✘", "red") if v.severity == ERROR else ("!", "yellow")
        line = Text(f"  {mark} ", style=style)
        line.append(v.code, style=f"bold {style}")
        line.append(f": {v.message}")
        lines.append(line)
    return Group(*lines)


def _chain_lines(chain: Sequence[x509.Certificate], title: str) -> list[RenderableType]:
    out: list[RenderableType] = []
    for i, cert in enumerate(chain):
        role = "leaf" if i == 0 else ("root" if describe(cert).self_signed else "intermediate")
        out.append(render_certificate(describe(cert), title=f"{title} #{i} ({role})"))
    return out


_SKIP = {"direction", "type", "random", "session_id", "length", "legacy_version"}


def _value(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return str(value.get("name") or value.get("group") or value)
    return str(value)


def render_handshake(messages: Sequence[dict[str, object]], *,
                     verbose: bool = False) -> RenderableType:
    """One line per message (``-v``: every decoded field on its own line)."""
    lines: list[RenderableType] = []
    for msg in messages:
        arrow = "→" if msg.get("direction") == "client" else "←"
        line = Text(f"{arrow} {msg.get('direction', '?'):6} ", style="dim")
        line.append(str(msg.get("type", "?")), style="bold")
        fields = [(k, v) for k, v in msg.items() if k not in _SKIP]
        if not verbose:
            brief = []
            for key, value in fields:
                if key == "extensions" and isinstance(value, list):
                    brief.append(f"extensions: {_value([e.get('name') for e in value])}")
                elif not isinstance(value, list | dict):
                    brief.append(f"{key} {value}")
                elif key in ("cipher_suites", "supported_versions", "alpn"):
                    brief.append(f"{key}: {_value(value)}")
            if brief:
                line.append("  " + "; ".join(brief))
            lines.append(line)
            continue
        lines.append(line)
        for key, value in fields:
            if key == "extensions" and isinstance(value, list):
                for ext in value:
                    detail = {k: v for k, v in ext.items() if k not in ("name", "type", "length")}
                    text = "; ".join(f"{k}: {_value(v)}" for k, v in detail.items())
                    lines.append(Text(f"      extension {ext.get('name')}"
                                      + (f"  {text}" if text else "")))
            else:
                lines.append(Text(f"      {key}: {_value(value)}"))
    return Group(*lines)


def render_report(report: TLSReport, *, verbose: bool = False) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("address", escape(f"{report.address} ({report.peer})"))
    head.add_row("protocol", escape(report.protocol or "?"))
    head.add_row("cipher", escape(report.cipher or "?"))
    head.add_row("alpn", escape(report.alpn or "(none)"))
    head.add_row("sni", escape(report.sni or "(not sent)"))
    head.add_row("checked", escape(report.hostname))
    parts: list[RenderableType] = [head, Text("")]
    if report.handshake is not None:
        parts += [Text("handshake", style="bold cyan"),
                  render_handshake(report.handshake, verbose=verbose), Text("")]
    parts += _chain_lines(report.chain, "certificate")
    check = report.check
    if check.trusted_anchor and verbose:
        parts.append(Text(""))
        parts += _chain_lines(check.path, "verified path")
    elif check.trusted_anchor:
        path = "  →  ".join(describe(c).subject for c in check.path)
        parts += [Text(""), Text.assemble(("verified path  ", "bold"), path)]
    revocation = {"not_checked": "not checked (give --crl FILE)",
                  "checked": "checked against the given CRLs",
                  "partial": "partly checked (no CRL for some certificates)"}[check.revocation]
    parts += [Text.assemble(("revocation  ", "bold"), revocation), Text("")]
    parts.append(render_verdicts(check.verdicts, report.verified))
    return Group(*parts)
