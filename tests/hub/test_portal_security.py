"""The portal's defences, as an attacker would probe them: forged forms and script requests (CSRF),
stolen or stale sessions, cookie flags, security headers, open redirects, injected text and markup, and
errors that must not turn into stack traces or the wrong kind of answer.

Every test runs on SQLite and PostgreSQL, with the hub in-process and a FakeClock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from datenraum.hub.accounts.audit import AuditSource
from datenraum.hub.accounts.service import PortalRoleHolders, Site, User
from datenraum.hub.proposals.sample_requests import Collection, SampleRequestForm, SampleRequests
from datenraum.hub.proposals.values import DocumentKind
from datenraum.hub.proposals.workflow import Action
from datenraum.hub.roles import Actor, Role
from datenraum.hub.runtime import CSRF_HEADER, SESSION_COOKIE
from datenraum.hub.samples.service import SampleSearches
from datenraum.hub.studies.randomisation import Randomisations
from datenraum.hub.studies.service import Studies, StudySetUp
from datenraum.protocol.messages import TaskResult, TaskState
from datenraum.protocol.studies import StudyRole

from .helpers import HubFixture, bearer, older_than, serving
from .portal_helpers import (
    OFFICE,
    PASSWORD,
    People,
    UseAndAccess,
    browser,
    database_contents,
    link_in,
    routes,
)
from .proposals_helpers import ETHICS_VOTE
from .studies_helpers import SEED, SMALL_DICTIONARY, arms, baseline_form

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fast_passwords")]

NEW_PASSWORD = "another long passphrase"


@dataclass(frozen=True)
class Setup:
    """An administrator who also looks after site uk-a and writes proposals, a researcher, a reset link
    of hers, and the objects the Use & Access forms change: the administrator's draft and delivered
    proposal, the researcher's submitted one (which notified the administrator), a directory site and
    entry."""

    erika_id: int
    reset_token: str
    draft_id: int = 0
    submitted_id: int = 0
    delivered_id: int = 0
    directory_site: str = ""
    directory_entry: str = ""
    release_task: str = ""
    site_id: int = 0  # uk-a
    search_id: str = ""  # the administrator's sample search, answered by uk-a's biobank bb-a
    sample_proposal_id: int = 0  # approved, with a sample request item waiting for the office
    sample_item_id: int = 0
    study_code: str = ""  # the office's planned study at uk-a: it leads it and is its statistician
    study_grant: int = 0  # a monitor's role in it


@dataclass(frozen=True)
class Form:
    path: str
    data: Callable[[Setup], dict[str, str]]
    answer: int  # the status when the token is right
    files: dict[str, tuple[str, bytes, str]] | None = None


def _password(field: str, value: str) -> dict[str, str]:
    return {field: value, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}


# Every form of the portal (by route), filled in so that it changes something when its token is right.
FORMS = {
    "/login": Form("/login", lambda _: {"email": "erika@example.org", "password": PASSWORD}, 303),
    "/logout": Form("/logout", lambda _: {}, 303),
    "/register": Form(
        "/register",
        lambda _: {
            "name": "Max Muster",
            "institution": "Uniklinik Süd",
            "email": "max@example.org",
            "password": PASSWORD,
            "password_repeat": PASSWORD,
        },
        200,
    ),
    "/password/forgot": Form("/password/forgot", lambda _: {"email": "erika@example.org"}, 200),
    "/password/reset": Form("/password/reset", lambda setup: _password("token", setup.reset_token), 303),
    "/language": Form("/language", lambda _: {"language": "en", "back": "/account"}, 303),
    "/account/password": Form("/account/password", lambda _: _password("current", PASSWORD), 303),
    "/account/token": Form("/account/token", lambda _: {}, 200),
    "/admin/accounts/{user_id}/status": Form(
        "/admin/accounts/{erika_id}/status", lambda _: {"status": "disabled"}, 303
    ),
    "/admin/accounts/{user_id}/roles": Form(
        "/admin/accounts/{erika_id}/roles", lambda _: {"change": "grant", "role": "committee"}, 303
    ),
    "/admin/sites": Form("/admin/sites", lambda _: {"name": "uk-new"}, 200),
    "/admin/sites/{name}/{change}": Form("/admin/sites/uk-a/rotate", lambda _: {}, 200),
    "/site-admin/{name}/{change}": Form("/site-admin/uk-a/revoke", lambda _: {}, 200),
    "/proposals/new": Form("/proposals/new", lambda _: {"title": "Ein Entwurf"}, 303),
    "/proposals/{proposal_id}/edit": Form(
        "/proposals/{draft_id}/edit", lambda _: {"title": "Umbenannt"}, 303
    ),
    "/proposals/{proposal_id}/documents": Form(
        "/proposals/{submitted_id}/documents",
        lambda _: {"kind": "ethics-vote"},
        303,
        files={"file": ("votum-neu.pdf", ETHICS_VOTE, "application/pdf")},
    ),
    "/proposals/{proposal_id}/actions/{name}": Form(
        "/proposals/{submitted_id}/actions/start-formal-check", lambda _: {}, 303
    ),
    "/proposals/{proposal_id}/comments": Form(
        "/proposals/{submitted_id}/comments", lambda _: {"text": "Eine Frage"}, 303
    ),
    "/proposals/{proposal_id}/publications": Form(
        "/proposals/{delivered_id}/publications",
        lambda _: {"title": "Niere nach Diabetes", "reference": "https://doi.org/10.1000/182"},
        303,
    ),
    "/notifications/read": Form("/notifications/read", lambda _: {"all": "1"}, 303),
    "/samples": Form("/samples", lambda _: {"category": "blood", "diagnoses": "E11"}, 303),
    "/samples/{search_id}/request": Form(
        "/samples/{search_id}/request",
        lambda s: {
            "proposal": str(s.draft_id),
            "item": f"{s.site_id}|bb-a",
            "donors": "10",
            "samples_per_donor": "1",
            "volume": "0,5 ml",
            "collection": "retrospective",
        },
        303,
    ),
    "/proposals/{proposal_id}/samples/{item_id}": Form(
        "/proposals/{sample_proposal_id}/samples/{sample_item_id}",
        lambda _: {"event": "contact", "message": "Bitte Verfügbarkeit prüfen"},
        303,
    ),
    "/admin/directory/sites": Form(
        "/admin/directory/sites",
        lambda _: {"slug": "uk-neu", "name": "Uniklinik Neu", "city": "Neustadt", "contact": "Büro"},
        303,
    ),
    "/admin/directory/sites/{slug}/delete": Form(
        "/admin/directory/sites/{directory_site}/delete", lambda _: {}, 303
    ),
    "/admin/directory/entries": Form(
        "/admin/directory/entries",
        lambda _: {"slug": "neu", "kind": "project", "acronym": "NEU", "name": "Neues Projekt"},
        303,
    ),
    "/admin/directory/entries/{slug}/delete": Form(
        "/admin/directory/entries/{directory_entry}/delete", lambda _: {}, 303
    ),
    "/admin/directory/participations": Form(
        "/admin/directory/participations",
        lambda setup: {"site": setup.directory_site, "entry": setup.directory_entry, "role": "Partner"},
        303,
    ),
    "/admin/dashboard/definitions": Form(
        "/admin/dashboard/definitions",
        lambda _: {
            "kind": "disease",
            "body": '{"id": "mpox", "title": "Mpox", "start": "2022-05-01", "marker": {"icd10gm": ["B04"]}}',
        },
        303,
    ),
    "/admin/dashboard/run": Form("/admin/dashboard/run", lambda _: {}, 303),
    "/studies": Form("/studies", lambda _: {"code": "neu", "title": "Neue Studie", "acronym": "N"}, 303),
    "/studies/redcap": Form(
        "/studies/redcap",
        lambda _: {"code": "aus-redcap", "title": "Aus REDCap", "acronym": "R"},
        200,
        files={"dictionary": ("dictionary.csv", SMALL_DICTIONARY, "text/csv")},
    ),
    "/studies/{code}/setup": Form(
        "/studies/{study_code}/setup", lambda _: {"title": "Umbenannt", "acronym": "U"}, 303
    ),
    "/studies/{code}/sites": Form("/studies/{study_code}/sites", lambda _: {"site": "uk-a"}, 303),
    "/studies/{code}/roles": Form(
        "/studies/{study_code}/roles",
        lambda _: {"email": "neu@example.org", "role": "monitor", "site": "uk-a"},
        303,
    ),
    "/studies/{code}/roles/{grant_id}/revoke": Form(
        "/studies/{study_code}/roles/{study_grant}/revoke", lambda _: {}, 303
    ),
    "/studies/{code}/status": Form(
        "/studies/{study_code}/status", lambda _: {"status": "recruiting", "reason": "Votum liegt vor"}, 303
    ),
    "/studies/{code}/design": Form(
        "/studies/{study_code}/design", lambda _: {"step": "add-arm", "code": "C", "name": "Drei"}, 303
    ),
    "/studies/{code}/randomisation": Form(
        "/studies/{study_code}/randomisation", lambda _: {"block_sizes": "2", "seed": SEED}, 200
    ),
    "/studies/{code}/randomisation/sequence": Form(
        "/studies/{study_code}/randomisation/sequence", lambda _: {"seed": SEED, "length": "2"}, 200
    ),
    # a refused survival form (no agents here) is logged as a run: the office owns the delivered project
    "/analysis/{project_id}/survival": Form(
        "/analysis/{delivered_id}/survival",
        lambda _: {"start": "condition", "start_code": "no code", "event": "death", "bin_width": "30"},
        422,
    ),
    "/deliveries/parts/{task_id}/decision": Form(
        "/deliveries/parts/{release_task}/decision", lambda _: {"decision": "release"}, 303
    ),
    "/catalogue/harvest": Form("/catalogue/harvest", lambda _: {"url": "http://127.0.0.1:9/x.ttl"}, 200),
}


def _setup(hub: HubFixture, people: People, uploads: Path) -> Setup:
    hub.sites("uk-a")
    office_id = people.approved("office@example.org", Role.ADMIN)
    people.users.grant(OFFICE, office_id, Role.SITE_ADMIN, "uk-a")
    people.users.grant(OFFICE, office_id, Role.RESEARCHER)
    committee_id = people.approved("committee@example.org", Role.COMMITTEE)
    erika_id = people.approved("erika@example.org")
    people.users.request_reset("erika@example.org", "http://hub/password/reset", "")
    token = link_in(people.messages("erika@example.org")[0]).split("token=")[1]
    objects = UseAndAccess.on(hub, uploads, "uk-a")
    office, committee = people.acting(office_id), people.acting(committee_id)
    sample_proposal_id, sample_item_id = _approved_sample_item(hub, objects, office, committee)
    return Setup(
        erika_id,
        token,
        draft_id=objects.draft(office),
        submitted_id=objects.submitted(people.acting(erika_id))[0],
        delivered_id=objects.delivered(office, office, committee, office),
        directory_site=objects.directory_site(office),
        directory_entry=objects.directory_entry(office),
        release_task=objects.awaiting_release(
            hub, uploads / "deliveries", (office, office, committee, office), "uk-a"
        )[1],
        site_id=objects.site_id,
        search_id=_answered_search(
            hub, people.users.session_user(people.session_for(office_id)), objects.site_id
        ),
        sample_proposal_id=sample_proposal_id,
        sample_item_id=sample_item_id,
        **_study(hub, people.users.session_user(people.session_for(office_id))),
    )


def _study(hub: HubFixture, office: User | None) -> dict[str, Any]:
    """A study the office leads and randomises, ready to recruit, with a monitor's role to revoke."""
    assert office is not None
    studies, source = Studies(hub.sessions, hub.clock), AuditSource(None, "test setup")
    studies.create(office, "sicher", StudySetUp("Sicherheit", "S"), source)
    studies.set_sites(office, "sicher", ["uk-a"], source)
    studies.publish_form(office, "sicher", baseline_form(), source)
    studies.set_design(office, "sicher", arms("A", "B"), source)
    studies.grant(office, "sicher", "office@example.org", StudyRole.STATISTICIAN, None, source)
    studies.grant(office, "sicher", "monitor@example.org", StudyRole.MONITOR, "uk-a", source)
    Randomisations(hub.sessions, Path(hub.config.study_key_file), hub.clock).set_scheme(
        office, "sicher", [2], {}, [], SEED, source
    )
    grant = next(g.id for g in studies.view(office, "sicher").roles if g.role is StudyRole.MONITOR)
    return {"study_code": "sicher", "study_grant": grant}


