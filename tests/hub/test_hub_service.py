"""The hub's domain logic under concurrency and over time, and its schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from datenraum.devtools.postgres import LocalPostgres
from datenraum.hub import db
from datenraum.hub.accounts.service import User
from datenraum.hub.db import Base, create_hub_engine, migrate
from datenraum.hub.feasibility.service import Federation
from datenraum.hub.roles import Role
from datenraum.privacy.aggregation import QuotaExceeded

from .helpers import HubFixture, newest_revision, older_than


def _user(hub: HubFixture, email: str = "researcher@example.org") -> User:
    user = hub.accounts.user_for(hub.user(email))
    assert user is not None
    return user


def _at_once(threads: int, work: Callable[[], Any]) -> list[Any]:
    """Run `work` in several threads started together; its results, or the exceptions it raised."""
    barrier = threading.Barrier(threads)

    def run() -> Any:
        barrier.wait(timeout=10)
        try:
            return work()
        except Exception as error:
            return error

    pool = ThreadPoolExecutor(threads)
    try:
        return [future.result(timeout=30) for future in [pool.submit(run) for _ in range(threads)]]
    finally:
        pool.shutdown(wait=False)  # a thread stuck in the database must not hang the test run


def test_concurrent_polls_of_a_site_never_hand_out_a_task_twice(hub: HubFixture) -> None:
    hub.sites("uk-a")
    federation = hub.federation(quota_per_minute=100)
    user = _user(hub)
    for years in range(20):
        federation.submit(user, older_than(years), None)
    site = hub.accounts.site_for(hub.accounts.rotate_site("uk-a"))
    assert site is not None
    claims = _at_once(4, lambda: federation.claim(site))
    handed_out = [task.id for claim in claims for task in claim.tasks]
    assert len(handed_out) == len(set(handed_out)) == 20


def test_concurrent_submissions_of_a_user_cannot_exceed_the_quota(hub: HubFixture) -> None:
    hub.sites("uk-a")
    federation = hub.federation(quota_per_minute=3)
    user = _user(hub)
    counter = iter(range(100))
    lock = threading.Lock()

    def submit() -> Any:
        with lock:
            years = next(counter)
        return federation.submit(user, older_than(years), None)

    outcomes = _at_once(6, submit)
    assert sum(isinstance(outcome, QuotaExceeded) for outcome in outcomes) == 3
    assert hub.count("queries") == 3


def test_quotas_hold_per_hour_and_per_day(hub: HubFixture) -> None:
    hub.sites("uk-a")
    federation: Federation = hub.federation(quota_per_minute=10, quota_per_hour=3, quota_per_day=4)
    user = _user(hub)
    years = iter(range(100))
    for _ in range(3):
        federation.submit(user, older_than(next(years)), None)
        hub.clock.advance(61)
    with pytest.raises(QuotaExceeded, match="3 per hour") as refused:
        federation.submit(user, older_than(next(years)), None)
    assert 0 < refused.value.retry_after.total_seconds() <= 3600
    hub.clock.advance(3600)
    federation.submit(user, older_than(next(years)), None)
    with pytest.raises(QuotaExceeded, match="4 per day"):
        federation.submit(user, older_than(next(years)), None)
    hub.clock.advance(24 * 3600)
    federation.submit(user, older_than(next(years)), None)


def test_reused_queries_do_not_count_against_the_quota(hub: HubFixture) -> None:
    hub.sites("uk-a")
    federation = hub.federation(quota_per_minute=1)
    user = _user(hub)
    first = federation.submit(user, older_than(50), None)
    for _ in range(3):
        assert federation.submit(user, older_than(50), None).query_id == first.query_id
    with pytest.raises(QuotaExceeded):
        federation.submit(user, older_than(51), None)


def test_an_admin_is_held_to_the_same_quota(hub: HubFixture) -> None:
    hub.sites("uk-a")
    federation = hub.federation(quota_per_minute=1)
    admin = _user(hub, "admin@example.org")
    admin = User(admin.id, admin.email, frozenset({Role.ADMIN}))
    federation.submit(admin, older_than(50), None)
    with pytest.raises(QuotaExceeded):
        federation.submit(admin, older_than(51), None)


def test_the_migrations_create_exactly_the_tables_of_the_models(hub: HubFixture) -> None:
    with hub.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert migrate(hub.engine) == newest_revision()  # migrating again changes nothing


def test_several_commands_may_migrate_a_new_database_at_once(new_database_url: str) -> None:
    engines = [create_hub_engine(new_database_url) for _ in range(4)]
    unused = list(engines)
    try:
        assert _at_once(4, lambda: migrate(unused.pop())) == [newest_revision()] * 4
    finally:
        for engine in engines:
            engine.dispose()


def test_times_are_stored_in_utc_whatever_the_zone_they_came_in(hub: HubFixture) -> None:
    hub.clock.now = dt.datetime(2025, 3, 4, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    hub.sites("uk-a")
    with hub.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT created FROM sites")).scalar_one()
    assert str(stored).startswith("2025-03-04 12:00:00")


@pytest.mark.parametrize("idle", [False, True])
def test_after_a_postgresql_restart_a_connection_idle_since_is_replaced_a_busy_one_fails_once(
    monkeypatch: pytest.MonkeyPatch, idle: bool
) -> None:
    # A pooled connection is pinged only after PING_AFTER_IDLE_SECONDS; here that is all or nothing.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0 if idle else 3600.0)
    with LocalPostgres(durable=False) as server:
        engine = create_hub_engine(server.new_database())
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT 1")) == 1
        server.restart()
        if not idle:
            with pytest.raises(sa.exc.OperationalError), engine.connect() as connection:
                connection.scalar(sa.text("SELECT 1"))
        with engine.connect() as connection:  # the pool has replaced the dead connection
            assert connection.scalar(sa.text("SELECT 1")) == 1
        engine.dispose()
