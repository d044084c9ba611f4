"""Who may use what: every page and API endpoint of the hub, asked by every kind of person.

The table below is the specification (the README's "Roles" table is written from it, and a test keeps
the two equal). It must name every route of the app: a new route without an entry fails the test, so
nobody adds a page without deciding who may open it. Each cell is checked by a real request, with a
fresh session, on objects that belong to the researcher (a saved query, a query), on site uk-a, and on
a new pending account, filled in so that it succeeds where it is allowed.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from datenraum.deidentify.package import new_recipient_key
from datenraum.hub.accounts.audit import AuditSource
from datenraum.hub.accounts.service import PortalRoleHolders, Site, User
from datenraum.hub.feasibility.saved_queries import SavedQueries
from datenraum.hub.proposals.sample_requests import Collection, SampleRequestForm, SampleRequests
from datenraum.hub.proposals.values import Analysis, DocumentKind
from datenraum.hub.proposals.workflow import Action
from datenraum.hub.roles import Actor, Role
from datenraum.hub.runtime import CSRF_HEADER, SESSION_COOKIE
from datenraum.hub.samples.service import SampleSearches
from datenraum.hub.studies.randomisation import Randomisations
from datenraum.hub.studies.service import Studies, StudySetUp
from datenraum.protocol.messages import TaskResult, TaskState
from datenraum.protocol.studies import StudyRole

from .helpers import HubFixture, older_than, serving
from .portal_helpers import PASSWORD, People, UseAndAccess, browser, link_in, routes
from .proposals_helpers import ETHICS_VOTE
from .studies_helpers import FORM_URL, SEED, SMALL_DICTIONARY, arms, baseline_form

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fast_passwords")]

README = Path(__file__).resolve().parents[2] / "README.md"

STUDY_SETUP = AuditSource(None, "test setup")
TASK = "6f1c7b52-0000-4000-8000-000000000000"  # a task id no site has
ROLES = ("anonymous", "pending account", "researcher", "site-admin of uk-a", "committee", "admin")
OK, LOGIN, E401, E403, E404 = "allowed", "login", "401", "403", "404"
ANYONE = (OK,) * 6
SIGNED_IN = (LOGIN, LOGIN, OK, OK, OK, OK)
QUERYING = (LOGIN, LOGIN, OK, E403, E403, OK)
OFFICE = (LOGIN, LOGIN, E403, E403, E403, OK)
API_QUERYING = (E401, E401, OK, E403, E403, OK)
API_OWN = (E401, E401, OK, E403, E403, E404)  # saved queries are personal, also to the office
SITES_ONLY = (E401,) * 6  # a person's sign-in is no site credential
PUBLIC_API = ANYONE
NOT_SET_UP = (E404,) * 6  # single sign-on, on a hub without an identity provider
WRITING = (LOGIN, LOGIN, OK, E403, E403, E403)  # proposals are written by researchers alone
# Studies: the researcher leads the study (and any they set up), the office is its statistician; the
# others have no role in it, so for them there is no such study.
STUDY_READ = (LOGIN, LOGIN, OK, E404, E404, OK)
STUDY_LEAD = (LOGIN, LOGIN, OK, E404, E404, E403)
STUDY_STATISTICS = (LOGIN, LOGIN, E403, E404, E404, OK)
API_STUDY_READ = (E401, E401, OK, E404, E404, OK)
API_STUDY_LEAD = (E401, E401, OK, E404, E404, E403)
API_STUDY_STATISTICS = (E401, E401, E403, E404, E404, OK)

# fmt: off
MATRIX: dict[tuple[str, str], tuple[str, ...]] = {
    # public pages and documents
    ("GET", "/"): ANYONE,
    ("GET", "/login"): ANYONE,
    ("POST", "/login"): ANYONE,
    ("GET", "/register"): ANYONE,
    ("POST", "/register"): ANYONE,
    ("GET", "/password/forgot"): ANYONE,
    ("POST", "/password/forgot"): ANYONE,
    ("GET", "/password/reset"): ANYONE,
    ("POST", "/password/reset"): ANYONE,
    ("POST", "/language"): ANYONE,
    ("GET", "/static/*"): ANYONE,
    ("GET", "/openapi.json"): ANYONE,
    ("GET", "/docs"): ANYONE,
    ("GET", "/docs/oauth2-redirect"): ANYONE,
    ("GET", "/redoc"): ANYONE,
    # one's own account
    ("POST", "/logout"): SIGNED_IN,
    ("GET", "/account"): SIGNED_IN,
    ("POST", "/account/password"): SIGNED_IN,
    ("POST", "/account/token"): SIGNED_IN,
    # the query builder and the researcher's queries
    ("GET", "/queries/new"): QUERYING,
    ("GET", "/queries"): QUERYING,
    ("GET", "/queries/saved/{saved_id}"): (LOGIN, LOGIN, OK, E403, E403, E404),
    # the coordination office
    ("GET", "/admin/accounts"): OFFICE,
    ("POST", "/admin/accounts/{user_id}/status"): OFFICE,
    ("POST", "/admin/accounts/{user_id}/roles"): OFFICE,
    ("GET", "/admin/sites"): OFFICE,
    ("POST", "/admin/sites"): OFFICE,
    ("POST", "/admin/sites/{name}/{change}"): OFFICE,
    ("GET", "/admin/audit"): OFFICE,
    ("GET", "/admin/outbox"): OFFICE,
    # site administrators (the office manages sites on its own pages)
    ("GET", "/site-admin"): (LOGIN, LOGIN, E403, OK, E403, E403),
    ("POST", "/site-admin/{name}/{change}"): (LOGIN, LOGIN, E403, OK, E403, E403),
    # the researcher API
    ("POST", "/api/v1/queries"): API_QUERYING,
    ("GET", "/api/v1/queries/{query_id}"): API_QUERYING,
    ("GET", "/api/v1/queries/{query_id}/events"): API_QUERYING,
    ("GET", "/api/v1/sites"): (E401, E401, OK, OK, OK, OK),
    ("GET", "/api/v1/history"): API_QUERYING,
    ("GET", "/api/v1/saved-queries"): API_QUERYING,
    ("POST", "/api/v1/saved-queries"): API_QUERYING,
    ("GET", "/api/v1/saved-queries/{saved_id}"): API_OWN,
    ("PATCH", "/api/v1/saved-queries/{saved_id}"): API_OWN,
    ("DELETE", "/api/v1/saved-queries/{saved_id}"): API_OWN,
    ("GET", "/api/v1/saved-queries/{saved_id}/export"): API_OWN,
    ("POST", "/api/v1/saved-queries/{saved_id}/duplicate"): API_OWN,
    ("GET", "/api/v1/concepts"): API_QUERYING,
    ("POST", "/api/v1/concepts/resolve"): API_QUERYING,
    # federated analysis: the researcher's approved "federated analysis only" projects (the delivered one)
    ("GET", "/api/v1/analysis/projects"): (E401, E401, OK, E403, E403, E403),
    ("GET", "/api/v1/analysis/projects/{project_id}"): (E401, E401, OK, E403, E403, E403),
    # a project that is no one's here: running an analysis is tested over real agents (tests/federation)
    ("POST", "/api/v1/analysis/projects/{project_id}/{operation}"): (E401, E401, E404, E403, E403, E403),
    # the portal's analysis workspace (its runs over real agents: tests/e2e/test_analysis_workspace.py)
    ("GET", "/analysis"): WRITING,
    ("GET", "/analysis/{project_id}"): WRITING,
    ("POST", "/analysis/{project_id}/survival"): (LOGIN, LOGIN, E404, E403, E403, E403),
    # single sign-on
    ("GET", "/login/sso"): NOT_SET_UP,
    ("GET", "/login/sso/callback"): NOT_SET_UP,
    # Use & Access: the researcher's proposal, submitted with site uk-a, unless it says otherwise
    ("GET", "/proposals"): SIGNED_IN,
    ("GET", "/proposals/waiting"): SIGNED_IN,
    ("GET", "/proposals/new"): WRITING,
    ("POST", "/proposals/new"): WRITING,
    ("GET", "/proposals/{proposal_id}"): SIGNED_IN,
    ("GET", "/proposals/{proposal_id}/edit"): WRITING,  # a draft
    ("POST", "/proposals/{proposal_id}/edit"): WRITING,  # a draft
    ("POST", "/proposals/{proposal_id}/documents"): SIGNED_IN,
    ("GET", "/proposals/{proposal_id}/documents/{document_id}"): SIGNED_IN,
    ("GET", "/proposals/{proposal_id}/export.json"): SIGNED_IN,
    ("GET", "/proposals/{proposal_id}/export.pdf"): SIGNED_IN,
    ("POST", "/proposals/{proposal_id}/actions/{name}"): WRITING,  # withdraw
    ("POST", "/proposals/{proposal_id}/comments"): SIGNED_IN,
    ("POST", "/proposals/{proposal_id}/publications"): WRITING,  # delivered
    ("GET", "/notifications"): SIGNED_IN,
    ("POST", "/notifications/read"): SIGNED_IN,
    # the network directory: public to read, kept by the coordination office
    ("GET", "/directory"): ANYONE,
    ("GET", "/directory/sites/{slug}"): ANYONE,
    ("GET", "/directory/entries/{slug}"): ANYONE,
    ("GET", "/api/v1/directory"): PUBLIC_API,
    ("GET", "/api/v1/directory/sites"): PUBLIC_API,
    ("GET", "/api/v1/directory/sites/{slug}"): PUBLIC_API,
    ("GET", "/api/v1/directory/entries"): PUBLIC_API,
    ("GET", "/api/v1/directory/entries/{slug}"): PUBLIC_API,
    ("POST", "/admin/directory/sites"): OFFICE,
    ("POST", "/admin/directory/sites/{slug}/delete"): OFFICE,
    ("POST", "/admin/directory/entries"): OFFICE,
    ("POST", "/admin/directory/entries/{slug}/delete"): OFFICE,
    ("POST", "/admin/directory/participations"): OFFICE,
    # the FAIR catalogue: public documents and pages
    ("GET", "/catalog"): PUBLIC_API,
    ("GET", "/catalog.{suffix}"): PUBLIC_API,
    ("GET", "/catalog/validation"): PUBLIC_API,
    ("GET", "/catalog/public"): PUBLIC_API,
    ("GET", "/catalog/public.{suffix}"): PUBLIC_API,
    ("GET", "/catalog/datasets/{name}"): PUBLIC_API,
    ("GET", "/catalog/harvested/{name}"): (E404,) * 6,  # none harvested in this world
    ("GET", "/catalogue"): ANYONE,
    ("GET", "/catalogue/datasets/{dataset_id}"): ANYONE,
    # the sample locator: the researcher's search (the office reads every search, as every query)
    ("GET", "/samples"): QUERYING,
    ("POST", "/samples"): QUERYING,
    ("GET", "/samples/{search_id}"): QUERYING,
    # into the researcher's draft, which the office does not see
    ("POST", "/samples/{search_id}/request"): (LOGIN, LOGIN, OK, E403, E403, E404),
    ("POST", "/api/v1/sample-searches"): API_QUERYING,
    ("GET", "/api/v1/sample-searches/{search_id}"): API_QUERYING,
    # sample request items: of the researcher's submitted proposal; the step is the office's (contact)
    ("GET", "/proposals/{proposal_id}/samples"): SIGNED_IN,
    ("POST", "/proposals/{proposal_id}/samples/{item_id}"): OFFICE,
    # the site API
    ("GET", "/api/site/v1/metadata-tasks"): SITES_ONLY,
    ("POST", "/api/site/v1/metadata-tasks/{task_id}/result"): SITES_ONLY,
    # the crisis dashboard: public pages and downloads, a site's own view, the office's crisis mode
    ("GET", "/dashboard"): ANYONE,
    ("GET", "/dashboard/{disease}"): ANYONE,
    ("GET", "/dashboard/sites/{name}"): (LOGIN, LOGIN, E404, OK, E404, E404),
    ("GET", "/admin/dashboard"): OFFICE,
    ("POST", "/admin/dashboard/definitions"): OFFICE,
    ("POST", "/admin/dashboard/run"): OFFICE,
    ("GET", "/api/v1/dashboard"): PUBLIC_API,
    ("GET", "/api/v1/dashboard/{disease}/{indicator}.json"): PUBLIC_API,
    ("GET", "/api/v1/dashboard/{disease}/{indicator}.csv"): PUBLIC_API,
    # data delivery: the office starts it, the site's custodian releases, the project's team downloads
    ("POST", "/api/v1/deliveries"): (E401, E401, E403, E403, E403, OK),
    ("GET", "/api/v1/deliveries/{proposal_id}"): (E401, E401, OK, OK, E404, OK),
    ("POST", "/api/v1/deliveries/parts/{task_id}/release"): (E401, E401, E403, OK, E403, E403),
    ("POST", "/api/v1/deliveries/parts/{task_id}/reject"): (E401, E401, E403, OK, E403, E403),
    ("GET", "/api/v1/deliveries/{proposal_id}/download"): (E401, E401, OK, E404, E404, E404),
    ("GET", "/deliveries/release"): (LOGIN, LOGIN, E403, OK, E403, E403),
    ("POST", "/deliveries/parts/{task_id}/decision"): (LOGIN, LOGIN, E403, OK, E403, E403),
    ("GET", "/deliveries/{proposal_id}"): (LOGIN, LOGIN, OK, OK, E404, OK),
    ("GET", "/deliveries/{proposal_id}/download"): (LOGIN, LOGIN, OK, E404, E404, E404),
    ("GET", "/api/site/v1/deliveries"): SITES_ONLY,
    ("GET", "/api/site/v1/deliveries/{task_id}/upload"): SITES_ONLY,
    ("PUT", "/api/site/v1/deliveries/{task_id}/upload"): SITES_ONLY,
    ("POST", "/api/site/v1/deliveries/{task_id}/complete"): SITES_ONLY,
    ("GET", "/api/v1/dashboard/schema.json"): PUBLIC_API,
    ("GET", "/api/v1/dashboard/{disease}/exports/4ce-dailycounts.csv"): PUBLIC_API,
    ("GET", "/api/v1/dashboard/{disease}/exports/rki-weekly.csv"): PUBLIC_API,
    ("GET", "/dashboard/{disease}/charts/{name}.{suffix}"): ANYONE,
    ("GET", "/catalogue/harvest"): ANYONE,
    ("POST", "/catalogue/harvest"): OFFICE,
    ("GET", "/api/site/v1/tasks"): SITES_ONLY,
    ("POST", "/api/site/v1/tasks/{task_id}/result"): SITES_ONLY,
    ("POST", "/api/site/v1/heartbeat"): SITES_ONLY,
    # prospective studies: set-up, design, forms and roles by the study lead, randomisation by the statistician
    ("GET", "/studies"): SIGNED_IN,
    ("POST", "/studies"): (LOGIN, LOGIN, OK, E403, E403, OK),
    ("GET", "/studies/redcap"): SIGNED_IN,
    ("POST", "/studies/redcap"): (LOGIN, LOGIN, OK, E403, E403, OK),
    ("GET", "/studies/lforms/{name:path}"): ANYONE,
    ("GET", "/studies/{code}"): STUDY_READ,
    ("POST", "/studies/{code}/setup"): STUDY_LEAD,
    ("POST", "/studies/{code}/sites"): STUDY_LEAD,
    ("POST", "/studies/{code}/roles"): STUDY_LEAD,
    ("POST", "/studies/{code}/roles/{grant_id}/revoke"): STUDY_LEAD,
    ("POST", "/studies/{code}/status"): STUDY_LEAD,
    ("GET", "/studies/{code}/design"): STUDY_READ,
    ("POST", "/studies/{code}/design"): STUDY_LEAD,
    ("GET", "/studies/{code}/designer"): STUDY_READ,
    ("GET", "/studies/{code}/randomisation"): STUDY_STATISTICS,
    ("POST", "/studies/{code}/randomisation"): STUDY_STATISTICS,
    ("POST", "/studies/{code}/randomisation/sequence"): STUDY_STATISTICS,
    ("GET", "/api/v1/studies"): (E401, E401, OK, OK, OK, OK),
    ("POST", "/api/v1/studies"): (E401, E401, OK, E403, E403, OK),
    ("GET", "/api/v1/studies/{code}"): API_STUDY_READ,
    ("PUT", "/api/v1/studies/{code}"): API_STUDY_LEAD,
    ("PUT", "/api/v1/studies/{code}/sites"): API_STUDY_LEAD,
    ("PUT", "/api/v1/studies/{code}/arms"): API_STUDY_LEAD,
    ("POST", "/api/v1/studies/{code}/forms"): API_STUDY_LEAD,
    ("GET", "/api/v1/studies/{code}/forms/{version}"): API_STUDY_READ,
    ("POST", "/api/v1/studies/{code}/roles"): API_STUDY_LEAD,
    ("DELETE", "/api/v1/studies/{code}/roles/{grant_id}"): API_STUDY_LEAD,
    ("POST", "/api/v1/studies/{code}/status"): API_STUDY_LEAD,
    ("GET", "/api/v1/studies/{code}/randomisation"): API_STUDY_STATISTICS,
    ("PUT", "/api/v1/studies/{code}/randomisation"): API_STUDY_STATISTICS,
    ("POST", "/api/v1/studies/{code}/randomisation/sequence"): API_STUDY_STATISTICS,
    ("GET", "/api/site/v1/studies"): SITES_ONLY,
    ("POST", "/api/site/v1/studies/{study_id}/allocations"): SITES_ONLY,
    ("POST", "/api/site/v1/studies/{study_id}/enrolment"): SITES_ONLY,
}
# fmt: on


@dataclass(frozen=True)
class Call:
    path: str
    form: dict[str, str] | None = None
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None


@dataclass
class World:
    """The people and objects the requests are about."""

    hub: HubFixture
    people: People
    user_ids: dict[str, int]
    researcher: User
    query_id: str
    objects: UseAndAccess
    deliveries: Path
    numbers: itertools.count = field(default_factory=itertools.count)
    search_id: str | None = None
    study_code: str | None = None

    def unique(self, stem: str) -> str:
        return f"{stem}{next(self.numbers)}"

    def saved_query(self) -> int:
        return (
            SavedQueries(self.hub.sessions, self.hub.clock).save(self.researcher, "Alte", older_than(50)).id
        )

    def pending_account(self) -> int:
        return self.people.register(self.unique("applicant") + "@example.org")

    def reset_token(self) -> str:
        email = self.unique("reset") + "@example.org"  # one each: reset requests are limited per address
        self.people.approved(email)
        self.people.users.request_reset(email, "http://hub/password/reset", "")
        return link_in(self.people.messages(email)[0]).split("token=")[1]

    def acting(self, role: str) -> Actor:
        return self.people.acting(self.user_ids[role])

    def draft(self) -> int:
        return self.objects.draft(self.acting("researcher"))

    def submitted(self) -> tuple[int, int]:
        """A proposal of the researcher's, submitted with site uk-a, and the id of its ethics vote."""
        return self.objects.submitted(self.acting("researcher"))

    def delivered(self) -> int:
        roles = ("researcher", "admin", "committee", "site-admin of uk-a")
        return self.objects.delivered(*map(self.acting, roles))

    def sample_search(self) -> str:
        """A sample search of the researcher's, answered by uk-a with one biobank `bb-a` (one for all
        calls: searches count against the researcher's quota)."""
        if self.search_id is not None:
            return self.search_id
        searches = SampleSearches(self.hub.sessions, self.hub.config, self.hub.clock)
        search_id, _ = searches.submit(self.researcher, None, {}, ["uk-a"])
        site = Site(self.objects.site_id, "uk-a")
        count = {"obfuscated": 40}
        answer = {
            "patients": count,
            "specimens": count,
            "samples": count,
            "biobanks": [{"biobank": "bb-a", "name": "Biobank A", "patients": count}],
            "cells": [
                {"biobank": "bb-a", "category": "blood-plasma", "temperature": "LN", "patients": count}
            ],
        }
        for task in searches.claim(site):
            searches.record(site, task.id, TaskResult(task.id, TaskState.ANSWERED, samples=answer))
        self.search_id = search_id
        return search_id

    def approved_sample_item(self) -> tuple[int, int]:
        """A request item of the researcher's proposal, approved by the committee: it waits for the office."""
        owner, office = self.acting("researcher"), self.acting("admin")
        proposal_id = self.objects.draft(owner)
        form = SampleRequestForm(
            self.objects.site_id, "Biobank A", 10, 1, ("blood-plasma",), "1 ml", Collection.RETROSPECTIVE
        )
        item_id = SampleRequests(self.hub.sessions, PortalRoleHolders(), self.hub.clock).add(
            owner, proposal_id, form
        )
        proposals = self.objects.proposals
        proposals.upload(owner, proposal_id, DocumentKind.ETHICS_VOTE, "votum.pdf", ETHICS_VOTE)
        proposals.apply(owner, proposal_id, Action.SUBMIT)
        for actor, action in (
            (office, Action.START_FORMAL_CHECK),
            (office, Action.FORWARD_TO_COMMITTEE),
            (self.acting("committee"), Action.VOTE_APPROVE),
        ):
            proposals.apply(actor, proposal_id, action)
        return proposal_id, item_id

    def directory_site(self) -> str:
        return self.objects.directory_site(self.acting("admin"))

    def _delivery_people(self) -> tuple[Actor, Actor, Actor, Actor]:
        return tuple(map(self.acting, ("researcher", "admin", "committee", "site-admin of uk-a")))  # type: ignore[return-value]

    def awaiting_release(self) -> tuple[int, str]:
        return self.objects.awaiting_release(self.hub, self.deliveries, self._delivery_people(), "uk-a")

    def downloadable(self) -> int:
        return self.objects.downloadable(self.hub, self.deliveries, self._delivery_people(), "uk-a")

    def ready_for_delivery(self) -> int:
        """A data-delivery proposal that uk-a agreed to, without a delivery yet."""
        owner, office, committee, site_admin = self._delivery_people()
        proposal_id, _ = self.objects.submitted(owner, Analysis.DATA_DELIVERY)
        for actor, action in (
            (office, Action.START_FORMAL_CHECK),
            (office, Action.FORWARD_TO_COMMITTEE),
            (committee, Action.VOTE_APPROVE),
            (office, Action.REQUEST_SITE_DECISIONS),
            (site_admin, Action.SITE_AGREE),
        ):
            self.objects.proposals.apply(actor, proposal_id, action, site_id=self.objects.site_id)
        return proposal_id

    def directory_entry(self) -> str:
        return self.objects.directory_entry(self.acting("admin"))

    def user(self, role: str) -> User:
        user = self.people.users.session_user(self.people.session_for(self.user_ids[role]))
        assert user is not None
        return user

    def new_study(self) -> str:
        """A planned study at uk-a led by the researcher, with arms A and B (a visit with the baseline
        form each) and the office as statistician, who set the scheme with SEED."""
        studies, lead = Studies(self.hub.sessions, self.hub.clock), self.user("researcher")
        code = self.unique("study-")
        studies.create(lead, code, StudySetUp("Matrix", "M"), STUDY_SETUP)
        studies.set_sites(lead, code, ["uk-a"], STUDY_SETUP)
        studies.publish_form(lead, code, baseline_form(), STUDY_SETUP)
        studies.set_design(lead, code, arms("A", "B"), STUDY_SETUP)
        studies.grant(lead, code, "office@example.org", StudyRole.STATISTICIAN, None, STUDY_SETUP)
        randomisations = Randomisations(
            self.hub.sessions, Path(self.hub.config.study_key_file), self.hub.clock
        )
        randomisations.set_scheme(self.user("admin"), code, [2], {}, [], SEED, STUDY_SETUP)
        return code

    def study(self) -> str:
        """The researcher's study of every call that leaves it as it can be used again."""
        if self.study_code is None:
            self.study_code = self.new_study()
        return self.study_code

    def study_grant(self) -> tuple[str, int]:
        """The study and a new monitor role in it, to revoke."""
        code, email = self.study(), self.unique("monitor") + "@example.org"
        studies = Studies(self.hub.sessions, self.hub.clock)
        studies.grant(self.user("researcher"), code, email, StudyRole.MONITOR, "uk-a", STUDY_SETUP)
        grant = next(g for g in studies.view(self.user("researcher"), code).roles if g.email == email)
        return code, grant.id


