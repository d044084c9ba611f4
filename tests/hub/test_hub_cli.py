"""`datenraum hub ...` and the hub's settings: secrets shown once and stored hashed, files only the owner
reads, configuration from TOML and environment, and `serve` as a real process."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from datenraum.cli import main
from datenraum.hub.accounts.secrets import hash_secret
from datenraum.hub.config import ConfigError, HubConfig, load_config
from datenraum.hub.roles import Role

from .helpers import HubFixture, newest_revision


def _hub(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["hub", *args], env=env)


def test_add_site_prints_the_credential_once_and_stores_only_its_hash(
    database_url: str, hub: HubFixture
) -> None:
    result = _hub("add-site", "uk-a", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    credential = result.stdout.strip()
    assert credential.startswith("drs_")
    assert len(credential) > 40
    assert "shown only this once" in result.stderr
    with hub.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT name, credential_hash FROM sites")).one()
    assert stored == ("uk-a", hash_secret(credential))
    assert hub.accounts.site_for(credential).name == "uk-a"

    again = _hub("add-site", "uk-a", "--database-url", database_url)
    assert again.exit_code == 1
    assert "exists already" in again.stderr


def test_secrets_written_to_files_are_readable_by_their_owner_only(
    database_url: str, hub: HubFixture, tmp_path: Path
) -> None:
    credential_file = tmp_path / "secrets" / "uk-a.credential"
    token_file = tmp_path / "token"
    token_file.write_text("old")
    token_file.chmod(0o644)
    assert (
        _hub(
            "add-site", "uk-a", "--credential-file", str(credential_file), "--database-url", database_url
        ).exit_code
        == 0
    )
    created = _hub(
        "create-user",
        "admin@example.org",
        "--role",
        "admin",
        "--token-file",
        str(token_file),
        "--database-url",
        database_url,
    )
    assert created.exit_code == 0, created.output
    for path in (credential_file, token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().endswith("\n")
    assert created.stdout == ""
    assert hub.accounts.site_for(credential_file.read_text().strip()).name == "uk-a"
    user = hub.accounts.user_for(token_file.read_text().strip())
    assert (user.email, user.roles) == ("admin@example.org", {Role.ADMIN})


def test_rotating_and_revoking_a_site(database_url: str, hub: HubFixture) -> None:
    first = _hub("add-site", "uk-a", "--database-url", database_url).stdout.strip()
    rotated = _hub("rotate-site", "uk-a", "--database-url", database_url)
    assert rotated.exit_code == 0
    second = rotated.stdout.strip()
    assert hub.accounts.site_for(first) is None
    assert hub.accounts.site_for(second).name == "uk-a"
    assert _hub("revoke-site", "uk-a", "--database-url", database_url).exit_code == 0
    assert hub.accounts.site_for(second) is None
    unknown = _hub("revoke-site", "uk-x", "--database-url", database_url)
    assert unknown.exit_code == 1
    assert "no site named 'uk-x'" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add-site", "uk a"], "site name 'uk a'"),
        (["create-user", "not-an-address"], "is not an e-mail address"),
        (["create-user", "a@example.org", "--role", "king"], "'king' is not one of"),
    ],
)
def test_bad_names_are_refused(tmp_path: Path, args: list[str], error: str) -> None:
    result = _hub(*args, "--database-url", f"sqlite:///{tmp_path}/hub.db")
    assert result.exit_code != 0
    assert error in result.stderr


def test_an_unreachable_database_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    result = _hub("migrate", "--database-url", f"postgresql://nobody:secret@127.0.0.1:{port}/hub")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: database postgresql+psycopg://nobody:***@127.0.0.1")
    assert "secret" not in result.stderr
    assert "Traceback" not in result.output


def test_the_database_url_comes_from_the_environment_unless_given(tmp_path: Path) -> None:
    env = {"DATENRAUM_HUB_DATABASE_URL": f"sqlite:///{tmp_path}/env.db"}
    assert _hub("migrate", env=env).stdout.startswith(
        f"database sqlite:///{tmp_path}/env.db is at schema revision"
    )
    given = _hub("migrate", "--database-url", f"sqlite:///{tmp_path}/given.db", env=env)
    assert f"{tmp_path}/given.db" in given.stdout


def test_settings_come_from_defaults_toml_environment_and_overrides_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nmin_sites = 5\nquota_per_minute = 2\ndatabase_url = "sqlite:///toml.db"\n')
    config = load_config(path, env={"DATENRAUM_HUB_QUOTA_PER_MINUTE": "7", "OTHER": "x"}, database_url=None)
    assert (config.min_sites, config.quota_per_minute, config.database_url) == (5, 7, "sqlite:///toml.db")
    assert config.task_deadline_seconds == HubConfig().task_deadline_seconds
    assert load_config(path, env={}, min_sites=4).min_sites == 4
    assert config.policy.per_minute == 7
    assert config.policy.reuse_window == dt.timedelta(hours=24)
    flat = tmp_path / "flat.toml"
    flat.write_text("task_deadline_seconds = 12.5\n")
    assert load_config(flat, env={}).task_deadline == dt.timedelta(seconds=12.5)


@pytest.mark.parametrize(
    ("toml", "env", "error"),
    [
        ("min_site = 3\n", {}, "unknown setting 'min_site'"),
        ('min_sites = "3"\n', {}, "min_sites"),
        ("min_sites = 2.5\n", {}, "min_sites"),
        ("min_sites = true\n", {}, "min_sites"),
        ("", {"DATENRAUM_HUB_LEASE_SECONDS": "soon"}, "DATENRAUM_HUB_LEASE_SECONDS"),
        ("", {"DATENRAUM_HUB_MIN_SITES": "0"}, "min_sites: must be positive"),
        ("min_sites = [", {}, "hub.toml"),
    ],
)
def test_bad_settings_are_refused_naming_them(
    tmp_path: Path, toml: str, env: dict[str, str], error: str
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=error.replace("[", r"\[")):
        load_config(path, env=env)


def test_serve_migrates_a_new_database_and_answers_over_http(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATENRAUM_HUB_DATABASE_URL": f"sqlite:///{tmp_path}/hub.db"}
    command = [str(Path(sys.executable).with_name("datenraum")), "hub", "serve", "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "the hub did not start within 30 s"
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response.status_code == 200
        unauthorized = httpx.get(f"http://127.0.0.1:{port}/api/site/v1/tasks", timeout=5)
        assert unauthorized.status_code == 401
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0].decode()
    assert f"schema revision {newest_revision()}" in output
    assert (tmp_path / "hub.db").exists()


def test_routine_agent_traffic_leaves_no_access_log_line_and_its_failures_do() -> None:
    from datenraum.hub.serve import _routine_site_traffic_left_out as logged

    def line(method: str, path: str, status: int) -> logging.LogRecord:
        args = ("127.0.0.1:5000", method, path, "1.1", status)
        return logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)

    assert not logged(line("GET", "/api/site/v1/tasks?wait=25", 200))
    assert not logged(line("POST", "/api/site/v1/tasks/0b6c1f0e-6f3c-4a59-9d43-3a1c2b1d6e11/result", 200))
    assert logged(line("GET", "/api/site/v1/tasks?wait=25", 401))
    assert logged(line("POST", "/api/site/v1/heartbeat", 200))
    assert logged(line("POST", "/api/v1/queries", 201))
