"""Each dialect exports one Dialect; every ErrorKind has a code in every dialect's table."""

from __future__ import annotations

import pytest

from easel.api.dialects.common import DEFAULT_STATUS, ErrorTable
from easel.domain.errors import ErrorKind
from easel.server import dialects


def test_the_app_serves_the_four_dialects_each_with_a_complete_error_table() -> None:
    served = dialects()
    assert [d.name for d in served] == ["runware", "wavespeed", "openai", "google"]
    for dialect in served:
        for kind in ErrorKind:
            assert dialect.errors.code(kind)
            assert 400 <= dialect.errors.status_of(kind) < 600
    assert {d.name for d in served if d.render_webhook is not None} == {"runware", "wavespeed"}


def test_an_incomplete_table_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match="no code for"):
        ErrorTable({ErrorKind.INVALID: "x"})
    assert set(DEFAULT_STATUS) == set(ErrorKind)


def test_two_apps_do_not_share_runware_sessions() -> None:
    first, second = dialects()[0], dialects()[0]
    assert first.router is not second.router