def _registration(world: World) -> dict[str, str]:
    email = world.unique("new") + "@example.org"
    return {
        "name": "Max",
        "institution": "UK",
        "email": email,
        "password": PASSWORD,
        "password_repeat": PASSWORD,
    }


def _new_password(current: str, value: str) -> dict[str, str]:
    return {current: value, "password": PASSWORD, "password_repeat": PASSWORD}


_CALLS: dict[tuple[str, str], Callable[[World], Call]] = {
    ("GET", "/"): lambda w: Call("/"),
    ("GET", "/login"): lambda w: Call("/login"),
    ("POST", "/login"): lambda w: Call("/login", {"email": "signin@example.org", "password": PASSWORD}),
    ("GET", "/register"): lambda w: Call("/register"),
    ("POST", "/register"): lambda w: Call("/register", _registration(w)),
    ("GET", "/password/forgot"): lambda w: Call("/password/forgot"),
    ("POST", "/password/forgot"): lambda w: Call(
        "/password/forgot", {"email": w.unique("reset") + "@example.org"}
    ),
    ("GET", "/password/reset"): lambda w: Call("/password/reset?token=drp_x"),
    ("POST", "/password/reset"): lambda w: Call("/password/reset", _new_password("token", w.reset_token())),
    ("POST", "/language"): lambda w: Call("/language", {"language": "en", "back": "/"}),
    ("GET", "/static/*"): lambda w: Call("/static/portal.css"),
    ("GET", "/openapi.json"): lambda w: Call("/openapi.json"),
    ("GET", "/docs"): lambda w: Call("/docs"),
    ("GET", "/docs/oauth2-redirect"): lambda w: Call("/docs/oauth2-redirect"),
    ("GET", "/redoc"): lambda w: Call("/redoc"),
    ("POST", "/logout"): lambda w: Call("/logout", {}),
    ("GET", "/account"): lambda w: Call("/account"),
    ("POST", "/account/password"): lambda w: Call("/account/password", _new_password("current", PASSWORD)),
    ("POST", "/account/token"): lambda w: Call("/account/token", {}),
    ("GET", "/queries/new"): lambda w: Call("/queries/new"),
    ("GET", "/queries"): lambda w: Call("/queries"),
    ("GET", "/queries/saved/{saved_id}"): lambda w: Call(f"/queries/saved/{w.saved_query()}"),
    ("GET", "/admin/accounts"): lambda w: Call("/admin/accounts"),
    ("POST", "/admin/accounts/{user_id}/status"): lambda w: Call(
        f"/admin/accounts/{w.pending_account()}/status", {"status": "approved"}
    ),
    ("POST", "/admin/accounts/{user_id}/roles"): lambda w: Call(
        f"/admin/accounts/{w.pending_account()}/roles", {"change": "grant", "role": "committee"}
    ),
    ("GET", "/admin/sites"): lambda w: Call("/admin/sites"),
    ("POST", "/admin/sites"): lambda w: Call("/admin/sites", {"name": w.unique("uk-new-")}),
    ("POST", "/admin/sites/{name}/{change}"): lambda w: Call("/admin/sites/uk-a/rotate", {}),
    ("GET", "/admin/audit"): lambda w: Call("/admin/audit?action=login"),
    ("GET", "/admin/outbox"): lambda w: Call("/admin/outbox"),
    ("GET", "/site-admin"): lambda w: Call("/site-admin"),
    ("POST", "/site-admin/{name}/{change}"): lambda w: Call("/site-admin/uk-a/rotate", {}),
    ("POST", "/api/v1/queries"): lambda w: Call("/api/v1/queries", json={"query": older_than(50)}),
    ("GET", "/api/v1/queries/{query_id}"): lambda w: Call(f"/api/v1/queries/{w.query_id}"),
    ("GET", "/api/v1/queries/{query_id}/events"): lambda w: Call(f"/api/v1/queries/{w.query_id}/events"),
    ("GET", "/api/v1/sites"): lambda w: Call("/api/v1/sites"),
    ("GET", "/api/v1/history"): lambda w: Call("/api/v1/history"),
    ("GET", "/api/v1/saved-queries"): lambda w: Call("/api/v1/saved-queries"),
    ("POST", "/api/v1/saved-queries"): lambda w: Call(
        "/api/v1/saved-queries", json={"name": "Alte", "query": older_than(50)}
    ),
    ("GET", "/api/v1/saved-queries/{saved_id}"): lambda w: Call(f"/api/v1/saved-queries/{w.saved_query()}"),
    ("PATCH", "/api/v1/saved-queries/{saved_id}"): lambda w: Call(
        f"/api/v1/saved-queries/{w.saved_query()}", json={"name": "Umbenannt"}
    ),
    ("DELETE", "/api/v1/saved-queries/{saved_id}"): lambda w: Call(
        f"/api/v1/saved-queries/{w.saved_query()}"
    ),
    ("GET", "/api/v1/saved-queries/{saved_id}/export"): lambda w: Call(
        f"/api/v1/saved-queries/{w.saved_query()}/export"
    ),
    ("POST", "/api/v1/saved-queries/{saved_id}/duplicate"): lambda w: Call(
        f"/api/v1/saved-queries/{w.saved_query()}/duplicate"
    ),
    ("GET", "/api/v1/concepts"): lambda w: Call("/api/v1/concepts?q=diabetes"),
    ("POST", "/api/v1/concepts/resolve"): lambda w: Call(
        "/api/v1/concepts/resolve", json={"criteria": older_than(50)["inclusionCriteria"][0]}
    ),
    ("GET", "/api/v1/analysis/projects"): lambda w: Call("/api/v1/analysis/projects"),
    ("GET", "/api/v1/analysis/projects/{project_id}"): lambda w: Call(
        f"/api/v1/analysis/projects/{w.delivered()}"
    ),
    ("POST", "/api/v1/analysis/projects/{project_id}/{operation}"): lambda w: Call(
        "/api/v1/analysis/projects/2147483000/summary", json={"variables": ["age"]}
    ),
    ("GET", "/analysis"): lambda w: Call("/analysis"),
    ("GET", "/analysis/{project_id}"): lambda w: Call(f"/analysis/{w.delivered()}"),
    ("POST", "/analysis/{project_id}/survival"): lambda w: Call(
        "/analysis/2147483000/survival", {"start": "admission", "event": "death", "bin_width": "30"}
    ),
    ("GET", "/login/sso"): lambda w: Call("/login/sso"),
    ("GET", "/login/sso/callback"): lambda w: Call("/login/sso/callback?code=x&state=y"),
    ("GET", "/proposals"): lambda w: Call("/proposals"),
    ("GET", "/proposals/waiting"): lambda w: Call("/proposals/waiting"),
    ("GET", "/proposals/new"): lambda w: Call("/proposals/new"),
    ("POST", "/proposals/new"): lambda w: Call("/proposals/new", {"title": "Ein Entwurf"}),
    ("GET", "/proposals/{proposal_id}"): lambda w: Call(f"/proposals/{w.submitted()[0]}"),
    ("GET", "/proposals/{proposal_id}/edit"): lambda w: Call(f"/proposals/{w.draft()}/edit"),
    ("POST", "/proposals/{proposal_id}/edit"): lambda w: Call(
        f"/proposals/{w.draft()}/edit", {"title": "Umbenannt"}
    ),
    ("POST", "/proposals/{proposal_id}/documents"): lambda w: Call(
        f"/proposals/{w.submitted()[0]}/documents",
        {"kind": DocumentKind.ETHICS_VOTE.value},
        files={"file": ("votum-neu.pdf", ETHICS_VOTE, "application/pdf")},
    ),
    ("GET", "/proposals/{proposal_id}/documents/{document_id}"): lambda w: Call(
        "/proposals/{}/documents/{}".format(*w.submitted())
    ),
    ("GET", "/proposals/{proposal_id}/export.json"): lambda w: Call(
        f"/proposals/{w.submitted()[0]}/export.json"
    ),
    ("GET", "/proposals/{proposal_id}/export.pdf"): lambda w: Call(
        f"/proposals/{w.submitted()[0]}/export.pdf"
    ),
    ("POST", "/proposals/{proposal_id}/actions/{name}"): lambda w: Call(
        f"/proposals/{w.submitted()[0]}/actions/withdraw", {}
    ),
    ("POST", "/proposals/{proposal_id}/comments"): lambda w: Call(
        f"/proposals/{w.submitted()[0]}/comments", {"text": "Eine Frage zum Zeitplan"}
    ),
    ("POST", "/proposals/{proposal_id}/publications"): lambda w: Call(
        f"/proposals/{w.delivered()}/publications",
        {"title": "Niere nach Diabetes", "reference": "https://doi.org/10.1000/182"},
    ),
    ("GET", "/notifications"): lambda w: Call("/notifications"),
    ("POST", "/notifications/read"): lambda w: Call("/notifications/read", {"all": "1"}),
    ("GET", "/directory"): lambda w: Call("/directory?q=koeln"),
    ("GET", "/directory/sites/{slug}"): lambda w: Call(f"/directory/sites/{w.directory_site()}"),
    ("GET", "/directory/entries/{slug}"): lambda w: Call(f"/directory/entries/{w.directory_entry()}"),
    ("GET", "/api/v1/directory"): lambda w: Call("/api/v1/directory"),
    ("GET", "/api/v1/directory/sites"): lambda w: Call("/api/v1/directory/sites?q=test"),
    ("GET", "/api/v1/directory/sites/{slug}"): lambda w: Call(
        f"/api/v1/directory/sites/{w.directory_site()}"
    ),
    ("GET", "/api/v1/directory/entries"): lambda w: Call("/api/v1/directory/entries?kind=project"),
    ("GET", "/api/v1/directory/entries/{slug}"): lambda w: Call(
        f"/api/v1/directory/entries/{w.directory_entry()}"
    ),
    ("POST", "/admin/directory/sites"): lambda w: Call(
        "/admin/directory/sites",
        {"slug": w.unique("uk-neu-"), "name": "Uniklinik Neu", "city": "Neustadt", "contact": "Büro"},
    ),
    ("POST", "/admin/directory/sites/{slug}/delete"): lambda w: Call(
        f"/admin/directory/sites/{w.directory_site()}/delete", {}
    ),
    ("POST", "/admin/directory/entries"): lambda w: Call(
        "/admin/directory/entries",
        {"slug": w.unique("neu-"), "kind": "project", "acronym": "NEU", "name": "Neues Projekt"},
    ),
    ("POST", "/admin/directory/entries/{slug}/delete"): lambda w: Call(
        f"/admin/directory/entries/{w.directory_entry()}/delete", {}
    ),
    ("POST", "/admin/directory/participations"): lambda w: Call(
        "/admin/directory/participations",
        {"site": w.directory_site(), "entry": w.directory_entry(), "role": "Partner"},
    ),
    ("GET", "/catalog"): lambda w: Call("/catalog?page_size=10"),
    ("GET", "/catalog.{suffix}"): lambda w: Call("/catalog.jsonld"),
    ("GET", "/catalog/validation"): lambda w: Call("/catalog/validation"),
    ("GET", "/catalog/public"): lambda w: Call("/catalog/public"),
    ("GET", "/catalog/public.{suffix}"): lambda w: Call("/catalog/public.rdf"),
    ("GET", "/catalog/datasets/{name}"): lambda w: Call("/catalog/datasets/site-uk-a.ttl"),
    ("GET", "/catalog/harvested/{name}"): lambda w: Call("/catalog/harvested/1.ttl"),
    ("GET", "/catalogue"): lambda w: Call("/catalogue?type=site"),
    ("GET", "/catalogue/datasets/{dataset_id}"): lambda w: Call("/catalogue/datasets/site-uk-a"),
    ("GET", "/api/site/v1/metadata-tasks"): lambda w: Call("/api/site/v1/metadata-tasks"),
    ("POST", "/api/site/v1/metadata-tasks/{task_id}/result"): lambda w: Call(
        "/api/site/v1/metadata-tasks/some-task/result",
        json={"task_id": "some-task", "state": "failed", "reason": "no"},
    ),
    ("GET", "/dashboard"): lambda w: Call("/dashboard"),
    ("GET", "/dashboard/{disease}"): lambda w: Call("/dashboard/influenza"),
    ("GET", "/dashboard/sites/{name}"): lambda w: Call("/dashboard/sites/uk-a"),
    ("GET", "/admin/dashboard"): lambda w: Call("/admin/dashboard"),
    ("POST", "/admin/dashboard/definitions"): lambda w: Call(
        "/admin/dashboard/definitions",
        {
            "kind": "disease",
            "body": '{"id": "mpox", "title": "Mpox", "start": "2022-05-01", "marker": {"icd10gm": ["B04"]}}',
        },
    ),
    ("POST", "/admin/dashboard/run"): lambda w: Call("/admin/dashboard/run", {}),
    ("GET", "/api/v1/dashboard/schema.json"): lambda w: Call("/api/v1/dashboard/schema.json"),
    ("GET", "/api/v1/dashboard/{disease}/exports/4ce-dailycounts.csv"): lambda w: Call(
        "/api/v1/dashboard/covid19/exports/4ce-dailycounts.csv"
    ),
    ("GET", "/api/v1/dashboard/{disease}/exports/rki-weekly.csv"): lambda w: Call(
        "/api/v1/dashboard/covid19/exports/rki-weekly.csv"
    ),
    ("GET", "/dashboard/{disease}/charts/{name}.{suffix}"): lambda w: Call(
        "/dashboard/covid19/charts/c3.svg"
    ),
    ("GET", "/catalogue/harvest"): lambda w: Call("/catalogue/harvest"),
    # A catalogue nobody serves: the office is told why on the page, nothing is stored.
    ("POST", "/catalogue/harvest"): lambda w: Call(
        "/catalogue/harvest", {"url": "http://127.0.0.1:9/catalog.ttl", "title": ""}
    ),
    ("GET", "/api/v1/dashboard"): lambda w: Call("/api/v1/dashboard"),
    ("GET", "/api/v1/dashboard/{disease}/{indicator}.json"): lambda w: Call(
        "/api/v1/dashboard/covid19/new_inpatient_cases.json"
    ),
    ("GET", "/api/v1/dashboard/{disease}/{indicator}.csv"): lambda w: Call("/api/v1/dashboard/rsv/tests.csv"),
    ("GET", "/samples"): lambda w: Call("/samples"),
    ("POST", "/samples"): lambda w: Call("/samples", {"category": "blood"}),
    ("GET", "/samples/{search_id}"): lambda w: Call(f"/samples/{w.sample_search()}"),
    ("POST", "/samples/{search_id}/request"): lambda w: Call(
        f"/samples/{w.sample_search()}/request",
        {
            "proposal": str(w.draft()),
            "item": f"{w.objects.site_id}|bb-a",
            "donors": "10",
            "samples_per_donor": "1",
            "volume": "0,5 ml",
            "collection": "retrospective",
        },
    ),
    ("POST", "/api/v1/sample-searches"): lambda w: Call("/api/v1/sample-searches", json={"samples": {}}),
    ("GET", "/api/v1/sample-searches/{search_id}"): lambda w: Call(
        f"/api/v1/sample-searches/{w.sample_search()}"
    ),
    ("GET", "/proposals/{proposal_id}/samples"): lambda w: Call(f"/proposals/{w.submitted()[0]}/samples"),
    ("POST", "/proposals/{proposal_id}/samples/{item_id}"): lambda w: Call(
        "/proposals/{}/samples/{}".format(*w.approved_sample_item()), {"event": "contact"}
    ),
    ("GET", "/api/site/v1/tasks"): lambda w: Call("/api/site/v1/tasks?wait=0"),
    ("POST", "/api/site/v1/tasks/{task_id}/result"): lambda w: Call(
        "/api/site/v1/tasks/some-task/result",
        json={"task_id": "some-task", "state": "answered", "count": {"below_threshold": True}},
    ),
    ("POST", "/api/site/v1/heartbeat"): lambda w: Call(
        "/api/site/v1/heartbeat", json={"version": "1", "generation": 1}
    ),
    ("POST", "/api/v1/deliveries"): lambda w: Call(
        "/api/v1/deliveries",
        json={
            "proposal": w.ready_for_delivery(),
            "crtdl": {"cohortDefinition": {}, "dataExtraction": {}},
            "recipient_key": new_recipient_key()[1].decode(),
        },
    ),
    ("GET", "/api/v1/deliveries/{proposal_id}"): lambda w: Call(
        f"/api/v1/deliveries/{w.awaiting_release()[0]}"
    ),
    ("POST", "/api/v1/deliveries/parts/{task_id}/release"): lambda w: Call(
        f"/api/v1/deliveries/parts/{w.awaiting_release()[1]}/release"
    ),
    ("POST", "/api/v1/deliveries/parts/{task_id}/reject"): lambda w: Call(
        f"/api/v1/deliveries/parts/{w.awaiting_release()[1]}/reject",
        json={"reason": "Freitext in der Stichprobe"},
    ),
    ("GET", "/api/v1/deliveries/{proposal_id}/download"): lambda w: Call(
        f"/api/v1/deliveries/{w.downloadable()}/download"
    ),
    ("GET", "/deliveries/release"): lambda w: Call("/deliveries/release"),
    ("POST", "/deliveries/parts/{task_id}/decision"): lambda w: Call(
        f"/deliveries/parts/{w.awaiting_release()[1]}/decision", {"decision": "release"}
    ),
    ("GET", "/deliveries/{proposal_id}"): lambda w: Call(f"/deliveries/{w.awaiting_release()[0]}"),
    ("GET", "/deliveries/{proposal_id}/download"): lambda w: Call(f"/deliveries/{w.downloadable()}/download"),
    ("GET", "/api/site/v1/deliveries"): lambda w: Call("/api/site/v1/deliveries"),
    ("GET", "/api/site/v1/deliveries/{task_id}/upload"): lambda w: Call(
        f"/api/site/v1/deliveries/{TASK}/upload"
    ),
    ("PUT", "/api/site/v1/deliveries/{task_id}/upload"): lambda w: Call(
        f"/api/site/v1/deliveries/{TASK}/upload?offset=0", json="chunk"
    ),
    ("POST", "/api/site/v1/deliveries/{task_id}/complete"): lambda w: Call(
        f"/api/site/v1/deliveries/{TASK}/complete", json={"bytes": 1, "sha256": "0" * 64}
    ),
    ("GET", "/studies"): lambda w: Call("/studies"),
    ("POST", "/studies"): lambda w: Call(
        "/studies", {"code": w.unique("new-"), "title": "Neu", "acronym": "N"}
    ),
    ("GET", "/studies/redcap"): lambda w: Call("/studies/redcap"),
    ("POST", "/studies/redcap"): lambda w: Call(
        "/studies/redcap",
        {"code": w.unique("redcap-"), "title": "Aus REDCap", "acronym": "R"},
        files={"dictionary": ("dictionary.csv", SMALL_DICTIONARY, "text/csv")},
    ),
    ("GET", "/studies/lforms/{name:path}"): lambda w: Call("/studies/lforms/webcomponent/styles.css"),
    ("GET", "/studies/{code}"): lambda w: Call(f"/studies/{w.study()}"),
    ("POST", "/studies/{code}/setup"): lambda w: Call(
        f"/studies/{w.study()}/setup", {"title": "Matrix", "acronym": "M", "registry_id": "DRKS00000002"}
    ),
    ("POST", "/studies/{code}/sites"): lambda w: Call(f"/studies/{w.study()}/sites", {"site": "uk-a"}),
    ("POST", "/studies/{code}/roles"): lambda w: Call(
        f"/studies/{w.study()}/roles",
        {"email": w.unique("entry") + "@example.org", "role": "data-entry", "site": "uk-a"},
    ),
    ("POST", "/studies/{code}/roles/{grant_id}/revoke"): lambda w: Call(
        "/studies/{}/roles/{}/revoke".format(*w.study_grant()), {}
    ),
    ("POST", "/studies/{code}/status"): lambda w: Call(
        f"/studies/{w.new_study()}/status", {"status": "recruiting", "reason": "Votum liegt vor"}
    ),
    ("GET", "/studies/{code}/design"): lambda w: Call(f"/studies/{w.study()}/design"),
    ("POST", "/studies/{code}/design"): lambda w: Call(
        f"/studies/{w.new_study()}/design",
        {"step": "add-arm", "code": w.unique("arm"), "name": "Weiterer Arm"},
    ),
    ("GET", "/studies/{code}/designer"): lambda w: Call(f"/studies/{w.study()}/designer?url={FORM_URL}"),
    ("GET", "/studies/{code}/randomisation"): lambda w: Call(f"/studies/{w.study()}/randomisation"),
    ("POST", "/studies/{code}/randomisation"): lambda w: Call(
        f"/studies/{w.new_study()}/randomisation", {"block_sizes": "2", "seed": SEED}
    ),
    ("POST", "/studies/{code}/randomisation/sequence"): lambda w: Call(
        f"/studies/{w.study()}/randomisation/sequence", {"seed": SEED, "length": "2"}
    ),
    ("GET", "/api/v1/studies"): lambda w: Call("/api/v1/studies"),
    ("POST", "/api/v1/studies"): lambda w: Call(
        "/api/v1/studies", json={"code": w.unique("api-"), "title": "Neu", "acronym": "N"}
    ),
    ("GET", "/api/v1/studies/{code}"): lambda w: Call(f"/api/v1/studies/{w.study()}"),
    ("PUT", "/api/v1/studies/{code}"): lambda w: Call(
        f"/api/v1/studies/{w.study()}", json={"title": "Matrix", "acronym": "M"}
    ),
    ("PUT", "/api/v1/studies/{code}/sites"): lambda w: Call(
        f"/api/v1/studies/{w.study()}/sites", json={"sites": ["uk-a"]}
    ),
    ("PUT", "/api/v1/studies/{code}/arms"): lambda w: Call(
        f"/api/v1/studies/{w.new_study()}/arms", json={"arms": arms("A", "B")}
    ),
    ("POST", "/api/v1/studies/{code}/forms"): lambda w: Call(
        f"/api/v1/studies/{w.study()}/forms", json={"questionnaire": baseline_form()}
    ),
    ("GET", "/api/v1/studies/{code}/forms/{version}"): lambda w: Call(
        f"/api/v1/studies/{w.study()}/forms/1?url={FORM_URL}"
    ),
    ("POST", "/api/v1/studies/{code}/roles"): lambda w: Call(
        f"/api/v1/studies/{w.study()}/roles",
        json={"email": w.unique("monitor") + "@example.org", "role": "monitor", "site": "uk-a"},
    ),
    ("DELETE", "/api/v1/studies/{code}/roles/{grant_id}"): lambda w: Call(
        "/api/v1/studies/{}/roles/{}".format(*w.study_grant())
    ),
    ("POST", "/api/v1/studies/{code}/status"): lambda w: Call(
        f"/api/v1/studies/{w.new_study()}/status", json={"status": "recruiting", "reason": "Votum liegt vor"}
    ),
    ("GET", "/api/v1/studies/{code}/randomisation"): lambda w: Call(
        f"/api/v1/studies/{w.study()}/randomisation"
    ),
    ("PUT", "/api/v1/studies/{code}/randomisation"): lambda w: Call(
        f"/api/v1/studies/{w.new_study()}/randomisation", json={"block_sizes": [2], "seed": SEED}
    ),
    ("POST", "/api/v1/studies/{code}/randomisation/sequence"): lambda w: Call(
        f"/api/v1/studies/{w.study()}/randomisation/sequence", json={"seed": SEED, "length": 2}
    ),
    ("GET", "/api/site/v1/studies"): lambda w: Call("/api/site/v1/studies"),
    ("POST", "/api/site/v1/studies/{study_id}/allocations"): lambda w: Call(
        "/api/site/v1/studies/s/allocations", json={"study_id": "s", "site": "uk-a", "participant": "P-1"}
    ),
    ("POST", "/api/site/v1/studies/{study_id}/enrolment"): lambda w: Call(
        "/api/site/v1/studies/s/enrolment",
        json={"study_id": "s", "site": "uk-a", "enrolled": {}, "reported_at": "2025-03-04T12:00:00+00:00"},
    ),
}


