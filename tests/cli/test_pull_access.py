"""`easel pull` and the hub's access rules, on a hub on loopback that answers as the real one:
a gated repository is 401 without a token, 403 for an account that has not accepted its
licence, and an unknown token is 401 "Invalid credentials"; and the cache it fills is the one
HF_HUB_CACHE names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response
from tests.cli.fake_hub import FakeHub, Repo, running
from tests.cli.test_cli import run
from tests.cli.test_pull import hub_env

from easel.engine.families import stand_in_dir
from easel.services.weights.files import snapshot_gap

GATED = "acme/gated-flux"
ACCEPTED, NOT_ACCEPTED = "hf_accepted_the_licence", "hf_has_not_accepted"


@dataclass
class AccessHub(FakeHub):
    """Tokens the hub knows, and the ones whose account accepted the gated licences."""

    known: set[str] = field(default_factory=lambda: {ACCEPTED, NOT_ACCEPTED})
    accepted: set[str] = field(default_factory=lambda: {ACCEPTED})

    def _repo(self, request: Request) -> Repo | Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token and token not in self.known:
            return Response(status_code=401, headers={
                "X-Error-Message": "Invalid credentials in Authorization header"})
        repo = super()._repo(request)
        if not (isinstance(repo, Response) and repo.headers.get("X-Error-Code") == "GatedRepo"):
            return repo
        if token in self.accepted:
            repo_id = f"{request.path_params['org']}/{request.path_params['name']}"
            return self.repos[repo_id]
        if token:  # a known account that has not accepted: the hub's 403
            return Response(status_code=403, headers={
                "X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted "
                "and you are not in the authorized list."})
        return repo


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stand_in_dir("easel/tiny-flux", tmp_path_factory.mktemp("hub") / "tiny")


def catalog_overlay(path: Path) -> Path:
    """A backend on the gated repository, under a licence the catalog names."""
    path.write_text(f'[backends.gated]\nsource = "{GATED}"\nfamily = "flux"\n'
                    'license = "flux-1-dev-non-commercial"\nsteps = 2\nguidance = 3.5\n'
                    '[tiers.standard]\nbackend = "gated"\n')
    return path


def pull(hub: FakeHub, data_dir: Path, tmp_path: Path, **env: str) -> tuple[int, str]:
    with running(hub) as endpoint:
        result = run(["pull", "gated"], data_dir, **hub_env(endpoint, tmp_path / "hf"),
                     EASEL_CATALOG_FILE=str(catalog_overlay(tmp_path / "o.toml")), **env)
    message = result.stderr.strip().replace(endpoint, "HUB").removeprefix("error: ")
    assert result.returncode == 0 or len(message.splitlines()) == 1, message
    return result.returncode, message


def test_a_gated_backend_names_the_licence_to_accept_and_how_to_log_in(
    folder: Path, data_dir: Path, tmp_path: Path
) -> None:
    hub = AccessHub({GATED: Repo(folder, gated=True)})
    code, message = pull(hub, data_dir, tmp_path)
    assert code == 1
    assert message == (
        f"{GATED} is gated at HUB: accept the FLUX.1 [dev] Non-Commercial License "
        "(https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md) at "
        f"HUB/{GATED} with your account, then log in with `hf auth login` or set HF_TOKEN to "
        "an access token (HUB/settings/tokens) and run this again")


def test_a_token_whose_account_has_not_accepted_is_told_so(
    folder: Path, data_dir: Path, tmp_path: Path
) -> None:
    hub = AccessHub({GATED: Repo(folder, gated=True)})
    code, message = pull(hub, data_dir, tmp_path, HF_TOKEN=NOT_ACCEPTED)
    assert code == 1
    assert message.startswith(f"{GATED} is gated at HUB and your token's account has no access "
                              "yet: accept the FLUX.1 [dev] Non-Commercial License")
    assert f"at HUB/{GATED} with that account" in message and "log in" not in message


def test_an_invalid_token_is_told_apart_from_a_missing_repository(
    folder: Path, data_dir: Path, tmp_path: Path
) -> None:
    hub = AccessHub({GATED: Repo(folder, gated=True)})
    code, message = pull(hub, data_dir, tmp_path, HF_TOKEN="hf_revoked")
    assert code == 1
    assert message == (f"HUB refused the access token sent for {GATED} (invalid or expired): "
                       "set HF_TOKEN to a valid one from HUB/settings/tokens, or run "
                       "`hf auth login` again")


def test_the_accepted_token_downloads_into_the_cache_hf_hub_cache_names(
    folder: Path, data_dir: Path, tmp_path: Path
) -> None:
    """HF_HUB_CACHE alone (no HF_HOME) decides where weights land, and where easel looks."""
    hub = AccessHub({GATED: Repo(folder, gated=True)})
    cache = tmp_path / "shared-cache"
    with running(hub) as endpoint:
        env = {**hub_env(endpoint, tmp_path / "home"), "HF_HUB_CACHE": str(cache),
               "HF_TOKEN": ACCEPTED}
        result = run(["pull", GATED], data_dir, **env)
    assert result.returncode == 0, result.stderr
    snapshot = Path(result.stdout.strip().splitlines()[-1].split(" -> ")[1])
    assert cache in snapshot.parents and snapshot_gap(snapshot) is None
    listing = run(["models"], data_dir, COLUMNS="250", HF_HUB_CACHE=str(cache),
                  HF_HOME=str(tmp_path / "elsewhere"),
                  EASEL_CATALOG_FILE=str(catalog_overlay(tmp_path / "o.toml")))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if GATED in line)
    assert "present" in row
