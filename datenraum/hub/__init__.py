"""The hub: HTTP API, accounts, task distribution and aggregation (federation issue; the portal comes later).

The hub never imports `datenraum.site`: it talks to sites only through `datenraum.protocol` messages,
and shares the query model (`datenraum.query`) and privacy rules (`datenraum.privacy`) with them.

- `config`: settings (`HubConfig`) from defaults, TOML and environment
- `db`: tables, engine, migrations (`migrations/`, Alembic)
- `auth`: secrets issued once and stored as hashes; `accounts`: sites and users
- `service`: queries, tasks, results, deadlines, privacy rules (`Federation`)
- `notify`: waking long-polls within the hub process
- `app`, `runtime`, `site_api`, `researcher_api`, `limits`: the FastAPI application
- `cli`: `datenraum hub serve|migrate|add-site|rotate-site|revoke-site|create-user`
"""
