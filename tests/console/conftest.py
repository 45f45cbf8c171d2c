"""Console fixtures: test clients signed in through the sign-in form."""

from __future__ import annotations

import pytest

from tests.console.console_client import ConsoleClient


@pytest.fixture
def console(client, owner_key) -> ConsoleClient:
    """The owner of `auth` (and of `make_poll`'s polls), signed in."""
    return ConsoleClient(client, owner_key)


@pytest.fixture
def other_console(app, other_auth) -> ConsoleClient:
    """Another owner, signed in on a client of its own."""
    return ConsoleClient(app.test_client(), other_auth["Authorization"].removeprefix("Bearer "))