def _world(hub: HubFixture, people: People, uploads: Path) -> World:
    hub.sites("uk-a", "uk-b")
    user_ids = {
        "pending account": people.register("pending@example.org"),
        "researcher": people.approved("researcher@example.org"),
        "site-admin of uk-a": people.approved("site-a@example.org", Role.SITE_ADMIN, "uk-a"),
        "committee": people.approved("committee@example.org", Role.COMMITTEE),
        "admin": people.approved("office@example.org", Role.ADMIN),
    }
    people.approved("signin@example.org")
    people.approved("reset@example.org")
    researcher = people.users.session_user(people.session_for(user_ids["researcher"]))
    assert researcher is not None
    federation = hub.federation()
    query_id = federation.submit(researcher, older_than(50), None).query_id
    # The query's tasks run out of time, so that it is complete and its event stream ends.
    hub.clock.advance(hub.config.task_deadline_seconds + 1)
    federation.sweep()
    objects = UseAndAccess.on(hub, uploads, "uk-a")
    return World(hub, people, user_ids, researcher, query_id, objects, uploads.parent / "deliveries")


def _outcome(status: int, location: str) -> str:
    if status in (302, 303, 307) and location.startswith("/login?next="):
        return LOGIN
    if status in (401, 403, 404):
        return str(status)
    return OK if status < 400 else f"unexpected {status}"


