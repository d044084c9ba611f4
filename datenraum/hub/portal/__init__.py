"""The research portal: the hub's web pages for people (accounts, the feasibility query builder, the
administration of accounts, sites and the audit log).

Pages are rendered on the server (Jinja2) and work without scripts where they are forms; the query
builder and live results are one script each (`static/`), which talk to the same JSON API as any other
client (`/api/v1`), signed in by the session cookie and a CSRF token instead of an API token.
"""
