"""The site EDC's hub client (`datenraum.site.studies.hub.HubClient`) against the real hub's study routes:
the definitions of its site with its roster, one allocation per participant, enrolment reports, and a
rejected credential named as such."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from datenraum.protocol.studies import AllocationRequest, EnrolmentReport, StudyRole
from datenraum.site.studies.hub import HubClient, HubUnavailable

from .helpers import HubFixture, serving
from .studies_helpers import PEOPLE, StudyWorld, set_up_study, study_world

pytestmark = pytest.mark.anyio


async def test_the_edc_pulls_its_sites_study_asks_allocations_and_reports_enrolment(
    hub: HubFixture, tmp_path: Path
) -> None:
    world: StudyWorld = study_world(hub)
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
    credential = tmp_path / "uk-a.credential"
    credential.write_text(world.sites["uk-a"] + "\n")
    with TestClient(hub.app()) as http:
        edc_hub = HubClient("http://hub", credential, transport=http._transport)
        (study,) = edc_hub.definitions()
        assert (study.study_id, study.site) == (world.code, "uk-a")
        assert {
            (m.email, m.role)
            for m in study.roster
            if m.role in (StudyRole.SITE_INVESTIGATOR, StudyRole.DATA_ENTRY)
        } == {
            (PEOPLE["investigator"], StudyRole.SITE_INVESTIGATOR),
            (PEOPLE["data entry"], StudyRole.DATA_ENTRY),
        }
        request = AllocationRequest(world.code, "uk-a", "COCOS-uk-a-123456782", (("sex", "female"),))
        first = edc_hub.allocate(request)
        assert edc_hub.allocate(request) == first  # asked again: the same allocation, not a second draw
        assert first.arm in {"A", "B"}
        edc_hub.report_enrolment(
            EnrolmentReport(world.code, "uk-a", ((first.arm, 1),), dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC))
        )

        credential.write_text("not-the-credential")
        with pytest.raises(HubUnavailable, match="rejected this site's credential"):
            edc_hub.definitions()
