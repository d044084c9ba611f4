"""The study definitions this site takes part in, as last pulled from the hub, and the roles they give.

The EDC keeps the last definitions it pulled, so that data entry goes on while the hub is away; a pull
replaces a study's definition only by a newer `definition_version` (a late answer of an older pull never
undoes a newer one). A person's role in a study is the role of their e-mail address on that study's roster
for this site; a person on no roster sees no study.
"""

from __future__ import annotations

import datetime as dt

import orjson

from datenraum.protocol.studies import SITE_ROLES, StudyDefinition, StudyRole
from datenraum.site.studies.accounts import normal_email
from datenraum.site.studies.database import EdcDatabase
from datenraum.site.studies.hub import StudyHub

__all__ = ["Definitions", "UnknownStudy"]


class UnknownStudy(LookupError):
    """No study of that id at this site (or none the person may see)."""


class Definitions:
    def __init__(self, database: EdcDatabase, site: str) -> None:
        self._db = database
        self.site = site

    def pull(self, hub: StudyHub, now: dt.datetime) -> list[str]:
        """Fetch this site's definitions; the ids of the studies that changed."""
        changed = []
        for definition in hub.definitions():
            if definition.site != self.site:
                continue  # a hub that sends another site's roster is not to be believed about roles here
            with self._db.transaction() as db:
                row = db.execute(
                    "SELECT version FROM definition WHERE study_id = ?", (definition.study_id,)
                ).fetchone()
                if row is not None and row["version"] >= definition.definition_version:
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO definition VALUES (?, ?, ?, ?)",
                    (
                        definition.study_id,
                        definition.definition_version,
                        orjson.dumps(definition.to_json()).decode(),
                        now.isoformat(),
                    ),
                )
            changed.append(definition.study_id)
        return changed

    def all(self) -> list[StudyDefinition]:
        rows = self._db.rows("SELECT body FROM definition ORDER BY study_id")
        return [StudyDefinition.from_json(orjson.loads(row["body"])) for row in rows]

    def get(self, study_id: str) -> StudyDefinition:
        rows = self._db.rows("SELECT body FROM definition WHERE study_id = ?", (study_id,))
        if not rows:
            raise UnknownStudy(f"no study {study_id!r} at this site")
        return StudyDefinition.from_json(orjson.loads(rows[0]["body"]))

    @staticmethod
    def role_of(definition: StudyDefinition, email: str) -> StudyRole | None:
        """The person's site role in the study, or None (not on the roster, or a study-wide role)."""
        email = normal_email(email)
        roles = [m.role for m in definition.roster if m.email == email and m.role in SITE_ROLES]
        # Several entries for one person: the one that may do most (investigator > data entry > monitor).
        for role in (StudyRole.SITE_INVESTIGATOR, StudyRole.DATA_ENTRY, StudyRole.MONITOR):
            if role in roles:
                return role
        return None

    def visible_to(self, email: str) -> list[tuple[StudyDefinition, StudyRole]]:
        """The studies the person has a site role in, with that role."""
        result = []
        for definition in self.all():
            role = self.role_of(definition, email)
            if role is not None:
                result.append((definition, role))
        return result
