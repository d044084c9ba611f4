"""The demo's multicentre study HERZ-AKTIV (`demo_study`): set up at the hub, collected in two site EDCs.

At the hub, through the study API as a real study lead and statistician would: the study, its two sites,
its forms and arms, the study team (per site an investigator and a data entry person, a monitor at
both), the statistician's randomisation scheme, and recruitment opened. At each of the two sites: the
EDC's configuration and key, local accounts for the site's team, and a few of the site's consented
patients enrolled (pseudonym, consent, allocation by the hub) with their baseline visit entered and
completed, so that the EDC opens on a study that has data. `datenraum demo` then serves each site's EDC
(`datenraum studies serve`) beside its agent.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from datenraum.devtools.demo_study import ARMS, BASELINE, FACTORS, FORMS, STUDY, VITALS
from datenraum.protocol.studies import StudyRole
from datenraum.site.store import RAW_TABLE, Store
from datenraum.site.studies.config import load_edc_config
from datenraum.site.studies.enrolment import EnrolmentRefused
from datenraum.site.studies.records import FormStatus
from datenraum.site.studies.service import Edc
from datenraum.site.studies.staff import Staff

__all__ = [
    "DEMO_EDC_PASSWORD",
    "DEMO_STATISTICIAN",
    "DemoStudyError",
    "EdcSite",
    "prepare_edc",
    "seed_study",
    "site_team",
]

DEMO_STATISTICIAN = "statistik@demo.example"
DEMO_MONITOR = "monitoring@demo.example"
DEMO_EDC_PASSWORD = "demo-studienteam"  # every demo EDC account's (demo only: 16 characters, one for all)
PARTICIPANTS_PER_SITE = 3
_STUDIES = "/api/v1/studies"


class DemoStudyError(RuntimeError):
    """The hub refused a step of the study's set-up; the text names the step and the hub's answer."""


@dataclass(frozen=True)
class EdcSite:
    name: str
    config: Path
    team: dict[str, StudyRole]  # account e-mail -> role at this site


def site_team(site: str) -> dict[str, StudyRole]:
    return {
        f"pi@{site}.demo.example": StudyRole.SITE_INVESTIGATOR,
        f"dokumentation@{site}.demo.example": StudyRole.DATA_ENTRY,
        DEMO_MONITOR: StudyRole.MONITOR,
    }


def _call(client: httpx.Client, method: str, path: str, token: str, body: Any, expected: int) -> None:
    answer = client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != expected:
        raise DemoStudyError(f"{method} {path}: the hub answered {answer.status_code}: {answer.text[:300]}")


def seed_study(hub_url: str, lead_token: str, statistician_token: str, sites: list[str]) -> None:
    """Set HERZ-AKTIV up at the hub and open recruitment (the lead; the scheme by the statistician)."""
    code = STUDY["study_id"]
    base = f"{_STUDIES}/{code}"
    set_up = {"code": code, **{k: STUDY[k] for k in ("title", "acronym", "registry_id", "ethics_vote")}}
    with httpx.Client(base_url=hub_url, timeout=30) as client:
        _call(client, "POST", _STUDIES, lead_token, set_up, 201)
        _call(client, "PUT", f"{base}/sites", lead_token, {"sites": sites}, 204)
        for form in FORMS:
            questionnaire = {k: v for k, v in form.items() if k != "version"}  # the hub numbers versions
            _call(client, "POST", f"{base}/forms", lead_token, {"questionnaire": questionnaire}, 201)
        _call(client, "PUT", f"{base}/arms", lead_token, {"arms": list(ARMS)}, 204)
        grants = [(DEMO_STATISTICIAN, StudyRole.STATISTICIAN, None)]
        for site in sites:
            grants += [
                (email, role, site)
                for email, role in site_team(site).items()
                if role is not StudyRole.MONITOR
            ]
            grants.append((DEMO_MONITOR, StudyRole.MONITOR, site))
        for email, role, site in grants:
            body = {"email": email, "role": role.value, "site": site}
            _call(client, "POST", f"{base}/roles", lead_token, body, 204)
        scheme = {"block_sizes": [2, 4], "factors": list(FACTORS), "seed": secrets.token_hex(32)}
        _call(client, "PUT", f"{base}/randomisation", statistician_token, scheme, 200)
        reason = {"status": "recruiting", "reason": "Ethikvotum liegt vor (Demo)"}
        _call(client, "POST", f"{base}/status", lead_token, reason, 204)


def _write_config(folder: Path, site: str, store: Path, hub_url: str, credential: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "site.key"
    if not key.exists():  # kept across runs: the same patient keeps the same pseudonym
        key.write_text(secrets.token_hex(32) + "\n", encoding="ascii")
        key.chmod(0o600)
    # The EDC's working data start afresh with the hub's (a new hub each run: its study, allocations and
    # definition versions are new); the store's study resources keep their ids and are replaced.
    for name in ("edc.sqlite", "edc.sqlite-wal", "edc.sqlite-shm"):
        (folder / name).unlink(missing_ok=True)
    config = folder / "site.toml"
    config.write_text(
        f'[site]\nname = "{site}"\nstore = "{store}"\ndatabase = "{folder / "edc.sqlite"}"\n\n'
        f'[hub]\nurl = "{hub_url}"\ncredential_file = "{credential}"\n\n'
        f'[pseudonyms]\nkey_file = "{key}"\n\n[web]\nsecure_cookies = false\n',
        encoding="utf-8",
    )
    return config


def _patients(store: Store, limit: int) -> list[tuple[str, str]]:
    """(patient id, sex) of the store's first patients with a sex the study stratifies by."""
    with store.snapshot() as snapshot:
        rows = snapshot.connection.execute(
            f"SELECT patient_id, json FROM {RAW_TABLE} WHERE resource_type = 'Patient' ORDER BY patient_id "
            "LIMIT ?",
            [limit],
        ).fetchall()
    found = []
    for patient_id, text in rows:
        sex = orjson.loads(text).get("gender")
        if sex in ("female", "male"):
            found.append((patient_id, sex))
    return found


