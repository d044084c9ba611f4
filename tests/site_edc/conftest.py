"""The site EDC's test set-up: a site store with patients whose consents differ, the demo study as the
hub defines it, and a hub that answers the study routes in-process (`LocalStudyHub`: the hub's side of
`datenraum.protocol.studies`, with the real permuted-block randomisation), so that these tests need no
hub server (tests/hub/test_studies_site_edc.py runs the EDC's hub client against the real hub)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from datenraum.devtools.demo_study import definition_json
from datenraum.protocol.studies import Allocation, AllocationRequest, EnrolmentReport, StudyDefinition
from datenraum.site.ingest import ingest
from datenraum.site.store import Store
from datenraum.site.studies.consent import StoreConsentGate
from datenraum.site.studies.database import EdcDatabase
from datenraum.studies.consent import POLICY_SYSTEM
from datenraum.studies.randomisation import Arm, Factor, RandomisationScheme, Stratum, allocate

SITE = "uk-nord"
OTHER_SITE = "uk-sued"
NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
INVESTIGATOR = "pi@uk-nord.example"
DATA_ENTRY = "dokumentation@uk-nord.example"
MONITOR = "monitor@cro.example"
OTHER_SITE_INVESTIGATOR = "pi@uk-sued.example"
PASSWORD = "Studienpasswort-2026"
ROSTER = [
    {"email": INVESTIGATOR, "role": "site-investigator"},
    {"email": DATA_ENTRY, "role": "data-entry"},
    {"email": MONITOR, "role": "monitor"},
]
_OID = POLICY_SYSTEM.removeprefix("urn:oid:")


def _consent(cid: str, patient: str, kind: str, start: str, end: str, signed: str) -> dict:
    return {
        "resourceType": "Consent",
        "id": cid,
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": signed,
        "provision": {
            "type": "deny",
            "period": {"start": start, "end": end},
            "provision": [
                {
                    "type": kind,
                    "period": {"start": start, "end": end},
                    "code": [{"coding": [{"system": POLICY_SYSTEM, "code": f"{_OID}.{n}"}]}],
                }
                for n in (6, 7, 8, 9)
            ],
        },
    }


# Patients of the site and their consents: one each way enrolment may go.
PATIENTS = {
    "p-consented": [
        _consent("c-1", "p-consented", "permit", "2025-01-10", "2030-01-09", "2025-01-10T10:00:00Z")
    ],
    "p-consented-2": [
        _consent("c-2", "p-consented-2", "permit", "2025-06-01", "2030-05-31", "2025-06-01T08:00:00Z")
    ],
    "p-consented-3": [
        _consent("c-3", "p-consented-3", "permit", "2025-06-01", "2030-05-31", "2025-06-01T08:00:00Z")
    ],
    "p-declined": [_consent("c-4", "p-declined", "deny", "2025-02-01", "2030-01-31", "2025-02-01T09:00:00Z")],
    "p-expired": [_consent("c-5", "p-expired", "permit", "2019-01-01", "2024-01-01", "2019-01-01T09:00:00Z")],
    "p-withdrawn": [
        _consent("c-6", "p-withdrawn", "permit", "2025-01-01", "2030-01-01", "2025-01-01T09:00:00Z"),
        _consent("c-7", "p-withdrawn", "deny", "2025-09-01", "2030-01-01", "2025-09-01T09:00:00Z"),
    ],
    "p-no-consent": [],
}


def _routine(patient: str) -> list[dict]:
    """The patient's routine data: a diagnosis, so that study data can be joined to it."""
    return [
        {"resourceType": "Patient", "id": patient, "gender": "female", "birthDate": "1961-04-12"},
        {
            "resourceType": "Condition",
            "id": f"{patient}-mi",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": "I21.0"}]},
            "recordedDate": "2025-12-20",
        },
    ]


@pytest.fixture(scope="session")
def site_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("edc-site")
    lines = [r for patient, consents in PATIENTS.items() for r in (*_routine(patient), *consents)]
    data = folder / "routine.ndjson"
    data.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    report = ingest(folder / "store", [data], workers=1)
    assert not report.rejects, report.rejects
    return folder / "store"


@pytest.fixture
def site_store(site_store_template: Path, tmp_path: Path) -> Store:
    """A fresh copy of the site store per test (enrolment and saves write into it)."""
    import shutil

    shutil.copytree(site_store_template, tmp_path / "store", symlinks=True)
    return Store(tmp_path / "store")


def demo_definition(site: str = SITE, roster: list[dict] | None = None, version: int = 1) -> StudyDefinition:
    return StudyDefinition.from_json(definition_json(site, ROSTER if roster is None else roster, version))