def _answered_search(hub: HubFixture, user: User | None, site_id: int) -> str:
    assert user is not None
    searches = SampleSearches(hub.sessions, hub.config, hub.clock)
    search_id, _ = searches.submit(user, None, {}, ["uk-a"])
    count = {"obfuscated": 40}
    answer = {
        "patients": count,
        "specimens": count,
        "samples": count,
        "biobanks": [{"biobank": "bb-a", "name": "Biobank A", "patients": count}],
        "cells": [{"biobank": "bb-a", "category": "blood-plasma", "temperature": "LN", "patients": count}],
    }
    site = Site(site_id, "uk-a")
    for task in searches.claim(site):
        searches.record(site, task.id, TaskResult(task.id, TaskState.ANSWERED, samples=answer))
    return search_id


def _approved_sample_item(
    hub: HubFixture, objects: UseAndAccess, owner: Actor, committee: Actor
) -> tuple[int, int]:
    """A proposal of `owner` (also the office) with one sample request item, approved by the committee."""
    proposal_id = objects.draft(owner)
    form = SampleRequestForm(
        objects.site_id, "Biobank A", 10, 1, ("blood-plasma",), "1 ml", Collection.RETROSPECTIVE
    )
    item_id = SampleRequests(hub.sessions, PortalRoleHolders(), hub.clock).add(owner, proposal_id, form)
    objects.proposals.upload(owner, proposal_id, DocumentKind.ETHICS_VOTE, "votum.pdf", ETHICS_VOTE)
    for actor, action in (
        (owner, Action.SUBMIT),
        (owner, Action.START_FORMAL_CHECK),
        (owner, Action.FORWARD_TO_COMMITTEE),
        (committee, Action.VOTE_APPROVE),
    ):
        objects.proposals.apply(actor, proposal_id, action)
    return proposal_id, item_id


