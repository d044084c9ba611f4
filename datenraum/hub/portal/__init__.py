"""The research portal: the hub's web pages for people, for every context of the hub.

All pages live here, not in the contexts: they share one set of templates, texts (`texts.json`, `i18n`),
one session and CSRF layer (`web`) and one role matrix, and several pages show more than one context.

- `web`: sessions, CSRF, security headers, rendering, the signed-in user; `sso`: single sign-on routes
- `pages`: sign-in, registration, account, the query builder and saved queries, administration
- `proposals_pages`: Use & Access; `directory_pages`: the network directory; `analysis_pages`: the
  analysis workspace of a federated-analysis project (survival with a form, charts and tables)
  (the JSON APIs are beside their services: `feasibility/*_api`, `directory/api`)

Pages are rendered on the server (Jinja2) and work without scripts where they are forms; the query
builder and live results are one script each (`static/`), which talk to the same JSON API as any other
client (`/api/v1`), signed in by the session cookie and a CSRF token instead of an API token.
"""
