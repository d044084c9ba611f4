"""Prospective studies at the hub: the study lead sets a study up (sites, arms, visits, versioned forms,
roles, recruitment status), sites fetch their definitions, and the hub's randomisation service allocates
concealed, idempotent and audited; bad input gets a 4xx naming the field, and a restart keeps everything."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import Counter
from typing import Any

import pytest

from .helpers import SITE_API, HubFixture, serving
from .studies_helpers import (
    FORM_URL,
    PEOPLE,
    SEED,
    STUDIES,
    StudyWorld,
    allocation_request,
    arms,
    baseline_form,
    call,
    set_up_study,
    study_world,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def world(hub: HubFixture) -> StudyWorld:
    return study_world(hub)


def _base(world: StudyWorld) -> str:
    return f"{STUDIES}/{world.code}"


async def test_a_study_set_up_through_the_api_survives_a_hub_restart(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        before = (await call(client, "GET", _base(world), world.as_("lead"), expected=200)).json()
    async with serving(hub.app()) as client:
        after = (await call(client, "GET", _base(world), world.as_("lead"), expected=200)).json()
    assert after == before
    assert after["status"] == "recruiting"
    assert after["sites"] == ["uk-a", "uk-b"]
    assert [arm["code"] for arm in after["arms"]] == ["A", "B"]
    assert [(f["url"], f["version"]) for f in after["forms"]] == [(FORM_URL, "1")]
    assert after["randomised"] is True
    assert [(e["from"], e["to"], e["by"]) for e in after["history"]] == [
        (None, "planned", PEOPLE["lead"]),
        ("planned", "recruiting", PEOPLE["lead"]),
    ]
    assert after["history"][1]["reason"] == "Ethikvotum liegt vor"


async def test_saving_a_form_publishes_its_next_version_and_leaves_the_old_one_as_it_was(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        lead = world.as_("lead")
        changed = baseline_form({"linkId": "weight", "text": "Gewicht (kg)", "type": "decimal"})
        published = await call(client, "POST", f"{_base(world)}/forms", lead, {"questionnaire": changed}, 201)
        assert published.json() == {"url": FORM_URL, "version": "2"}
        first = await call(client, "GET", f"{_base(world)}/forms/1?url={FORM_URL}", lead, expected=200)
        second = await call(client, "GET", f"{_base(world)}/forms/2?url={FORM_URL}", lead, expected=200)
    assert [item["linkId"] for item in first.json()["item"]] == ["age", "smoker"]
    assert first.json()["version"] == "1"
    assert [item["linkId"] for item in second.json()["item"]] == ["age", "smoker", "weight"]


@pytest.mark.parametrize(
    ("questionnaire", "named"),
    [
        (
            {**baseline_form(), "item": [{"linkId": "age", "text": "Alter", "type": "no-such-type"}]},
            "questionnaire.item[0].type",
        ),
        ({**baseline_form(), "resourceType": "Patient"}, "questionnaire.resourceType"),
        ({key: value for key, value in baseline_form().items() if key != "url"}, "questionnaire.url"),
        (
            baseline_form({"linkId": "age", "text": "doppelt", "type": "string"}),
            "questionnaire.item[2].linkId",
        ),
        (
            baseline_form(
                {
                    "linkId": "packs",
                    "text": "Packungsjahre",
                    "type": "integer",
                    "enableWhen": [{"question": "nowhere", "operator": "=", "answerBoolean": True}],
                }
            ),
            "questionnaire.item[2].enableWhen[0].question",
        ),
    ],
)
async def test_a_form_that_is_not_a_valid_questionnaire_is_refused_naming_the_json_path(
    hub: HubFixture, world: StudyWorld, questionnaire: dict[str, Any], named: str
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        response = await client.post(
            f"{_base(world)}/forms", json={"questionnaire": questionnaire}, headers=world.as_("lead")
        )
        forms = (await call(client, "GET", _base(world), world.as_("lead"), expected=200)).json()["forms"]
    assert response.status_code == 422
    assert response.json()["error"].startswith(named), response.json()
    assert len(forms) == 1  # nothing was published


async def test_malformed_json_and_a_huge_form_are_refused_before_anything_is_stored(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        headers = {**world.as_("lead"), "content-type": "application/json"}
        broken = await client.post(f"{_base(world)}/forms", content=b'{"questionnaire": {', headers=headers)
        many = [{"linkId": f"q{i}", "text": "x" * 200, "type": "string"} for i in range(6000)]
        huge = await client.post(
            f"{_base(world)}/forms",
            json={"questionnaire": {**baseline_form(), "item": many}},
            headers=headers,
        )
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("malformed JSON")
    assert huge.status_code == 413
    assert hub.count("study_forms") == 1


@pytest.mark.parametrize(
    ("design", "named"),
    [
        (arms("A", "A"), "arms[1].code: duplicate arm code 'A'"),
        ([{**arms("A")[0], "visits": arms("A")[0]["visits"] * 2}], "arms[0].visits[1]: duplicate visit code"),
        ([{**arms("A")[0], "code": "A B"}], "arms[0].code"),
        (
            [
                {
                    **arms("A")[0],
                    "visits": [{**arms("A")[0]["visits"][0], "forms": [{"url": "urn:x", "repeating": True}]}],
                }
            ],
            "arms[0].visits[0].forms[0].url: no published form",
        ),
        (
            [{**arms("A")[0], "visits": [{**arms("A")[0]["visits"][0], "day_offset": "7"}]}],
            "arms[0].visits[0].day_offset",
        ),
        ([], "arms: a study has at least one arm"),
    ],
)
async def test_a_bad_design_is_refused_naming_the_field(
    hub: HubFixture, world: StudyWorld, design: list[Any], named: str
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        response = await client.put(f"{_base(world)}/arms", json={"arms": design}, headers=world.as_("lead"))
        kept = (await call(client, "GET", _base(world), world.as_("lead"), expected=200)).json()["arms"]
    assert response.status_code == 422
    assert response.json()["error"].startswith(named), response.json()
    assert [arm["code"] for arm in kept] == ["A", "B"]


async def test_a_duplicate_study_code_and_bad_set_up_fields_are_refused(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        lead = world.as_("lead")
        again = await client.post(
            STUDIES, json={"code": world.code, "title": "T", "acronym": "T"}, headers=lead
        )
        bad_code = await client.post(STUDIES, json={"code": "Ä!", "title": "T", "acronym": "T"}, headers=lead)
        page_name = await client.post(
            STUDIES, json={"code": "redcap", "title": "T", "acronym": "T"}, headers=lead
        )
        no_title = await client.post(
            STUDIES, json={"code": "ok-code", "title": " ", "acronym": "T"}, headers=lead
        )
        bad_query = await client.post(
            STUDIES,
            json={"code": "ok-code", "title": "T", "acronym": "T", "eligibility": {"x": 1}},
            headers=lead,
        )
    assert (again.status_code, again.json()["error"]) == (
        409,
        f"code: there is a study {world.code!r} already",
    )
    assert bad_code.status_code == 422 and bad_code.json()["error"].startswith("code:")
    assert page_name.status_code == 422 and "portal page" in page_name.json()["error"]
    assert no_title.status_code == 422 and no_title.json()["error"].startswith("title:")
    assert bad_query.status_code == 422 and bad_query.json()["error"].startswith("eligibility")


async def test_recruitment_status_moves_only_along_its_transitions_and_the_design_is_then_fixed(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        lead, base = world.as_("lead"), _base(world)
        skip = await client.post(f"{base}/status", json={"status": "completed", "reason": "x"}, headers=lead)
        silent = await client.post(f"{base}/status", json={"status": "closed", "reason": " "}, headers=lead)
        redesign = await client.put(f"{base}/arms", json={"arms": arms("A")}, headers=lead)
        leaving = await client.put(f"{base}/sites", json={"sites": ["uk-a"]}, headers=lead)
        joining = await client.put(f"{base}/sites", json={"sites": ["uk-a", "uk-b", "uk-c"]}, headers=lead)
        await call(
            client, "POST", f"{base}/status", lead, {"status": "closed", "reason": "Fallzahl erreicht"}
        )
        await call(client, "POST", f"{base}/status", lead, {"status": "completed", "reason": "letzte Visite"})
        late_form = await client.post(f"{base}/forms", json={"questionnaire": baseline_form()}, headers=lead)
        history = (await call(client, "GET", base, lead, expected=200)).json()["history"]
    assert (skip.status_code, skip.json()["error"]) == (
        409,
        "status: a recruiting study cannot become completed",
    )
    assert silent.status_code == 422 and silent.json()["error"].startswith("reason:")
    assert redesign.status_code == 409
    assert leaving.status_code == 409
    assert joining.status_code == 204
    assert late_form.status_code == 409
    assert [e["to"] for e in history] == ["planned", "recruiting", "closed", "completed"]
    assert history[-1]["reason"] == "letzte Visite"


async def test_a_study_with_two_arms_opens_recruitment_only_with_a_randomisation_scheme(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        lead = world.as_("lead")
        base = _base(world)
        await call(client, "POST", STUDIES, lead, {"code": world.code, "title": "T", "acronym": "T"}, 201)
        no_sites = await client.post(
            f"{base}/status", json={"status": "recruiting", "reason": "los"}, headers=lead
        )
        await call(client, "PUT", f"{base}/sites", lead, {"sites": ["uk-a"]})
        await call(client, "POST", f"{base}/forms", lead, {"questionnaire": baseline_form()}, 201)
        await call(client, "PUT", f"{base}/arms", lead, {"arms": arms("A", "B")})
        no_scheme = await client.post(
            f"{base}/status", json={"status": "recruiting", "reason": "los"}, headers=lead
        )
    assert no_sites.json()["error"] == "sites: a study recruits at one site at least"
    assert no_scheme.status_code == 409
    assert no_scheme.json()["error"].startswith("randomisation:")


async def test_only_the_study_lead_changes_a_study_and_outsiders_do_not_see_it(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        base = _base(world)
        change = {"title": "Umbenannt", "acronym": "X"}
        answers = {
            who: (await client.put(base, json=change, headers=world.as_(who))).status_code
            for who in ("statistician", "investigator", "data entry", "monitor", "outsider")
        }
        seen = (await client.get(base, headers=world.as_("outsider"))).status_code
        listed = (await call(client, "GET", STUDIES, world.as_("outsider"), expected=200)).json()
    assert answers == {
        "statistician": 403,
        "investigator": 403,
        "data entry": 403,
        "monitor": 403,
        "outsider": 404,
    }
    assert seen == 404
    assert listed == {"studies": []}


async def test_site_staff_see_only_their_own_site(hub: HubFixture, world: StudyWorld) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        await call(
            client,
            "POST",
            f"{SITE_API}/studies/{world.code}/enrolment",
            world.site("uk-b"),
            {
                "study_id": world.code,
                "site": "uk-b",
                "enrolled": {"A": 2, "B": 1},
                "reported_at": "2025-03-04T12:00:00+00:00",
            },
        )
        entry = (await call(client, "GET", _base(world), world.as_("data entry"), expected=200)).json()
        monitor = (await call(client, "GET", _base(world), world.as_("monitor"), expected=200)).json()
        lead = (await call(client, "GET", _base(world), world.as_("lead"), expected=200)).json()
    assert entry["sites"] == ["uk-a"]
    assert {r["site"] for r in entry["roles"]} == {None, "uk-a"}
    assert entry["enrolment"] == {}
    assert monitor["sites"] == ["uk-b"] and monitor["enrolment"] == {"uk-b": {"A": 2, "B": 1}}
    assert {r["site"] for r in lead["roles"]} == {None, "uk-a", "uk-b"}


async def test_a_site_gets_the_definitions_of_its_studies_with_only_its_own_roster(
    hub: HubFixture, world: StudyWorld
) -> None:
    from datenraum.protocol.studies import StudyDefinition

    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        a = (await call(client, "GET", f"{SITE_API}/studies", world.site("uk-a"), expected=200)).json()[
            "studies"
        ]
        c = (await call(client, "GET", f"{SITE_API}/studies", world.site("uk-c"), expected=200)).json()[
            "studies"
        ]
        nobody = await client.get(f"{SITE_API}/studies")
    definition = StudyDefinition.from_json(a[0])
    assert (definition.study_id, definition.site, definition.recruitment_status.value) == (
        world.code,
        "uk-a",
        "recruiting",
    )
    assert {(m.email, m.role.value) for m in definition.roster} == {
        (PEOPLE["investigator"], "site-investigator"),
        (PEOPLE["data entry"], "data-entry"),
    }
    assert definition.current_form(FORM_URL).canonical == f"{FORM_URL}|1"
    assert definition.randomised and [f.name for f in definition.factors] == ["sex"]
    assert c == []
    assert nobody.status_code == 401


async def test_asking_twice_for_a_participant_returns_the_same_allocation_never_a_second_draw(
    hub: HubFixture, world: StudyWorld
) -> None:
    path = f"{SITE_API}/studies/{{}}/allocations"
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        url = path.format(world.code)
        body = allocation_request(world, "uk-a", "P-0001")
        answers = await asyncio.gather(
            *(client.post(url, json=body, headers=world.site("uk-a")) for _ in range(4))
        )
        other_site = await client.post(
            url, json=allocation_request(world, "uk-b", "P-0001"), headers=world.site("uk-b")
        )
        audit = (
            await call(
                client, "GET", f"{_base(world)}/randomisation", world.as_("statistician"), expected=200
            )
        ).json()
    assert {r.status_code for r in answers} == {200}
    assert len({json.dumps(r.json(), sort_keys=True) for r in answers}) == 1
    assert other_site.status_code == 409
    assert len(audit["allocations"]) == 1
    entry = audit["allocations"][0]
    assert (entry["participant"], entry["site"], entry["by"], entry["position"]) == (
        "P-0001",
        "uk-a",
        "uk-a",
        0,
    )
    assert entry["arm"] == answers[0].json()["arm"]
    assert json.loads(entry["stratum"]) == ["uk-a", [["sex", "female"]]]


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        (
            {"site": "uk-a", "participant": "P-1", "factors": {"sex": "other"}},
            422,
            "factors: factor 'sex' has no level",
        ),
        ({"site": "uk-a", "participant": "P-1", "factors": {}}, 422, "factors: factor 'sex' has no value"),
        (
            {"site": "uk-a", "participant": "P 1", "factors": {"sex": "male"}},
            422,
            "allocation_request.participant",
        ),
        (
            {"site": "uk-b", "participant": "P-1", "factors": {"sex": "male"}},
            422,
            "site: the request names 'uk-b'",
        ),
        (
            {"site": "uk-a", "participant": "P-1", "factors": {"sex": "male"}, "study_id": "other"},
            422,
            "study_id",
        ),
    ],
)
async def test_a_bad_allocation_request_is_refused_naming_the_field(
    hub: HubFixture, world: StudyWorld, body: dict[str, Any], status: int, named: str
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        response = await client.post(
            f"{SITE_API}/studies/{world.code}/allocations",
            json={"study_id": world.code, **body},
            headers=world.site("uk-a"),
        )
    assert response.status_code == status
    assert response.json()["error"].startswith(named), response.json()
    assert hub.count("study_allocations") == 0


async def test_no_allocation_before_recruitment_nor_for_a_site_outside_the_study(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        url = f"{SITE_API}/studies/{world.code}/allocations"
        early = await client.post(
            url, json=allocation_request(world, "uk-a", "P-1"), headers=world.site("uk-a")
        )
        stranger = await client.post(
            url, json=allocation_request(world, "uk-c", "P-1"), headers=world.site("uk-c")
        )
    assert (early.status_code, early.json()["error"]) == (409, "status: the study is planned, not recruiting")
    assert stranger.status_code == 404


async def test_allocations_keep_each_stratum_balanced_within_a_block(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        url = f"{SITE_API}/studies/{world.code}/allocations"
        arms_by_stratum: dict[tuple[str, str], Counter[str]] = {}
        for number in range(60):
            site, sex = ("uk-a", "uk-b")[number % 2], ("female", "male")[(number // 2) % 2]
            body = allocation_request(world, site, f"P-{number:04d}", sex)
            arm = (await call(client, "POST", url, world.site(site), body, 200)).json()["arm"]
            arms_by_stratum.setdefault((site, sex), Counter())[arm] += 1
    # blocks of 2 and 4: within a stratum the arms never differ by more than 2
    assert all(abs(counts["A"] - counts["B"]) <= 2 for counts in arms_by_stratum.values()), arms_by_stratum
    assert sum(sum(c.values()) for c in arms_by_stratum.values()) == 60


async def test_the_statistician_reproduces_the_sequence_with_the_seed_and_nobody_else_can(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        url = f"{SITE_API}/studies/{world.code}/allocations"
        drawn = {}
        for number in range(6):
            body = allocation_request(world, "uk-a", f"P-{number}", "male")
            drawn[f"P-{number}"] = (await call(client, "POST", url, world.site("uk-a"), body, 200)).json()[
                "arm"
            ]
        sequence = f"{_base(world)}/randomisation/sequence"
        right = await call(
            client, "POST", sequence, world.as_("statistician"), {"seed": SEED, "length": 8}, 200
        )
        wrong = await client.post(
            sequence, json={"seed": SEED + "x", "length": 8}, headers=world.as_("statistician")
        )
        lead = await client.post(sequence, json={"seed": SEED, "length": 8}, headers=world.as_("lead"))
        scheme_for_site_staff = await client.get(
            f"{_base(world)}/randomisation", headers=world.as_("investigator")
        )
    rows = list(csv.DictReader(io.StringIO(right.text)))
    male_a = [row for row in rows if json.loads(row["stratum"]) == ["uk-a", [["sex", "male"]]]]
    assert len(male_a) == 8
    assert {row["participant"]: row["arm"] for row in male_a if row["participant"]} == drawn
    assert len(rows) == 2 * 2 * 8  # two sites by two levels of sex, eight places each
    assert wrong.status_code == 403 and lead.status_code == 403
    assert scheme_for_site_staff.status_code == 403
    assert SEED not in right.text


async def test_the_seed_is_kept_only_sealed_and_the_scheme_is_fixed_once_recruiting(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        scheme = {"block_sizes": [2], "seed": SEED}
        again = await client.put(
            f"{_base(world)}/randomisation", json=scheme, headers=world.as_("statistician")
        )
    with hub.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT seed_sealed, seed_check FROM study_randomisation").one()
    assert SEED.encode() not in bytes(stored[0]) and SEED not in stored[1]
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("scheme", "named"),
    [
        ({"block_sizes": [3], "seed": SEED}, "block_sizes[0]"),
        ({"block_sizes": [2, 10**9], "seed": SEED}, "block_sizes[1]: from 1 to 64"),
        ({"block_sizes": [2], "seed": "short"}, "seed: at least 32 characters"),
        ({"block_sizes": [2], "ratio": {"C": 1}, "seed": SEED}, "ratio.C: the study has no arm 'C'"),
        (
            {"block_sizes": [2], "factors": [{"name": "sex", "levels": ["f"]}], "seed": SEED},
            "factors[0].levels",
        ),
        (
            {
                "block_sizes": [2],
                "factors": [{"name": f"f{i}", "levels": ["a", "b"]} for i in range(4)],
                "seed": SEED,
            },
            "factors",
        ),
    ],
)
async def test_a_bad_scheme_is_refused_naming_the_field(
    hub: HubFixture, world: StudyWorld, scheme: dict[str, Any], named: str
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        response = await client.put(
            f"{_base(world)}/randomisation", json=scheme, headers=world.as_("statistician")
        )
    assert response.status_code == 422
    assert named in response.json()["error"], response.json()


async def test_an_empty_seed_is_drawn_by_the_hub_and_shown_once(hub: HubFixture, world: StudyWorld) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        base = _base(world)
        drawn = await call(
            client, "PUT", f"{base}/randomisation", world.as_("statistician"), {"block_sizes": [4]}, 200
        )
        seed = drawn.json()["seed"]
        shown = (
            await call(client, "GET", f"{base}/randomisation", world.as_("statistician"), expected=200)
        ).text
        sequence = f"{base}/randomisation/sequence"
        await call(client, "POST", sequence, world.as_("statistician"), {"seed": seed, "length": 4}, 200)
    assert len(seed) == 64
    assert seed not in shown


async def test_an_enrolment_report_is_kept_per_site_and_a_stale_or_foreign_one_changes_nothing(
    hub: HubFixture, world: StudyWorld
) -> None:
    url = f"{SITE_API}/studies/{{}}/enrolment"
    report = {
        "study_id": "cocos",
        "site": "uk-a",
        "enrolled": {"A": 3, "B": 2},
        "reported_at": "2025-03-04T12:00:00+00:00",
    }
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        await call(client, "POST", url.format(world.code), world.site("uk-a"), report)
        stale = {**report, "enrolled": {"A": 1}, "reported_at": "2025-03-01T12:00:00+00:00"}
        await call(client, "POST", url.format(world.code), world.site("uk-a"), stale)
        unknown_arm = await client.post(
            url.format(world.code), json={**report, "enrolled": {"Z": 1}}, headers=world.site("uk-a")
        )
        foreign = await client.post(
            url.format(world.code), json={**report, "site": "uk-b"}, headers=world.site("uk-a")
        )
        outside = await client.post(
            url.format(world.code), json={**report, "site": "uk-c"}, headers=world.site("uk-c")
        )
        kept = (await call(client, "GET", _base(world), world.as_("lead"), expected=200)).json()["enrolment"]
    assert kept == {"uk-a": {"A": 3, "B": 2}}
    assert unknown_arm.status_code == 422 and unknown_arm.json()["error"].startswith("enrolled.Z")
    assert foreign.status_code == 422 and foreign.json()["error"].startswith("site:")
    assert outside.status_code == 404


async def test_roles_are_given_for_the_study_or_one_of_its_sites_and_a_study_keeps_a_lead(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        lead, roles = world.as_("lead"), f"{_base(world)}/roles"
        no_site = await client.post(
            roles, json={"email": "x@example.org", "role": "data-entry"}, headers=lead
        )
        wide_site = await client.post(
            roles, json={"email": "x@example.org", "role": "statistician", "site": "uk-a"}, headers=lead
        )
        foreign = await client.post(
            roles, json={"email": "x@example.org", "role": "monitor", "site": "uk-c"}, headers=lead
        )
        twice = await client.post(
            roles, json={"email": PEOPLE["statistician"], "role": "statistician"}, headers=lead
        )
        bad_mail = await client.post(roles, json={"email": "not-mail", "role": "statistician"}, headers=lead)
        grants = (await call(client, "GET", _base(world), lead, expected=200)).json()["roles"]
        lead_grant = next(g["id"] for g in grants if g["role"] == "study-lead")
        last_lead = await client.delete(f"{roles}/{lead_grant}", headers=lead)
        monitor_grant = next(g["id"] for g in grants if g["role"] == "monitor")
        await call(client, "DELETE", f"{roles}/{monitor_grant}", lead)
        gone = await client.get(_base(world), headers=world.as_("monitor"))
    assert [r.status_code for r in (no_site, wide_site, foreign, bad_mail)] == [422, 422, 422, 422]
    assert foreign.json()["error"] == "site: 'uk-c' does not take part in the study"
    assert twice.status_code == 409
    assert last_lead.status_code == 409
    assert gone.status_code == 404


async def test_changing_the_arms_drops_the_scheme_set_for_the_earlier_ones(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world, recruiting=False)
        await call(client, "PUT", f"{_base(world)}/arms", world.as_("lead"), {"arms": arms("A", "B", "C")})
        scheme = (
            await call(
                client, "GET", f"{_base(world)}/randomisation", world.as_("statistician"), expected=200
            )
        ).json()
        opening = await client.post(
            f"{_base(world)}/status",
            json={"status": "recruiting", "reason": "los"},
            headers=world.as_("lead"),
        )
    assert scheme["scheme"] is None
    assert opening.status_code == 409 and opening.json()["error"].startswith("randomisation:")


async def test_concurrent_requests_for_different_participants_take_distinct_places_of_their_stratum(
    hub: HubFixture, world: StudyWorld
) -> None:
    async with serving(hub.app()) as client:
        await set_up_study(client, world)
        url = f"{SITE_API}/studies/{world.code}/allocations"
        answers = await asyncio.gather(
            *(
                client.post(url, json=allocation_request(world, "uk-a", f"P-{n}"), headers=world.site("uk-a"))
                for n in range(8)
            )
        )
        audit = (
            await call(
                client, "GET", f"{_base(world)}/randomisation", world.as_("statistician"), expected=200
            )
        ).json()["allocations"]
    assert {r.status_code for r in answers} == {200}
    assert sorted(a["position"] for a in audit) == list(range(8))
    assert len({a["participant"] for a in audit}) == 8