def test_the_matrix_names_every_route_of_the_app_once(hub: HubFixture) -> None:
    assert set(MATRIX) == set(_CALLS)
    missing = routes(hub.app()) - set(MATRIX)
    assert not missing, f"routes without an entry in the role matrix: {sorted(missing)}"
    gone = set(MATRIX) - routes(hub.app())
    assert not gone, f"entries of the role matrix without a route: {sorted(gone)}"


async def test_every_route_answers_every_role_as_the_matrix_says(
    hub: HubFixture, people: People, tmp_path: Path
) -> None:
    world = _world(hub, people, tmp_path / "uploads")
    app = hub.app(upload_folder=str(tmp_path / "uploads"), delivery_folder=str(tmp_path / "deliveries"))
    wrong = []
    async with serving(app):
        for (method, template), expected in MATRIX.items():
            for number, (role, outcome) in enumerate(zip(ROLES, expected, strict=True)):
                call = _CALLS[method, template](world)
                # Each role from its own address, so that the limits per client do not add up across roles.
                async with browser(app, f"10.0.{number}.1") as person:
                    await person.get("/static/portal.css")  # the CSRF cookie, as any page gives it
                    if role in world.user_ids:
                        person.client.cookies.set(SESSION_COOKIE, people.session_for(world.user_ids[role]))
                    if call.form is not None:
                        response = await person.submit(call.path, call.form, files=call.files)
                    else:
                        headers = {CSRF_HEADER: person.csrf}
                        response = await person.client.request(
                            method, call.path, json=call.json, headers=headers
                        )
                got = _outcome(response.status_code, response.headers.get("location", ""))
                if got != outcome:
                    wrong.append(
                        f"{method} {template} as {role}: expected {outcome}, got {got} ({call.path})"
                    )
    assert not wrong, "\n".join(wrong)


