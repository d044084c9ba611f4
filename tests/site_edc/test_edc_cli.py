"""`datenraum studies users add` and `datenraum studies serve`: thin commands over the EDC's library, whose
errors name the file and key (never a stack trace)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from datenraum.cli import main
from datenraum.site.studies.accounts import Accounts
from datenraum.site.studies.database import EdcDatabase

from .conftest import PASSWORD


def write_config(folder: Path, extra: str = "") -> Path:
    config = folder / "site.toml"
    config.write_text(
        f"""
[site]
name = "uk-nord"
store = "store"
database = "edc.sqlite"
{extra}
[hub]
url = "http://127.0.0.1:9"
credential_file = "site.credential"

[pseudonyms]
key_file = "site.key"
""",
        encoding="utf-8",
    )
    return config


def test_users_add_creates_an_account_that_signs_in_with_its_password(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = CliRunner().invoke(
        main,
        ["studies", "users", "add", "--config", str(config), "--email", "PI@uk-nord.example", "--name", "PI"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    database = EdcDatabase(tmp_path / "edc.sqlite")
    try:
        assert Accounts(database).check_password("pi@uk-nord.example", PASSWORD) is not None
    finally:
        database.close()


def test_users_add_refuses_a_short_password_and_a_second_account_for_the_same_email(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    add = [
        "studies",
        "users",
        "add",
        "--config",
        str(config),
        "--email",
        "pi@uk-nord.example",
        "--name",
        "PI",
    ]
    short = CliRunner().invoke(main, [*add, "--password", "kurz"])
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    assert CliRunner().invoke(main, [*add, "--password", PASSWORD]).exit_code == 0
    again = CliRunner().invoke(main, [*add, "--password", PASSWORD])
    assert again.exit_code == 2 and "exists already" in again.output


def test_a_config_with_an_unknown_key_is_an_error_naming_file_and_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'stor = "typo"')
    result = CliRunner().invoke(main, ["studies", "serve", "--config", str(config)])
    assert result.exit_code == 2
    assert str(config) in result.output and "site.stor: unknown key" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_folder_that_is_not_a_site_store(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = CliRunner().invoke(main, ["studies", "serve", "--config", str(config)])
    assert result.exit_code == 2 and "not a site store" in result.output
