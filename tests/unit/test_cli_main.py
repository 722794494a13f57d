"""The command's error contract: one line on stderr, exit 2 for usage, never a traceback."""

import pytest

from wirekit.cli.main import main


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["connect", ":1", "--bogus"], "No such option '--bogus'"),
        (["tunnel"], "Missing argument"),
        (["nosuch"], "No such command 'nosuch'"),
        (["connect", "host"], "has no port"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("wirekit: error: ")
    assert needle in err


def test_missing_certificate_file_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    from wirekit.errors import UsageError
    from wirekit.tls.context import server_context

    with pytest.raises(UsageError, match=r"cannot read certificate '/nonexistent/c\.pem'"):
        server_context(cert="/nonexistent/c.pem", key="/nonexistent/k.pem")