async def test_a_site_administrator_manages_only_their_own_site(hub: HubFixture, people: People) -> None:
    hub.sites("uk-a", "uk-b")
    people.approved("site-a@example.org", Role.SITE_ADMIN, "uk-a")
    app = hub.app()
    async with serving(app), browser(app) as site_admin:
        await site_admin.login("site-a@example.org")
        page = await site_admin.get("/site-admin")
        assert "uk-a" in page.text
        assert "uk-b" not in page.text
        for change in ("rotate", "revoke"):
            response = await site_admin.submit(f"/site-admin/uk-b/{change}", {})
            assert response.status_code == 404, change
        assert (await site_admin.submit("/site-admin/uk-a/no-such-change", {})).status_code == 404
        assert [site.active for site in hub.federation().sites()] == [True, True]


# --- the README's table --------------------------------------------------------------------------------

_SYMBOLS = {OK: "✓", LOGIN: "→ sign-in", E401: "401", E403: "403", E404: "404"}


def markdown_table() -> str:
    """The matrix as the README shows it."""
    lines = [
        "| route | " + " | ".join(ROLES) + " |",
        "|---|" + "---|" * len(ROLES),
    ]
    for (method, path), outcomes in MATRIX.items():
        cells = " | ".join(_SYMBOLS[outcome] for outcome in outcomes)
        lines.append(f"| `{method} {path}` | {cells} |")
    return "\n".join(lines)


def test_the_readme_shows_this_role_matrix() -> None:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^### Roles\n(.*?)(?=^#|\Z)", text, re.S | re.M)
    assert section, "the README has no '### Roles' section"
    table = "\n".join(line for line in section.group(1).splitlines() if line.startswith("|"))
    assert table == markdown_table(), "the README's role table differs; paste markdown_table() into it"
