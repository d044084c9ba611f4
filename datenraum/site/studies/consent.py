"""The consent check at enrolment: the patient's Consents in the site store, decided by the one rule.

The rule is `datenraum.studies.consent.is_consented` (the same extraction's gate and feasibility's
consent criterion follow); this module only reads the patient's Consent resources from the store's
`resource` table and asks it for every policy enrolment needs. By default those are the MII broad
consent's "MDAT erheben" (.6: the study collects data) and "MDAT wissenschaftlich nutzen" (.8: the study
data are joined with routine data for research); a site sets others with `[consent] policies`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import orjson

from datenraum.site.store import RAW_TABLE, Store
from datenraum.studies.consent import (
    POLICY_SYSTEM,
    ConsentDecision,
    ConsentRecord,
    is_consented,
    records_from_consent,
)

__all__ = ["ENROLMENT_POLICIES", "StoreConsentGate"]

_OID = POLICY_SYSTEM.removeprefix("urn:oid:")
ENROLMENT_POLICIES: tuple[str, ...] = (f"{_OID}.6", f"{_OID}.8")


class StoreConsentGate:
    def __init__(self, store: Store, policies: Sequence[str] = ENROLMENT_POLICIES) -> None:
        if not policies:
            raise ValueError("enrolment needs at least one consent policy")
        self._store = store
        self._policies = tuple(policies)

    def records(self, patient_id: str) -> list[ConsentRecord]:
        with self._store.snapshot() as snapshot:
            if RAW_TABLE not in snapshot.tables():
                return []
            rows = snapshot.connection.execute(
                f"SELECT json FROM {RAW_TABLE} WHERE resource_type = 'Consent' AND patient_id = ?",
                [patient_id],
            ).fetchall()
        records: list[ConsentRecord] = []
        for (text,) in rows:
            records.extend(records_from_consent(orjson.loads(text), patient_id))
        return records

    def decide(self, patient_id: str, day: dt.date) -> ConsentDecision:
        """Consented iff every policy is; otherwise the first policy that is not, and why."""
        records = self.records(patient_id)
        decisions = [is_consented(records, patient_id, policy, day) for policy in self._policies]
        for policy, decision in zip(self._policies, decisions, strict=True):
            if not decision.consented:
                return ConsentDecision(False, f"policy {policy}: {decision.reason}", decision.record)
        # The ResearchSubject names one Consent: the one that decided the last policy.
        return ConsentDecision(True, "; ".join(d.reason for d in decisions), decisions[-1].record)