def _baseline(sex: str, number: int) -> dict[str, Any]:
    height, weight = 160 + 4 * number + (10 if sex == "male" else 0), 62 + 5 * number
    items: list[dict[str, Any]] = [
        {
            "linkId": "geschlecht",
            "answer": [{"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": sex}}],
        },
        {"linkId": "groesse", "answer": [{"valueDecimal": height}]},
        {"linkId": "gewicht", "answer": [{"valueDecimal": weight}]},
        {"linkId": "bmi", "answer": [{"valueDecimal": round(weight / (height / 100) ** 2, 1)}]},
        {"linkId": "raucher", "answer": [{"valueBoolean": number % 2 == 0}]},
    ]
    if number % 2 == 0:
        items.append({"linkId": "packungsjahre", "answer": [{"valueInteger": 10 + number}]})
    return {"resourceType": "QuestionnaireResponse", "item": items}


def _vitals(number: int) -> dict[str, Any]:
    items = [
        {"linkId": "herzfrequenz", "answer": [{"valueInteger": 64 + 3 * number}]},
        {"linkId": "systolisch", "answer": [{"valueInteger": 124 + 4 * number}]},
    ]
    return {"resourceType": "QuestionnaireResponse", "item": items}


def prepare_edc(
    workdir: Path,
    site: str,
    store: Path,
    hub_url: str,
    credential: Path,
    say: Callable[[str], None] = print,
) -> EdcSite:
    """The site's EDC configured, its team's accounts, and participants enrolled with a visit entered."""
    config_path = _write_config(workdir / "edc" / site, site, store, hub_url, credential)
    edc = Edc.open(load_edc_config(config_path))
    now = edc.now()
    try:
        team = site_team(site)
        for email, role in team.items():
            edc.accounts.add(email, f"{role.value} {site}", DEMO_EDC_PASSWORD, now)
        edc.pull()
        definition = edc.definitions.get(STUDY["study_id"])
        entry = next(
            Staff(e, e, definition.study_id, r) for e, r in team.items() if r is StudyRole.DATA_ENTRY
        )
        enrolled = 0
        for patient_id, sex in _patients(edc.store, 200):
            if enrolled == PARTICIPANTS_PER_SITE:
                break
            try:
                participant = edc.enrolments.enrol(entry, definition, patient_id, {"geschlecht": sex}, now)
            except EnrolmentRefused:
                continue  # no (or withdrawn, expired) consent: the demo takes the next patient
            day = now + dt.timedelta(seconds=enrolled)
            edc.entry.save(
                entry, definition, participant, "baseline", BASELINE["url"], 1,
                _baseline(sex, enrolled), FormStatus.COMPLETE, None, day,
            )  # fmt: skip
            edc.entry.save(
                entry, definition, participant, "baseline", VITALS["url"], 1,
                _vitals(enrolled), FormStatus.COMPLETE, None, day,
            )  # fmt: skip
            enrolled += 1
        say(f"  {site}: {enrolled} participants of {definition.acronym} with their baseline visit entered")
    finally:
        edc.close()
    return EdcSite(site, config_path, team)
