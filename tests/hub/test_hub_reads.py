"""Reads on SQLite (`db.reading`, `Hub.read`): they run beside a writer instead of queueing for its lock,
and a write slipped into one is refused whole."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from datenraum.hub.db import SiteRow, create_hub_engine, reading


@pytest.fixture
def engine(sqlite_template: Path, tmp_path: Path):
    path = tmp_path / "hub.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_hub_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def _add_site(connection: sa.Connection, name: str) -> None:
    connection.execute(
        sa.insert(SiteRow.__table__),
        {"name": name, "credential_hash": name * 8, "active": True, "created": dt.datetime.now(dt.UTC)},
    )


def test_a_read_answers_while_another_transaction_holds_the_write_lock(engine: sa.Engine) -> None:
    with engine.begin() as writer:
        _add_site(writer, "uncommitted")  # BEGIN IMMEDIATE: the write lock is held until the block ends
        with reading(), engine.connect() as reader:
            # Without `reading`, this BEGIN IMMEDIATE would wait out the busy timeout and fail.
            names = reader.execute(sa.select(SiteRow.name)).scalars().all()
    assert names == []  # the writer's rows are not visible before it commits


def test_a_write_inside_reading_is_refused_and_leaves_nothing(engine: sa.Engine) -> None:
    with (
        pytest.raises(sa.exc.OperationalError, match="readonly database"),
        reading(),
        engine.begin() as connection,
    ):
        _add_site(connection, "sneaked")
    with engine.begin() as connection:  # and the connection, back in the pool, writes again outside
        _add_site(connection, "allowed")
        names = connection.execute(sa.select(SiteRow.name)).scalars().all()
    assert names == ["allowed"]
