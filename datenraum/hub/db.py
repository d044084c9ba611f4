"""The hub's database: tables, engine and schema migration.

Everything the hub knows lives here, so that a restart loses nothing: sites, users, queries, the tasks
sent to sites and their results. SQLite (a file) is the embedded default, PostgreSQL the production
database; the schema is created and changed only by the Alembic migrations in `migrations/`.

Times are stored as naive UTC (`UtcDateTime`): SQLite has no time zones, and one convention for both
databases keeps comparisons in SQL (`deadline <= now`) correct on either.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AuditRow",
    "Base",
    "Clock",
    "LoginAttemptRow",
    "OutboxRow",
    "PasswordResetRow",
    "QueryRequest",
    "QueryRow",
    "SavedQueryRow",
    "SiteRow",
    "TaskRow",
    "UserRoleRow",
    "UserRow",
    "UtcDateTime",
    "WebSessionRow",
    "create_hub_engine",
    "migrate",
    "reading",
    "utcnow",
]

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6875622D6D696772  # any fixed number; PostgreSQL advisory locks are named by numbers


class UtcDateTime(sa.types.TypeDecorator):
    """An aware UTC datetime in Python, a naive UTC timestamp in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    pass


class SiteRow(Base):
    """A site (hospital) the hub sends tasks to; its credential is kept only as a hash."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    credential_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    agent_version: Mapped[str | None] = mapped_column(sa.String(100))
    generation: Mapped[int | None] = mapped_column(sa.BigInteger)


class UserRow(Base):
    """A person with an account: registered in the portal (password or single sign-on) or created by an
    administrator. Only hashes of the password and the API token are kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    institution: Mapped[str] = mapped_column(sa.String(200), default="")
    # pending (registered, waiting for the coordination office), approved, rejected or disabled
    status: Mapped[str] = mapped_column(sa.String(20), default="approved")
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    token_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    token_expires: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    oidc_subject: Mapped[str | None] = mapped_column(sa.String(300), unique=True)
    # None: follow the browser's Accept-Language
    language: Mapped[str | None] = mapped_column(sa.String(5))
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class UserRoleRow(Base):
    """A role a user holds; a site administrator's role names the one site it is for."""

    __tablename__ = "user_roles"
    __table_args__ = (sa.UniqueConstraint("user_id", "role", "site_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(20))
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"))


class WebSessionRow(Base):
    """A signed-in browser; the cookie holds a random token, the database only its hash."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class PasswordResetRow(Base):
    """A one-time link to set a new password; only the hash of its token is kept."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    used: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class LoginAttemptRow(Base):
    """Failed sign-ins, counted per e-mail address and per client address to slow down guessing."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        sa.Index("ix_login_attempts_email_at", "email", "at"),
        sa.Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    email: Mapped[str] = mapped_column(sa.String(320))
    ip: Mapped[str] = mapped_column(sa.String(64))


class AuditRow(Base):
    """One security-relevant action: who did what to whom, when, from where."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_at", "at"), sa.Index("ix_audit_log_action_at", "action", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(sa.String(320))  # the e-mail at the time, kept if the user goes
    action: Mapped[str] = mapped_column(sa.String(50))
    target: Mapped[str] = mapped_column(sa.String(320), default="")
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    ip: Mapped[str] = mapped_column(sa.String(64), default="")


class OutboxRow(Base):
    """A message to a person (password reset, approval): kept here, sent by SMTP where configured."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    recipient: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    sent: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(sa.Text)


class SavedQueryRow(Base):
    """A researcher's named feasibility query, to re-run, duplicate and export."""

    __tablename__ = "saved_queries"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # As the researcher built it, display texts included, so that an export reads like the portal's.
    query: Mapped[dict] = mapped_column(sa.JSON)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_query_id: Mapped[str | None] = mapped_column(sa.ForeignKey("queries.id"))


class QueryRow(Base):
    """A question to a set of sites. `version` grows with every change a reader could see."""

    __tablename__ = "queries"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), index=True)
    # The canonical structured query, as sent to the sites: no display texts, so equal questions
    # look equal (and sites derive equal noise from them).
    query: Mapped[dict] = mapped_column(sa.JSON)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(default=1)
    # A distinct-person count: its id at the linkage unit, and what the unit released (once read)
    linkage_count_id: Mapped[str | None] = mapped_column(sa.String(64))
    distinct_count: Mapped[dict | None] = mapped_column(sa.JSON)


