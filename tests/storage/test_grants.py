"""The application role's grants: exactly what docs/operations.md shows, for plain names only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import SQLModel

from storage.migrate import app_role_grants

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def squeezed(text: str) -> str:
    """Whitespace collapsed, so wrapped SQL compares equal."""
    return re.sub(r"\s+", " ", text)


def test_the_documented_grants_are_the_ones_run() -> None:
    """Every statement `migrate --grant-to` runs is in the Hardening section, word for word."""
    hardening = squeezed(DOCS.read_text().split("## Hardening", 1)[1])
    for statement in app_role_grants("releasebot_app", SQLModel.metadata.tables):
        assert f"{statement};" in hardening, statement


@pytest.mark.parametrize("role", ["", "App", "a;DROP TABLE releases", "x" * 64, "1app"])
def test_only_plain_role_names(role: str) -> None:
    """A role name is never quoted into SQL: anything but a plain lower-case name is refused."""
    with pytest.raises(ValueError, match="not a plain role name"):
        app_role_grants(role, ["releases"])
