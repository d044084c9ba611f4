"""The hub: the federation's centre. Sites fetch tasks and return counts; people use the portal and the API.

The hub never imports `datenraum.site`: it talks to sites only through `datenraum.protocol` messages,
and shares the query model (`datenraum.query`) and privacy rules (`datenraum.privacy`) with them.

Contexts, each a package around its service, with its values, tables and JSON API beside it where it has
them (the pages are in `portal/`):
- `feasibility/`: queries, the tasks they become and the sites' results (`Federation`), the site and
  researcher APIs, saved queries and the workspace, the concept search
- `accounts/`: sites and users (`Accounts`, `Users`), secrets, passwords, single sign-on, audit log, mail
- `proposals/`: Use & Access, from a project proposal to site-by-site approval (`Proposals`, `workflow`)
- `directory/`: the network directory of hospitals, infrastructures and projects (`Directory`), its JSON API
- `portal/`: the web pages for people, of every context (Jinja2 templates, texts, two scripts)

Shared by them:
- `errors`: the one error tree (`HubError` and its HTTP status); `roles`: `Role` and `Actor`
- `text`: the one check of the free text people write (`clean_text`)
- `config`: settings (`HubConfig`) from defaults, TOML and environment
- `db`: tables, engine, migrations (`migrations/`, Alembic)
- `app`, `runtime`, `limits`: the FastAPI application, its services, request limits and `MAX_COUNT`
- `cli`: `datenraum hub serve|migrate|add-site|rotate-site|revoke-site|create-user|seed-directory`
"""
