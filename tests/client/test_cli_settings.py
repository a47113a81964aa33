"""``fastpaca serve`` with a bad setting: the serve command's usage, exit code 2,
and the setting named as the user gave it (its flag and its variable)."""

from __future__ import annotations

import pytest

from fastpaca_core.cli import main


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (["serve", "--port", "70000"], {}, "--port (FASTPACA_PORT): must be 0-65535"),
        ([], {"FASTPACA_PORT": "70000"}, "--port (FASTPACA_PORT): must be 0-65535"),
        (
            ["serve", "--log-level", "chatty"],
            {},
            "--log-level (FASTPACA_LOG_LEVEL): must be one of",
        ),
        ([], {"FASTPACA_PORT": "http"}, "FASTPACA_PORT: must be a number, got 'http'"),
    ],
)
def test_a_bad_setting_names_its_flag_and_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    said: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        main(argv or ["serve"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fastpaca serve" in err  # the command's usage, with its flags
    assert f"fastpaca serve: error: {said}" in err, err


def test_an_empty_key_flag_is_refused_not_run_open(capsys: pytest.CaptureFixture[str]) -> None:
    """``fastpaca serve --api-key "$UNSET"`` would start a server without
    authentication; the flag given empty is an error naming it."""
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--api-key", ""])
    assert exited.value.code == 2
    assert "--api-key (FASTPACA_API_KEY): is empty" in capsys.readouterr().err
