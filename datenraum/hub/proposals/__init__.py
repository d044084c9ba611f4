"""Use & Access: from a project proposal to approved, site-by-site data use.

- `workflow`: the state machine, as a table and one pure function (`decide`)
- `values`: what a proposal is (`Draft`, `Proposal`, `Event`, ...), with no database; `checks`: what a
  draft's values must be before they are stored
- `tables`: the database models; `service`: proposals, votes, site decisions, comments, documents,
  publications, notifications, dashboards (`Proposals`)
- `uploads`: checking and storing uploaded documents; `export`: a proposal and its history as JSON and PDF
"""