@dataclass
class LocalStudyHub:
    """The hub's side of the study routes, in-process: definitions per site, allocations drawn with the
    real randomisation (one per participant, the same when asked again), enrolment reports kept."""

    definitions_by_site: dict[str, list[StudyDefinition]] = field(default_factory=dict)
    seed: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    allocations: dict[tuple[str, str], Allocation] = field(default_factory=dict)
    drawn: dict[tuple[str, Stratum], int] = field(default_factory=dict)  # per study and stratum
    reports: list[EnrolmentReport] = field(default_factory=list)
    site: str = SITE
    away: bool = False
    clock: Callable[[], dt.datetime] = lambda: NOW

    def definitions(self) -> list[StudyDefinition]:
        self._reachable()
        return list(self.definitions_by_site.get(self.site, []))

    def allocate(self, request: AllocationRequest) -> Allocation:
        self._reachable()
        key = (request.study_id, request.participant)
        if key not in self.allocations:
            definition = next(
                d for d in self.definitions_by_site[self.site] if d.study_id == request.study_id
            )
            scheme = RandomisationScheme(
                arms=tuple(Arm(arm.code) for arm in definition.arms),
                block_sizes=(4,),
                factors=tuple(Factor(f.name, f.levels) for f in definition.factors),
            )
            stratum = Stratum(request.site, request.factors)
            position = self.drawn.get((request.study_id, stratum), 0)
            self.drawn[(request.study_id, stratum)] = position + 1
            arm = allocate(scheme, self.seed, stratum, position)
            self.allocations[key] = Allocation(
                request.study_id, request.participant, arm, f"alloc-{len(self.allocations) + 1}", self.clock()
            )
        return self.allocations[key]

    def report_enrolment(self, report: EnrolmentReport) -> None:
        self._reachable()
        self.reports.append(report)

    def _reachable(self) -> None:
        from datenraum.site.studies.hub import HubUnavailable

        if self.away:
            raise HubUnavailable("the hub cannot be reached (ConnectError: test hub is away)")


@pytest.fixture
def study_hub() -> LocalStudyHub:
    return LocalStudyHub({SITE: [demo_definition(SITE)], OTHER_SITE: [demo_definition(OTHER_SITE)]})


@pytest.fixture
def edc_database() -> EdcDatabase:
    database = EdcDatabase(None)
    yield database
    database.close()


@pytest.fixture
def consent_gate(site_store: Store) -> StoreConsentGate:
    return StoreConsentGate(site_store)


SECRET = bytes(range(32))


@pytest.fixture
def edc(edc_database, site_store, study_hub, consent_gate):
    from datenraum.site.studies.service import Edc

    edc = Edc.build(SITE, edc_database, site_store, study_hub, consent_gate, SECRET, clock=lambda: NOW)
    edc.pull()
    return edc


def baseline_items(
    geschlecht: str = "male", groesse: float = 180, gewicht: float = 81, bmi: float | None = 25.0, **extra
) -> list[dict]:
    """The answers of the demo's baseline form (BMI 81 / 1.8² = 25.0)."""
    items = [
        {
            "linkId": "geschlecht",
            "answer": [
                {"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": geschlecht}}
            ],
        },
        {"linkId": "groesse", "answer": [{"valueDecimal": groesse}]},
        {"linkId": "gewicht", "answer": [{"valueDecimal": gewicht}]},
    ]
    if bmi is not None:
        items.append({"linkId": "bmi", "answer": [{"valueDecimal": bmi}]})
    for link_id, answer in extra.items():
        items.append({"linkId": link_id, "answer": [answer]})
    return items


def qr(items: list[dict]) -> dict:
    return {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": items}


STAFF_NAMES = {
    INVESTIGATOR: "Dr. Prüfärztin",
    DATA_ENTRY: "Studienassistenz",
    MONITOR: "Monitorin",
    OTHER_SITE_INVESTIGATOR: "Dr. Süd",
}


def add_accounts(edc) -> None:
    """A local account for each of the study's staff (and one for the other site's investigator)."""
    for email, name in STAFF_NAMES.items():
        edc.accounts.add(email, name, PASSWORD, NOW)


class Browser:
    """A signed-in person's HTTP session with the EDC app (TestClient): forms carry the CSRF token
    from the cookie, as the pages do; scripts send it in the X-CSRF-Token header."""

    def __init__(self, client, email: str) -> None:
        self.client = client
        client.get("/login")
        answer = self.post_form("/login", {"email": email, "password": PASSWORD})
        assert answer.status_code == 303, answer.text

    @property
    def csrf(self) -> str:
        return self.client.cookies.get("edc_csrf")

    def post_form(self, path: str, fields: dict[str, str]):
        return self.client.post(path, data={"csrf": self.csrf, **fields}, follow_redirects=False)

    def post_json(self, path: str, body: dict):
        return self.client.post(path, json=body, headers={"X-CSRF-Token": self.csrf})

    def get(self, path: str):
        return self.client.get(path, follow_redirects=False)


@pytest.fixture
def edc_app(edc):
    """The EDC's web app over `edc`, with the staff's accounts; `sign_in(email)` gives a Browser."""
    from fastapi.testclient import TestClient

    from datenraum.site.studies.app import create_app

    add_accounts(edc)
    app = create_app(edc, secure_cookies=False, refresh_seconds=None)
    clients = []

    def sign_in(email: str) -> Browser:
        client = TestClient(app)
        clients.append(client)
        return Browser(client, email)

    yield sign_in
    for client in clients:
        client.close()
