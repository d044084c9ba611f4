"""The linkage unit's errors, one tree; the HTTP layer maps each kind to its status."""

from __future__ import annotations


class LinkUnitError(Exception):
    """Any refusal of the linkage unit; the message names what and where."""

    status = 400


class InvalidInput(LinkUnitError):
    status = 400


class ConfigError(LinkUnitError):
    status = 500


class NotAuthenticated(LinkUnitError):
    status = 401


class Forbidden(LinkUnitError):
    status = 403


class NotFound(LinkUnitError):
    status = 404


class NotReady(LinkUnitError):
    status = 409


class AlreadyReleased(LinkUnitError):
    status = 409


class QuotaExceeded(LinkUnitError):
    status = 429