# --- CSRF ----------------------------------------------------------------------------------------------


async def test_every_form_of_the_portal_is_in_the_csrf_table(hub: HubFixture) -> None:
    forms = {path for method, path in routes(hub.app()) if method == "POST" and not path.startswith("/api/")}
    assert forms == set(FORMS)


@pytest.mark.parametrize("route", sorted(FORMS))
async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    hub: HubFixture, people: People, route: str, tmp_path: Path
) -> None:
    setup = _setup(hub, people, tmp_path)
    form = FORMS[route]
    path, data = form.path.format_map(vars(setup)), form.data(setup)
    app = hub.app(upload_folder=str(tmp_path))
    async with serving(app), browser(app) as office, browser(app) as attacker:
        assert (await office.login("office@example.org")).status_code == 303
        await attacker.get("/login")
        before = database_contents(hub)
        for token in (None, "forged", attacker.csrf):
            response = await office.submit(path, data, csrf=token, files=form.files)
            assert response.status_code == 403, (token, response.text)
            assert "security token" in response.text
            assert database_contents(hub) == before, token
        response = await office.submit(path, data, files=form.files)
        assert response.status_code == form.answer, response.text
        assert database_contents(hub) != before


async def test_the_api_with_the_session_cookie_needs_the_csrf_header_to_change_anything(
    hub: HubFixture, people: People
) -> None:
    hub.sites("uk-a", "uk-b", "uk-c")
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika:
        await erika.login("erika@example.org")
        response = await erika.api("POST", "/api/v1/saved-queries", {"name": "Alte", "query": older_than(50)})
        assert response.status_code == 201
        saved = f"/api/v1/saved-queries/{response.json()['id']}"
        changes = [
            ("POST", "/api/v1/saved-queries", {"name": "Jüngere", "query": older_than(20)}),
            ("PATCH", saved, {"name": "Umbenannt"}),
            ("POST", f"{saved}/duplicate", None),
            ("DELETE", saved, None),
            ("POST", "/api/v1/queries", {"query": older_than(50)}),
        ]
        before = database_contents(hub)
        for method, path, body in changes:
            for headers in ({}, {CSRF_HEADER: "forged"}):
                response = await erika.client.request(method, path, json=body, headers=headers)
                assert response.status_code == 403, (method, path, headers)
                assert CSRF_HEADER in response.json()["error"]
        assert database_contents(hub) == before
        for path in ("/api/v1/saved-queries", saved, f"{saved}/export", "/api/v1/history", "/api/v1/sites"):
            assert (await erika.api("GET", path, csrf=False)).status_code == 200, path
        for method, path, body in changes:
            assert (await erika.api(method, path, body)).is_success, (method, path)


