"""Each dialect exports one Dialect; every ErrorKind has a code in every dialect's table."""

from __future__ import annotations

import pytest

from easel.api.dialects.common import DEFAULT_STATUS, ErrorTable, owner_of
from easel.domain.errors import ErrorKind
from easel.runtime.build import dialects


def test_the_app_serves_the_four_dialects_each_with_a_complete_error_table() -> None:
    served = dialects()
    assert [d.name for d in served] == ["runware", "wavespeed", "google", "openai", "easel"]
    for dialect in served:
        for kind in ErrorKind:
            assert dialect.errors.code(kind)
            assert 400 <= dialect.errors.status_of(kind) < 600
    assert {d.name for d in served if d.render_webhook is not None} == {"runware", "wavespeed"}
    assert {d.name for d in served if d.sign_webhook is not None} == {"wavespeed"}


def test_an_incomplete_table_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match="no code for"):
        ErrorTable({ErrorKind.INVALID: "x"})
    assert set(DEFAULT_STATUS) == set(ErrorKind)


def test_two_apps_do_not_share_runware_sessions() -> None:
    first, second = dialects()[0], dialects()[0]
    assert first.router is not second.router


GOOGLE_CLIENT = {"x-goog-api-client": "google-genai-sdk/3.6.1 gl-python/3.11"}


@pytest.mark.parametrize(("path", "headers", "query", "owner"), [
    ("/v1", {}, "", "runware"),
    ("/v1/", {}, "", "runware"),
    ("/v1/images/edits", {}, "", "openai"),
    ("/v1/chat/completions", {}, "", "openai"),
    ("/v1/models", {}, "", "openai"),
    ("/v1/models", GOOGLE_CLIENT, "", "google"),
    ("/v1/models/imagen-4.0-generate-001", {}, "key=k", "google"),
    ("/v1/models/imagen-4.0-generate-001:predict", {}, "", "google"),
    ("/v1/models/gemini-2.5-flash-image:generateContent", {}, "", "google"),
    ("/v1/models/gemini-2.5-flash-image:streamGenerateContent", {}, "alt=sse", "google"),
    ("/v1beta/cachedContents", {}, "", "google"),
    ("/v1/projects/p/locations/l/endpoints", {}, "", "google"),
    ("/api/v3/media/upload/binary", {}, "", "wavespeed"),
    ("/api/v3/google/imagen4:predict", {}, "key=k", "wavespeed"),
    ("/v1", {}, "key=k", "runware"),
    ("/readyz", {}, "", None),
    ("/v10/x", {}, "", None),
])
def test_each_path_is_answered_in_its_owners_shape(
    path: str, headers: dict[str, str], query: str, owner: str | None
) -> None:
    found = owner_of(dialects(), path, headers, query)
    assert (found.name if found else None) == owner
