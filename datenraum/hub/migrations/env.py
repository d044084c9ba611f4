"""Alembic environment for the hub's schema.

`datenraum hub migrate` (and `serve`) hand Alembic an open connection in `config.attributes`. Developers
writing a new migration run Alembic directly, against a scratch database:
`alembic -c datenraum/hub/migrations/alembic.ini revision --autogenerate -m "what changes"`.
"""

from __future__ import annotations

from alembic import context

import datenraum.hub.analysis.tables

# Models outside db.py join Base.metadata when their module is imported; autogenerate (and the test that
# compares the migrated schema with the models) must see every table the migrations create.
import datenraum.hub.catalogue.tables
import datenraum.hub.dashboard.tables
import datenraum.hub.delivery.tables
import datenraum.hub.directory.tables
import datenraum.hub.proposals.tables
import datenraum.hub.samples.tables
import datenraum.hub.studies.tables  # noqa: F401
from datenraum.hub.db import Base, create_hub_engine


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite can alter tables only by copying them; batch mode does that where needed.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the hub's migrations run online only: use `datenraum hub migrate`")

connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_hub_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as own_connection:
        _run(own_connection)
    engine.dispose()