async def test_the_api_with_an_api_token_needs_no_csrf_token(hub: HubFixture) -> None:
    token = hub.user("erika@example.org")
    async with serving(hub.app()) as client:
        body = {"name": "Alte", "query": older_than(50)}
        response = await client.post("/api/v1/saved-queries", json=body, headers=bearer(token))
        assert response.status_code == 201
        saved = f"/api/v1/saved-queries/{response.json()['id']}"
        response = await client.patch(saved, json={"name": "Neu"}, headers=bearer(token))
        assert response.json()["name"] == "Neu"
        assert (await client.delete(saved, headers=bearer(token))).status_code == 204


# --- sessions and their cookies ------------------------------------------------------------------------


def _cookie(response, name: str) -> dict[str, str]:
    """The attributes of cookie `name` as the response sets it (names lower-cased; flags map to "")."""
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        if first.split("=")[0] == name:
            parsed = {"value": first.split("=", 1)[1]}
            for attribute in attributes:
                key, _, value = attribute.partition("=")
                parsed[key.lower()] = value
            return parsed
    raise AssertionError(f"no {name} cookie set")


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
async def test_the_session_cookie_is_httponly_samesite_lax_lasts_the_session_and_is_secure_behind_https(
    hub: HubFixture, people: People, secure: bool
) -> None:
    people.approved("erika@example.org")
    app = hub.app(secure_cookies=secure, session_hours=2)
    async with serving(app), browser(app, https=secure) as erika:
        response = await erika.get("/login")
        csrf = _cookie(response, "dr_csrf")
        assert "httponly" in csrf
        assert csrf["samesite"].lower() == "strict"
        assert ("secure" in csrf) is secure

        response = await erika.submit("/login", {"email": "erika@example.org", "password": PASSWORD})
        session = _cookie(response, SESSION_COOKIE)
        assert "httponly" in session
        assert session["samesite"].lower() == "lax"
        assert session["path"] == "/"
        assert session["max-age"] == str(2 * 3600)
        assert ("secure" in session) is secure


