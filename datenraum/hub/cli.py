"""`datenraum hub ...`: run the hub and administer its sites and users.

Every command takes `--config hub.toml` and `--database-url URL` (see `config` for the settings and
their environment variables) and brings the database schema up to date before it uses it. Secrets
(site credentials, API tokens) are printed once, or written to a file only its owner can read; the hub
keeps only their hashes. The web stack is imported only by the commands that need it, so that the rest
of the `datenraum` command stays quick to start.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from datenraum.hub.config import ConfigError, HubConfig, load_config
from datenraum.hub.roles import Role

__all__ = ["hub_cli"]


@click.group("hub")
def hub_cli() -> None:
    """The hub: distributes queries to the sites and collects their obfuscated counts."""


def _with_config(command: Callable[..., None]) -> Callable[..., None]:
    """Add --config and --database-url, and hand the command the resulting HubConfig as `config`."""

    @click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="TOML file with hub settings.",
    )
    @click.option(
        "--database-url",
        help="SQLAlchemy URL (default sqlite:///var/hub/hub.db; env DATENRAUM_HUB_DATABASE_URL).",
    )
    @functools.wraps(command)
    def wrapper(config_file: Path | None, database_url: str | None, **kwargs: Any) -> None:
        try:
            config = load_config(config_file, database_url=database_url)
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
        command(config=config, **kwargs)

    return wrapper


@contextlib.contextmanager
def _database(config: HubConfig) -> Iterator[tuple[Any, str]]:
    """The engine for the configured database, migrated, and its schema revision; database failures
    become one-line errors."""
    import sqlalchemy.exc

    from datenraum.hub.db import create_hub_engine, migrate

    try:
        engine = create_hub_engine(config.database_url)
    except (ValueError, sqlalchemy.exc.ArgumentError) as error:
        raise click.ClickException(f"database URL: {error}") from None
    try:
        yield engine, migrate(engine)
    except sqlalchemy.exc.SQLAlchemyError as error:
        problem = getattr(error, "orig", None) or error
        raise click.ClickException(f"database {engine.url!r}: {problem}") from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def _accounts(config: HubConfig) -> Iterator[Any]:
    from sqlalchemy.orm import sessionmaker

    from datenraum.hub.accounts.service import Accounts
    from datenraum.hub.errors import AccountError

    with _database(config) as (engine, _revision):
        try:
            yield Accounts(sessionmaker(engine), token_lifetime=config.token_lifetime)
        except AccountError as error:
            raise click.ClickException(str(error)) from None


def _hand_out(secret: str, what: str, path: Path | None) -> None:
    """Print a new secret once, or write it to `path` readable by its owner only."""
    if path is None:
        click.echo(f"{what} (shown only this once):", err=True)
        click.echo(secret)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # an existing file would keep its mode otherwise
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secret + "\n")
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error}; issue a new secret to try again") from None
    click.echo(f"{what} written to {path}", err=True)


@hub_cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes on one socket (more than 1 needs PostgreSQL; see the README's production setup).",
)
@_with_config
def serve_command(config: HubConfig, host: str, port: int, workers: int) -> None:
    """Migrate the database and serve the hub's HTTP API (OpenAPI at /openapi.json)."""
    from datenraum.hub.serve import check_workers, serve

    try:
        check_workers(config, workers)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    with _database(config) as (engine, revision):
        click.echo(f"database {engine.url!r} at schema revision {revision}", err=True)
        _report_seed(_seed_directory(engine))
    serve(config, host, port, workers)


@hub_cli.command("migrate")
@_with_config
def migrate_command(config: HubConfig) -> None:
    """Create the hub's tables, or bring them up to date."""
    with _database(config) as (engine, revision):
        click.echo(f"database {engine.url!r} is at schema revision {revision}")


@hub_cli.command("seed-directory")
@_with_config
def seed_directory_command(config: HubConfig) -> None:
    """Add the network directory's initial sites, infrastructures and projects that are missing (the hub
    does this at every start too; entries the coordination office changed are never overwritten)."""
    with _database(config) as (engine, _revision):
        _report_seed(_seed_directory(engine))


def _seed_directory(engine: Any) -> Any:
    from sqlalchemy.orm import sessionmaker

    from datenraum.hub.directory.service import load_seed

    return load_seed(sessionmaker(engine))


def _report_seed(added: Any) -> None:
    click.echo(
        f"network directory: {added.sites} sites, {added.entries} infrastructures and projects, "
        f"{added.participations} participations added",
        err=True,
    )


_credential_file_option = click.option(
    "--credential-file", type=click.Path(dir_okay=False, path_type=Path), help="Write it here (mode 0600)."
)


@hub_cli.command("add-site")
@click.argument("name")
@_credential_file_option
@_with_config
def add_site_command(config: HubConfig, name: str, credential_file: Path | None) -> None:
    """Register a site and issue its credential."""
    with _accounts(config) as accounts:
        credential = accounts.add_site(name)
    _hand_out(credential, f"credential of site {name}", credential_file)


@hub_cli.command("rotate-site")
@click.argument("name")
@_credential_file_option
@_with_config
def rotate_site_command(config: HubConfig, name: str, credential_file: Path | None) -> None:
    """Issue a new credential for a site (re-activating it if revoked); the old one stops working."""
    with _accounts(config) as accounts:
        credential = accounts.rotate_site(name)
    _hand_out(credential, f"new credential of site {name}", credential_file)


@hub_cli.command("revoke-site")
@click.argument("name")
@_with_config
def revoke_site_command(config: HubConfig, name: str) -> None:
    """Stop accepting a site's credential; its open tasks run into their deadlines."""
    with _accounts(config) as accounts:
        accounts.revoke_site(name)
    click.echo(f"site {name} revoked", err=True)


@hub_cli.command("create-user")
@click.argument("email")
@click.option(
    "--role",
    # site-admin is not offered: it needs a site, which the portal's administration gives.
    type=click.Choice([role.value for role in Role if role is not Role.SITE_ADMIN]),
    default="researcher",
    show_default=True,
    help="admin is the coordination office (approves accounts, manages sites and roles).",
)
@click.option("--name", default="", help="The person's name, as the portal shows it.")
@click.option(
    "--password-file",
    type=click.File("r", encoding="utf-8"),
    help="Read a portal password from the first line of this file ('-': standard input), so the person can "
    "also sign in to the portal.",
)
@click.option(
    "--token-file", type=click.Path(dir_okay=False, path_type=Path), help="Write it here (mode 0600)."
)
@_with_config
def create_user_command(
    config: HubConfig, email: str, role: str, name: str, password_file: Any, token_file: Path | None
) -> None:
    """Create an approved user and issue their API token (e.g. the first coordination-office admin)."""

    password = password_file.readline().rstrip("\r\n") if password_file is not None else None
    with _accounts(config) as accounts:
        token = accounts.create_user(email, Role(role), name=name, password=password)
    _hand_out(token, f"API token of {email} ({role})", token_file)
