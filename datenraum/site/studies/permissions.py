"""Who of a site's study team may do what in the EDC: one table, read by every page and operation.

The roles are the roster's (`datenraum.protocol.studies.StudyRole`). At the site:

- data entry enrols participants, enters and corrects forms, sets their status and answers queries;
- the site investigator may do the same, and locks, unlocks and e-signs forms (the signature is theirs);
- the monitor reads everything of the site, opens and closes queries, but changes no data.

Study lead and statistician are study-wide roles at the hub: the site EDC shows them nothing (the
statistician's exports go through the delivery path).
"""

from __future__ import annotations

from enum import StrEnum

from datenraum.protocol.studies import StudyRole

__all__ = ["Action", "PermissionDenied", "allowed"]


class Action(StrEnum):
    READ = "read"
    ENROL = "enrol"
    ENTER = "enter"
    LOCK = "lock"
    SIGN = "sign"
    OPEN_QUERY = "open-query"
    ANSWER_QUERY = "answer-query"
    CLOSE_QUERY = "close-query"


class PermissionDenied(Exception):
    """The person's role does not allow the action; the text says which role and action."""


_DATA_ENTRY = frozenset({Action.READ, Action.ENROL, Action.ENTER, Action.ANSWER_QUERY})
_ALLOWED: dict[StudyRole, frozenset[Action]] = {
    StudyRole.DATA_ENTRY: _DATA_ENTRY,
    StudyRole.SITE_INVESTIGATOR: _DATA_ENTRY | {Action.LOCK, Action.SIGN},
    StudyRole.MONITOR: frozenset({Action.READ, Action.OPEN_QUERY, Action.CLOSE_QUERY}),
}


def allowed(role: StudyRole | None, action: Action) -> bool:
    return role is not None and action in _ALLOWED.get(role, frozenset())
