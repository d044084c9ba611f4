"""The site EDC as one object: its database, the definitions, and the operations the pages call.

`Edc.open(config)` builds it from the settings (`[site]`, `[hub]`, `[pseudonyms]`); tests build it with
their own hub (`StudyHub`) and consent gate. Every operation takes the acting `Staff`, whose role comes
from the study's roster (`staff`); the operations check the role themselves (`permissions.py`), so a page
that forgot a check still cannot let a monitor edit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datenraum.protocol.studies import FormVersion, StudyDefinition
from datenraum.site.store import Store
from datenraum.site.studies.accounts import Account, Accounts
from datenraum.site.studies.config import EdcConfig
from datenraum.site.studies.consent import StoreConsentGate
from datenraum.site.studies.database import EdcDatabase
from datenraum.site.studies.definitions import Definitions
from datenraum.site.studies.enrolment import ConsentGate, Enrolments, pseudonym_system
from datenraum.site.studies.entry import DataEntry
from datenraum.site.studies.hub import HubClient, HubUnavailable, StudyHub
from datenraum.site.studies.quality import findings_on_save
from datenraum.site.studies.queries import FieldQueries
from datenraum.site.studies.records import Participant, Records
from datenraum.site.studies.staff import Staff
from datenraum.site.studies.study_views import register_study_views
from datenraum.site.studies.writeback import (
    StudySubject,
    observations_for,
    resource_id,
    write_resources,
)

__all__ = ["Edc", "read_site_secret"]

log = logging.getLogger("datenraum.site.studies")
# The canonical base of the studies' ResearchStudy resources at the hub (MII module Studie).
STUDY_URL = "urn:datenraum:study"


def read_site_secret(path: Path) -> bytes:
    """The site secret (64 hex characters, as `[extraction] key_file`), from which pseudonym keys derive."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the site key file {path}: {error}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: expected 64 hexadecimal characters (the site secret)") from None
    if len(secret) != 32:
        raise ValueError(f"{path}: expected 64 hexadecimal characters, got {len(text)}")
    return secret


@dataclass
class Edc:
    site: str
    database: EdcDatabase
    store: Store
    hub: StudyHub
    accounts: Accounts
    definitions: Definitions
    records: Records
    entry: DataEntry
    queries: FieldQueries
    enrolments: Enrolments
    clock: Callable[[], dt.datetime]

    @classmethod
    def build(
        cls,
        site: str,
        database: EdcDatabase,
        store: Store,
        hub: StudyHub,
        consent: ConsentGate,
        site_secret: bytes,
        session_hours: float = 8.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> Edc:
        register_study_views(store)  # idempotent: the same views again change nothing
        definitions = Definitions(database, site)
        records = Records(database)

        def store_write(
            form: FormVersion, participant: Participant, visit: str, instance: int, response: dict[str, Any]
        ) -> None:
            definition = definitions.get(participant.study_id)
            resources = study_resources(definition, site, form, participant, visit, instance, response)
            write_resources(store, resources)

        return cls(
            site=site,
            database=database,
            store=store,
            hub=hub,
            accounts=Accounts(database, session_hours),
            definitions=definitions,
            records=records,
            entry=DataEntry(database, findings_on_save, store_write),
            queries=FieldQueries(database),
            enrolments=Enrolments(database, store, hub, consent, site, site_secret, STUDY_URL),
            clock=clock,
        )

    @classmethod
    def open(cls, config: EdcConfig) -> Edc:
        store = Store(config.store)
        return cls.build(
            config.site,
            EdcDatabase(config.database),
            store,
            HubClient(config.hub_url, config.credential_file),
            StoreConsentGate(store, config.consent_policies),
            read_site_secret(config.key_file),
            config.session_hours,
        )

    def now(self) -> dt.datetime:
        return self.clock()

    def pull(self) -> list[str]:
        """Fetch the definitions from the hub and report enrolment of every study; the studies that changed."""
        changed = self.definitions.pull(self.hub, self.now())
        for definition in self.definitions.all():
            self.enrolments.report(definition, self.now())
        return changed

    def pull_quietly(self) -> str | None:
        """`pull`, with a hub that is away as a message (the EDC keeps working on the last definitions)."""
        try:
            self.pull()
        except HubUnavailable as error:
            log.warning("study definitions not refreshed: %s", error)
            return str(error)
        return None

    def staff(self, account: Account, study_id: str) -> Staff:
        definition = self.definitions.get(study_id)
        return Staff(account.email, account.name, study_id, Definitions.role_of(definition, account.email))

    def close(self) -> None:
        self.database.close()


def study_resources(
    definition: StudyDefinition,
    site: str,
    form: FormVersion,
    participant: Participant,
    visit: str,
    instance: int,
    response: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The completed response as the store keeps it, and its observationExtract Observations."""
    subject = StudySubject(
        definition.study_id, pseudonym_system(definition, site), participant.pseudonym, participant.patient_id
    )
    key = f"{participant.pseudonym}/{visit}/{form.url}/{instance}"
    resource = {
        **response,
        "id": resource_id("QuestionnaireResponse", definition.study_id, key),
        "identifier": {"system": f"{STUDY_URL}:{definition.study_id}:form-instance", "value": key},
        "subject": subject.reference(),
    }
    return [resource, *observations_for(form.questionnaire, resource, subject)]
