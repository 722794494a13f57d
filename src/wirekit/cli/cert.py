"""``wirekit cert init|issue|show``: a local CA and the certificates it issues."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import click
from rich.console import Console

from wirekit.errors import UsageError
from wirekit.report.chain import render_certificate
from wirekit.tls.certs import LocalCA, describe, load_certificates

__all__ = ["cert"]

_CTX = {"help_option_names": ["-h", "--help"]}
_RELATIVE = re.compile(r"^([+-]?)(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_moment(text: str | None, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """``2026-11-26``, ``2026-11-26T12:00:00Z`` or relative ``-3d`` / ``+2h`` / ``30m``."""
    if text is None:
        return None
    m = _RELATIVE.match(text.strip())
    if m:
        delta = dt.timedelta(**{_UNITS[m.group(3)]: int(m.group(2))})
        base = now or dt.datetime.now(dt.UTC)
        return base - delta if m.group(1) == "-" else base + delta
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not a date (use 2026-11-26, 2026-11-26T12:00:00Z, "
                         "or relative -3d, +12h)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _default_prefix(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("*", "_wildcard")) or "cert"


@click.group("cert", context_settings=_CTX, epilog="""
\b
Examples:
  wirekit cert init                         # CA in ~/.local/share/wirekit/ca
  wirekit cert issue localhost 127.0.0.1 ::1
  wirekit cert issue api.test --out certs/api --intermediate
  wirekit cert issue alice --client --out alice
  wirekit cert issue old.test --not-after -3d     # an expired test certificate
  wirekit cert show localhost.pem --json
""")
def cert() -> None:
    """A local CA (like mkcert) that never touches the system's trust stores."""


@cert.command("init", context_settings=_CTX, epilog="""
\b
Examples:
  wirekit cert init
  wirekit cert init --dir ./ca --key rsa:3072 --days 825
""")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Where ca.pem and ca-key.pem go (default: $XDG_DATA_HOME/wirekit/ca).")
@click.option("--key", default="ec", show_default=True, help="ec, ec:p384, rsa:BITS, ed25519.")
@click.option("--days", type=click.IntRange(min=1), help="Validity (default 3650).")
@click.option("--force", is_flag=True, help="Replace an existing CA.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the CA certificate's path.")
def init(directory: str | None, key: str, days: int | None, force: bool, quiet: bool) -> None:
    """Create the local CA: DIR/ca.pem (share it) and DIR/ca-key.pem (0600, stays here)."""
    ca = LocalCA.init(directory, key=key, days=days, force=force)
    click.echo(str(ca.cert_path))
    if not quiet:
        click.echo(trust_instructions(ca.cert_path), err=True)


def trust_instructions(ca_path: Path) -> str:
    p = str(ca_path)
    key = ca_path.parent / LocalCA.KEY
    return f"""created a CA: {p} (its key {key} never leaves that directory)

wirekit does not edit any trust store.  To trust this CA:
  wirekit:   wirekit tls HOST:PORT --ca {p}      (and --ca for connect/forward)
  curl:      curl --cacert {p} https://localhost:8443/
  Python:    SSL_CERT_FILE={p} python app.py   (requests: REQUESTS_CA_BUNDLE={p})
  Firefox:   Settings > Privacy & Security > Certificates > View Certificates >
             Authorities > Import... {p}  (tick "identify websites")
  Chrome:    Settings > Privacy and security > Security > Manage certificates >
             Authorities > Import {p}
             (on Linux: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n wirekit -i {p})
Next: wirekit cert issue localhost 127.0.0.1 ::1"""


@cert.command("issue", context_settings=_CTX, epilog="""
\b
Examples:
  wirekit cert issue localhost 127.0.0.1 ::1          # ./localhost.pem, ./localhost-key.pem
  wirekit cert issue '*.app.test' --out app --key rsa:2048
  wirekit cert issue api.test --intermediate           # leaf + intermediate in api.test.pem
  wirekit cert issue alice --client                    # a client certificate for mutual TLS
  wirekit cert issue soon.test --not-before +2d        # not valid yet, for tests
""")
@click.argument("names", nargs=-1, required=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="The CA's directory (default: $XDG_DATA_HOME/wirekit/ca).")
@click.option("--out", "prefix", metavar="PREFIX",
              help="Write PREFIX.pem and PREFIX-key.pem (default: the first name).")
@click.option("--client", is_flag=True, help="A client certificate (EKU clientAuth).")
@click.option("--days", type=click.IntRange(min=1), help="Validity in days (default 365).")
@click.option("--not-before", metavar="WHEN", help="Start: a date, or relative like -3d.")
@click.option("--not-after", metavar="WHEN", help="End: a date, or relative like -1d.")
@click.option("--key", default="ec", show_default=True, help="ec, ec:p384, rsa:BITS, ed25519.")
@click.option("--intermediate", is_flag=True,
              help="Issue from the CA's intermediate (created on first use): 3-link chains.")
@click.option("--force", is_flag=True, help="Replace existing PREFIX files.")
def issue(names: tuple[str, ...], directory: str | None, prefix: str | None, client: bool,
          days: int | None, not_before: str | None, not_after: str | None, key: str,
          intermediate: bool, force: bool) -> None:
    """Issue a certificate for DNS NAMES and IP addresses from the local CA."""
    if days is not None and not_after is not None:
        raise UsageError("--days and --not-after contradict each other")
    ca = LocalCA.open(directory)
    issued = ca.issue(list(names), prefix or _default_prefix(names[0]), client=client, key=key,
                      days=days, not_before=parse_moment(not_before),
                      not_after=parse_moment(not_after), intermediate=intermediate,
                      force=force)
    click.echo(str(issued.cert_path))
    click.echo(str(issued.key_path))
    info = describe(issued.chain[0])
    click.echo(f"issued {'client' if client else 'server'} certificate for "
               f"{', '.join(info.san)}, valid until {info.not_after:%Y-%m-%d}; "
               f"CA: {ca.cert_path}", err=True)


@cert.command("show", context_settings=_CTX, epilog="""
\b
Examples:
  wirekit cert show localhost.pem
  wirekit cert show ~/.local/share/wirekit/ca/ca.pem --json
""")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per certificate.")
def show(file: str, as_json: bool) -> None:
    """Show every certificate in FILE (PEM or DER)."""
    infos = [describe(c) for c in load_certificates(file)]
    if not infos:
        raise UsageError(f"{file!r} holds no certificate")
    if as_json:
        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    out = Console(highlight=False)
    for n, info in enumerate(infos):
        if n:
            out.print()
        out.print(render_certificate(info, title=f"certificate #{n}" if len(infos) > 1 else None))