class QueryRequest(Base):
    """One submission by a user: the audit trail, what a user may read, and the base of quotas."""

    __tablename__ = "query_requests"
    __table_args__ = (sa.Index("ix_query_requests_user_created", "user_id", "created"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    query_id: Mapped[str] = mapped_column(sa.ForeignKey("queries.id"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reused: Mapped[bool]


class TaskRow(Base):
    """What one site is asked for one query, and its answer; only obfuscated counts have a column."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.UniqueConstraint("query_id", "site_id"),
        sa.Index("ix_tasks_site_state", "site_id", "state"),
        sa.Index("ix_tasks_state_deadline", "state", "deadline"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    query_id: Mapped[str] = mapped_column(sa.ForeignKey("queries.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    state: Mapped[str] = mapped_column(sa.String(20))
    deadline: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    obfuscated: Mapped[int | None] = mapped_column(sa.BigInteger)
    below_threshold: Mapped[bool | None]
    reason: Mapped[str | None] = mapped_column(sa.Text)
    linkage: Mapped[str | None] = mapped_column(sa.Text)  # see protocol TaskResult.linkage


_READING: contextvars.ContextVar[bool] = contextvars.ContextVar("reading", default=False)


@contextlib.contextmanager
def reading() -> Iterator[None]:
    """Transactions begun inside only read. On SQLite they begin deferred and may not write, so that
    readers run beside each other and beside the one writer (WAL) instead of queueing for the write lock;
    a write attempted inside fails ("attempt to write a readonly database") rather than racing for the
    lock. On PostgreSQL nothing changes: its readers never wait for writers."""
    token = _READING.set(True)
    try:
        yield
    finally:
        _READING.reset(token)


def _sqlite_setup(engine: sa.Engine, path: str | None) -> None:
    """Make SQLite safe for the hub's thread pool: WAL, foreign keys, and write locks taken up front.

    pysqlite's own transaction handling begins lazily and upgrades a read lock to a write lock later,
    which fails at once ("database is locked") when two threads do so together; `BEGIN IMMEDIATE` makes
    the second wait (busy timeout) instead. Inside `reading()` a transaction cannot write, so it begins
    deferred: it takes no lock, and in WAL mode it never waits for one.
    """
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=10000")  # first: switching to WAL may have to wait, too
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode, NORMAL loses no committed transaction when the process dies, only (possibly the
        # last ones) when the machine does; FULL would make every request wait for the disk.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        read_only = _READING.get()
        # The pragma outlives the transaction, so it is set only when it changes (connection.info is the
        # pooled connection's own).
        if connection.info.get("query_only", False) != read_only:
            connection.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
            connection.info["query_only"] = read_only
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


# Idle this long, a pooled connection is pinged before use (the server may have restarted meanwhile). A
# connection used moments ago is not: a ping per transaction (SQLAlchemy's pool_pre_ping) was a third of
# the hub's database time on PostgreSQL. Should the server restart while connections are busy, the requests
# that meet a dead one fail with 503 and are retried, and the pool drops the dead ones.
PING_AFTER_IDLE_SECONDS = 10.0


def _ping_idle_connections(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error:
            raise sa.exc.DisconnectionError("the database closed an idle connection") from None


def create_hub_engine(url: str) -> sa.Engine:
    """An engine for the hub's database; `postgresql://` is taken to mean the psycopg 3 driver."""
    parsed = sa.make_url(url)
    # hide_parameters: a database error in a log must not carry the values of a request.
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("the hub needs an SQLite file, not an in-memory database")
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False}, hide_parameters=True)
        _sqlite_setup(engine, parsed.database)
        return engine
    # As many pooled connections as the hub runs database calls at once (the thread pool's 40 threads): a
    # smaller pool opened and closed an extra connection for most calls in a burst of requests, and a new
    # PostgreSQL connection costs the server more than the transaction it serves.
    engine = sa.create_engine(parsed, hide_parameters=True, pool_size=40, max_overflow=10)
    _ping_idle_connections(engine)
    return engine


def migrate(engine: sa.Engine) -> str:
    """Bring the schema to the newest migration; returns that revision."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database:
        return _upgrade(engine)
    # Several `datenraum hub` commands may start on a new SQLite file at once. Its first connection
    # switches the file to WAL, which SQLite may refuse at once ("database is locked") instead of
    # waiting; a lock file beside the database makes the commands take turns.
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        return _upgrade(engine)


def _upgrade(engine: sa.Engine) -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # One command migrates; the others wait here and then find nothing left to do.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        return str(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())


Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """The hub's clock; tests pass their own `Clock` to the services to move time on."""
    return dt.datetime.now(dt.UTC)
