"""The study messages between hub and site: every message survives its JSON form, and a malformed one is
refused with the field named."""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import pytest

from datenraum.protocol.messages import ProtocolError
from datenraum.protocol.studies import (
    Allocation,
    AllocationRequest,
    EnrolmentReport,
    RecruitmentStatus,
    StudyDefinition,
    allocations_path,
    enrolment_path,
)

FORM_URL = "https://example.org/fhir/Questionnaire/baseline"


def _questionnaire(version: str) -> dict[str, Any]:
    return {
        "resourceType": "Questionnaire",
        "url": FORM_URL,
        "version": version,
        "status": "active",
        "item": [{"linkId": "age", "text": "Age", "type": "integer"}],
    }


def _definition() -> dict[str, Any]:
    return {
        "study_id": "covid-cohort",
        "definition_version": 3,
        "site": "Klinikum A",
        "title": "COVID-19 cohort",
        "acronym": "CoCo",
        "registry_id": "DRKS00012345",
        "ethics_vote": "EK 123/20",
        "recruitment_status": "recruiting",
        "eligibility": None,
        "arms": [
            {
                "code": "A",
                "name": "Standard care",
                "visits": [
                    {
                        "code": "baseline",
                        "name": "Baseline",
                        "day_offset": 0,
                        "window_before": 0,
                        "window_after": 3,
                        "forms": [{"url": FORM_URL, "repeating": False}],
                    }
                ],
            },
            {"code": "B", "name": "Intervention", "visits": []},
        ],
        "forms": [
            {"url": FORM_URL, "version": "1", "questionnaire": _questionnaire("1")},
            {"url": FORM_URL, "version": "2", "questionnaire": _questionnaire("2")},
        ],
        "randomised": True,
        "factors": [{"name": "sex", "levels": ["female", "male"]}],
        "roster": [{"email": "ines@klinikum-a.de", "role": "site-investigator"}],
    }


def test_a_study_definition_survives_its_json_form() -> None:
    definition = StudyDefinition.from_json(_definition())

    assert StudyDefinition.from_json(definition.to_json()) == definition
    assert definition.recruitment_status is RecruitmentStatus.RECRUITING
    assert definition.current_form(FORM_URL).version == "2"
    assert definition.form(f"{FORM_URL}|1").questionnaire["version"] == "1"


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(_definition())
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["recruitment_status"], "open", "study.recruitment_status"),
        (["arms", 0, "visits", 0, "code"], "bad code!", "study.arms[0].visits[0].code"),
        (["arms", 1, "code"], "A", "study.arms[1]: duplicate arm code 'A'"),
        (["arms", 0, "visits", 0, "day_offset"], "0", "study.arms[0].visits[0].day_offset"),
        (
            ["forms", 1],
            {"url": FORM_URL, "version": "1", "questionnaire": _questionnaire("1")},
            "study.forms[1]: duplicate form version",
        ),
        (["forms", 0, "questionnaire", "version"], "9", "study.forms[0].questionnaire"),
        (
            ["forms", 0, "questionnaire", "resourceType"],
            "Patient",
            "study.forms[0].questionnaire.resourceType",
        ),
        (["arms", 0, "visits", 0, "forms", 0, "url"], "urn:unknown", "forms[0].url: no published version"),
        (["roster", 0, "role"], "admin", "study.roster[0].role"),
        (["roster", 0, "email"], "Ines@Klinikum-A.de", "study.roster[0].email"),
        (["factors"], [{"name": f"f{i}", "levels": ["a", "b"]} for i in range(4)], "study.factors"),
        (["arms"], [], "study.arms"),
        (["title"], "x" * 501, "study.title"),
        (["title"], "nul\x00byte", "study.title"),
        (["arms"], [{"code": "A", "name": "A", "visits": []}] * 501, "study.arms"),
    ],
)
def test_a_malformed_study_definition_is_refused_naming_the_field(
    path: list[Any], value: Any, named: str
) -> None:
    with pytest.raises(ProtocolError, match=re.escape(named)):
        StudyDefinition.from_json(_broken(path, value))


def test_an_allocation_request_sorts_its_factors_and_survives_its_json_form() -> None:
    request = AllocationRequest.from_json(
        {
            "study_id": "covid-cohort",
            "site": "Klinikum A",
            "participant": "P-0001",
            "factors": {"sex": "male", "age": "old"},
        }
    )

    assert request.factors == (("age", "old"), ("sex", "male"))
    assert AllocationRequest.from_json(request.to_json()) == request


@pytest.mark.parametrize(
    ("factors", "named"),
    [
        ({"a": "1", "b": "1", "c": "1", "d": "1"}, "at most 3"),
        ({"sex": 1}, "allocation_request.factors.sex"),
        ([], "allocation_request.factors: expected an object"),
    ],
)
def test_a_malformed_allocation_request_is_refused_naming_the_field(factors: Any, named: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(named)):
        AllocationRequest.from_json(
            {"study_id": "covid-cohort", "site": "Klinikum A", "participant": "P-0001", "factors": factors}
        )


def test_an_allocation_and_an_enrolment_report_survive_their_json_form() -> None:
    moment = dt.datetime(2026, 12, 4, 23, 0, tzinfo=dt.UTC)
    allocation = Allocation("covid-cohort", "P-0001", "B", "alloc-1", moment)
    report = EnrolmentReport("covid-cohort", "Klinikum A", (("A", 4), ("B", 3)), moment)

    assert Allocation.from_json(allocation.to_json()) == allocation
    assert EnrolmentReport.from_json(report.to_json()) == report


def test_an_enrolment_report_without_time_zone_or_with_a_negative_count_is_refused() -> None:
    body = {"study_id": "s", "site": "Klinikum A", "enrolled": {"A": 1}, "reported_at": "2026-12-04T23:00:00"}
    with pytest.raises(ProtocolError, match=r"enrolment\.reported_at: expected a date-time with a time zone"):
        EnrolmentReport.from_json(body)
    with pytest.raises(ProtocolError, match=r"enrolment\.enrolled\.A"):
        EnrolmentReport.from_json({**body, "reported_at": "2026-12-04T23:00:00+00:00", "enrolled": {"A": -1}})


def test_the_site_routes_hang_under_the_site_api() -> None:
    assert allocations_path("s1") == "/api/site/v1/studies/s1/allocations"
    assert enrolment_path("s1") == "/api/site/v1/studies/s1/enrolment"
