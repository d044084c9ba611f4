"""The linkage unit: a service of its own (not the hub's process, database or keys) that links CLKs.

Sites send it CLKs, never identities; it never holds the secret the CLKs were encoded with, so it cannot
encode a guess. It returns only what the protocol allows: to a site, that site's own link table (its
pseudonyms with the project's link ids); to the hub, the number of distinct persons of a federated
cohort, passed through the shared disclosure rules (`datenraum.privacy.counts`).

`errors` is the one error tree; `config` reads the unit's configuration (projects, who may call);
`store` keeps deliveries in its own SQLite file, each replaced in one transaction; `service` links,
builds link tables and releases counts; `app` is the HTTP API.
"""