async def test_a_session_ends_on_the_server_when_its_time_is_up(hub: HubFixture, people: People) -> None:
    people.approved("erika@example.org")
    app = hub.app(session_hours=2)
    async with serving(app), browser(app) as erika:
        await erika.login("erika@example.org")
        hub.clock.advance(2 * 3600 - 1)
        assert (await erika.get("/account")).status_code == 200
        hub.clock.advance(1)
        response = await erika.get("/account")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/account"
        response = await erika.api("GET", "/api/v1/saved-queries")
        assert response.status_code == 401
        assert "error" in response.json()


async def test_signing_out_ends_the_session_on_the_server_so_a_copied_cookie_no_longer_works(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika, browser(app) as thief:
        await erika.login("erika@example.org")
        stolen = erika.session
        assert stolen
        response = await erika.submit("/logout")
        assert response.headers["location"] == "/login?notice=signed-out"
        assert erika.session is None

        thief.client.cookies.set(SESSION_COOKIE, stolen)
        response = await thief.get("/account")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
        assert (await thief.api("GET", "/api/v1/saved-queries")).status_code == 401


# --- what pages send and show --------------------------------------------------------------------------


async def test_pages_come_with_security_headers(hub: HubFixture, people: People) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika:
        await erika.login("erika@example.org")
        for path in ("/register", "/queries/new", "/queries", "/account", "/admin/accounts", "/no-such-page"):
            response = await erika.get(path)
            assert response.headers["content-type"].startswith("text/html"), path
            policy = response.headers["content-security-policy"]
            for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
                assert directive in policy, (path, directive)
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "same-origin"
            # The policy allows no inline script: a page's scripts are files, its data is JSON.
            for tag in response.text.split("<script")[1:]:
                assert ' src="/static/' in tag.split(">")[0] or 'type="application/json"' in tag, path


OFF_SITE = [
    "//evil.example/",
    "/\\evil.example/",
    "https://evil.example/",
    "http:evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "%2F%2Fevil.example",
]


def _stays_here(location: str) -> bool:
    """Whether a browser following `location` from http://hub stays on the hub (browsers drop tabs
    and newlines and read a backslash as a slash)."""
    cleaned = location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/").strip()
    parts = urlsplit(cleaned)
    return cleaned.startswith("/") and not cleaned.startswith("//") and not parts.scheme and not parts.netloc


async def test_the_form_designer_may_style_inline_for_its_renderer_but_runs_only_the_hubs_script_files(
    hub: HubFixture, people: People, tmp_path: Path
) -> None:
    _setup(hub, people, tmp_path)
    app = hub.app()
    async with serving(app), browser(app) as office:
        await office.login("office@example.org")
        designer = await office.get("/studies/sicher/designer")
        study = await office.get("/studies/sicher")
    policy = _policy(designer)
    assert _allows(policy, "style-src", "inline")
    assert not _allows(policy, "script-src", "inline") and policy["frame-ancestors"] == ["'none'"]
    for tag in re.findall(r"<script[^>]*>", designer.text):
        source = re.search(r'src="([^"]+)"', tag)
        assert (
            source and source.group(1).startswith(("/static/", "/studies/lforms/"))
        ) or "application/json" in tag
    assert not _allows(_policy(study), "style-src", "inline")  # the other study pages keep the strict policy


@pytest.mark.parametrize("target", OFF_SITE)
async def test_the_page_after_signing_in_is_always_on_the_hub(
    hub: HubFixture, people: People, target: str
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika:
        page = await erika.get("/login", params={"next": target})
        assert 'name="next" value="/"' in page.text
        response = await erika.login("erika@example.org", next=target)
        assert response.status_code == 303
        assert _stays_here(response.headers["location"]), response.headers["location"]
        signed_in = await erika.get("/login", params={"next": target})
        assert _stays_here(signed_in.headers["location"]), signed_in.headers["location"]
        response = await erika.submit("/language", {"language": "en", "back": target})
        assert _stays_here(response.headers["location"]), response.headers["location"]


async def test_the_page_after_signing_in_is_the_one_asked_for(hub: HubFixture, people: People) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika:
        response = await erika.get("/queries")
        assert response.headers["location"] == "/login?next=/queries"
        page = await erika.get(response.headers["location"])
        assert 'name="next" value="/queries"' in page.text
        response = await erika.login("erika@example.org", next="/queries")
        assert response.headers["location"] == "/queries"


async def test_the_notice_parameter_shows_only_the_portals_own_texts(hub: HubFixture) -> None:
    app = hub.app()
    async with serving(app), browser(app) as someone:
        known = await someone.get(
            "/login", params={"notice": "signed-out"}, headers={"accept-language": "en"}
        )
        assert '<p class="notice" role="status">You are signed out.' in known.text
        for crafted in (
            "<script>alert(1)</script>",
            "Your account is locked, call +49 000 0000",
            "__class__",
        ):
            response = await someone.get("/login", params={"notice": crafted})
            assert response.status_code == 200
            assert 'class="notice"' not in response.text
            assert crafted not in response.text
            assert "alert(1)" not in response.text


async def test_names_with_markup_are_shown_as_text_everywhere(hub: HubFixture, people: People) -> None:
    people.approved("office@example.org", Role.ADMIN)
    app = hub.app()
    markup = "<script>alert('x')</script>"
    async with serving(app), browser(app) as mallory, browser(app) as office:
        form = {
            "name": markup,
            "institution": '<img src=x onerror="alert(1)">',
            "email": "mallory@example.org",
            "password": PASSWORD,
            "password_repeat": PASSWORD,
        }
        assert (await mallory.submit("/register", form)).status_code == 200
        await office.login("office@example.org")
        mallory_id = next(a.id for a in people.users.accounts() if a.email == "mallory@example.org")
        await office.submit(f"/admin/accounts/{mallory_id}/status", {"status": "approved"})
        await mallory.login(markup, "guessed wrong")  # the attempted address goes to the audit log
        await mallory.login("mallory@example.org")
        pages = [
            await office.get("/admin/accounts"),
            await office.get("/admin/outbox"),
            await office.get("/admin/audit"),
            await mallory.get("/account"),
        ]
        for page in pages:
            assert page.status_code == 200
            assert "<script>alert" not in page.text, page.url
            assert "<img src=x" not in page.text, page.url
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages[0].text
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in pages[0].text


# --- errors --------------------------------------------------------------------------------------------


async def test_errors_are_pages_for_browsers_and_json_for_the_api(hub: HubFixture, people: People) -> None:
    people.approved("erika@example.org")
    people.approved("committee@example.org", Role.COMMITTEE)
    app = hub.app()
    async with serving(app), browser(app) as erika, browser(app) as member:
        await erika.login("erika@example.org")
        await member.login("committee@example.org")
        pages = [
            (erika, "/no-such-page", 404),
            (erika, "/queries/saved/999", 404),
            (erika, "/queries/saved/not-a-number", 422),
            (erika, "/admin/accounts", 403),
            (member, "/queries", 403),
        ]
        for person, path, status in pages:
            response = await person.get(path)
            assert response.status_code == status, path
            assert response.headers["content-type"].startswith("text/html"), path
            assert '<p class="error" role="alert">' in response.text, path
        api = [
            (erika, "/api/v1/no-such-endpoint", 404),
            (erika, "/api/v1/saved-queries/999", 404),
            (erika, "/api/v1/saved-queries/not-a-number", 422),
            (erika, "/api/v1/history?limit=0", 422),
            (erika, "/api/site/v1/tasks", 401),
            (member, "/api/v1/saved-queries", 403),
        ]
        for person, path, status in api:
            response = await person.api("GET", path)
            assert response.status_code == status, path
            assert response.headers["content-type"] == "application/json", path
            assert set(response.json()) == {"error"}, path


async def test_an_unexpected_failure_is_a_500_that_tells_nothing_of_the_internals(hub: HubFixture) -> None:
    app = hub.app()

    async def broken() -> None:
        raise RuntimeError("password=hunter2 at /srv/hub/secret.py line 7")

    app.add_api_route("/api/v1/broken", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # the server logs the traceback
    async with serving(app), httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        response = await client.get("/api/v1/broken")
        assert response.status_code == 500
        assert response.json() == {"error": "internal error"}


def _policy(response: httpx.Response) -> dict[str, list[str]]:
    directives = (part.split() for part in response.headers["content-security-policy"].split(";"))
    return {words[0]: words[1:] for words in directives if words}


def _allows(policy: dict[str, list[str]], kind: str, source: str) -> bool:
    allowed = policy.get(kind, policy.get("default-src", []))
    if source == "inline":
        return "'unsafe-inline'" in allowed
    parts = urlsplit(source)
    return (not parts.netloc and "'self'" in allowed) or f"{parts.scheme}://{parts.netloc}" in allowed


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_api_documentation_may_load_what_it_needs(hub: HubFixture, path: str) -> None:
    async with serving(hub.app()) as client:
        response = await client.get(path)
        policy = _policy(response)
        assert policy["frame-ancestors"] == ["'none'"]
        for tag in re.findall(r"<script[^>]*>", response.text):
            source = re.search(r'src="([^"]+)"', tag)
            assert _allows(policy, "script-src", source.group(1) if source else "inline"), tag
        for stylesheet in re.findall(
            r'<link[^>]*rel="stylesheet"[^>]*>|<link type="text/css"[^>]*>', response.text
        ):
            source = re.search(r'href="([^"]+)"', stylesheet)
            assert source and _allows(policy, "style-src", source.group(1)), stylesheet
        if "<style>" in response.text:
            assert _allows(policy, "style-src", "inline")


@pytest.mark.parametrize(
    "route", sorted(route for route, form in FORMS.items() if form.data(Setup(1, "drp_x")))
)
async def test_a_nul_character_in_any_form_field_is_refused_and_changes_nothing(
    hub: HubFixture, people: People, route: str, tmp_path: Path
) -> None:
    setup = _setup(hub, people, tmp_path)
    form = FORMS[route]
    path, data = form.path.format_map(vars(setup)), form.data(setup)
    app = hub.app(upload_folder=str(tmp_path))
    async with serving(app), browser(app) as office:
        await office.login("office@example.org")
        before = database_contents(hub)
        for name, value in data.items():
            response = await office.submit(path, {**data, name: value + "\x00"})
            assert response.status_code == 400, (name, response.text)
            assert response.headers["content-type"].startswith("text/html")
            assert f"{name}: must not contain the character NUL" in response.text
            assert database_contents(hub) == before, name


async def test_a_nul_character_in_an_audit_filter_or_a_saved_querys_name_is_refused(
    hub: HubFixture, people: People
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    app = hub.app()
    async with serving(app), browser(app) as office:
        await office.login("office@example.org")
        for name in ("action", "actor_filter", "day"):
            response = await office.get("/admin/audit", params={name: "login\x00"})
            assert response.status_code == 400, name
            assert f"{name}: must not contain the character NUL" in response.text
        response = await office.api(
            "POST", "/api/v1/saved-queries", {"name": "Alte\x00", "query": older_than(50)}
        )
        assert response.status_code == 422
        assert response.json()["error"].startswith("name: ")
        saved = await office.api("POST", "/api/v1/saved-queries", {"name": "Alte", "query": older_than(50)})
        response = await office.api("PATCH", f"/api/v1/saved-queries/{saved.json()['id']}", {"name": "\x00"})
        assert response.status_code == 422
        assert response.json()["error"].startswith("name: ")
