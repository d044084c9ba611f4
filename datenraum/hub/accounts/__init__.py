"""Accounts: who may talk to the hub, and what they did.

- `service`: sites with their credentials, users with their API tokens and roles (`Accounts`, `User`)
- `users`: portal accounts: registration, approval, sign-in, sessions, password resets (`Users`)
- `secrets`: secrets issued once and stored only as hashes; `passwords`: password rules and hashing
- `oidc`: single sign-on (OpenID Connect) as a relying party
- `audit`: the audit log (`record`, `search`, `AuditSource`); `outbox`: mail, sent after the transaction
"""
