"""Nothing a user can call or set goes undocumented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastpaca_core.cli import build_parser
from fastpaca_core.http.openapi import openapi_document
from fastpaca_core.settings import Settings
from fastpaca_proxy.openapi import proxy_openapi

DOCS = Path(__file__).resolve().parent.parent / "docs"


def all_docs() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


@pytest.mark.parametrize("field", Settings.fields(), ids=lambda f: f.name)
def test_every_setting_is_documented(field: object) -> None:
    config = (DOCS / "configuration.md").read_text()
    env = field.metadata["env"]  # type: ignore[attr-defined]
    name = field.name  # type: ignore[attr-defined]
    row = next((line for line in config.splitlines() if f"`{env}`" in line), None)
    assert row is not None, f"{env} is missing from docs/configuration.md"
    assert f"`--{name.replace('_', '-')}`" in row
    default = field.default  # type: ignore[attr-defined]
    assert ("none" if default is None else f"`{default}`") in row


def test_every_cli_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    config = (DOCS / "configuration.md").read_text()
    for name in commands.choices:  # type: ignore[union-attr]
        assert f"`fastpaca {name}`" in config, f"fastpaca {name} is not documented"


def test_every_http_route_is_documented() -> None:
    text = all_docs()
    paths = openapi_document(extra=proxy_openapi())["paths"]
    assert len(paths) > 20
    for path, operations in paths.items():
        pattern = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{[^}]+\}", r"\\{[^}]+\\}", pattern)
        assert re.search(pattern, text), f"route {path} is not documented in docs/"
        for method in operations:
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                assert re.search(rf"{method.upper()}\s+`?{pattern}", text), (
                    f"{method.upper()} {path} is not documented in docs/"
                )
