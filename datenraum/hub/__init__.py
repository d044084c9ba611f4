"""The hub: portal, HTTP API, accounts, task distribution and aggregation (coming with the federation issue).

The hub never imports `datenraum.site`: it talks to sites only through `datenraum.protocol` messages,
and shares the query model (`datenraum.query`) and privacy rules (`datenraum.privacy`) with them.
"""
