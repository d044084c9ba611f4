"""Accounts: sites, users, secrets, passwords, single sign-on, audit log, mail outbox."""
