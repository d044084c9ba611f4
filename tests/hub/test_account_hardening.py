"""Accounts and secrets as the probe of 2026-12 attacked them (issue 12, P-3 and P-6 to P-11): reset links
in logs and the outbox, API tokens that never expired, sign-in throttling that locked owners out or trusted
a forged client address, unlimited reset and registration requests, account enumeration, and names that
spoof their display with invisible or direction-changing characters.

Every test runs on SQLite and PostgreSQL, with the hub in-process and a FakeClock; mail that would be sent is
read from the test's mail folder (`mail_folder`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from datenraum.hub import cli, serve
from datenraum.hub.accounts.users import Status
from datenraum.hub.config import HubConfig
from datenraum.hub.db import OutboxRow
from datenraum.hub.roles import Role

from .helpers import HubFixture, bearer, serving
from .portal_helpers import PASSWORD, People, alert, browser, link_in

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fast_passwords")]

NEW_PASSWORD = "another long passphrase"


def _registration(email: str, **changes: str) -> dict[str, str]:
    form = {
        "name": "Erika Muster",
        "institution": "Uniklinik Nord",
        "email": email,
        "password": PASSWORD,
        "password_repeat": PASSWORD,
    }
    return {**form, **changes}


async def _reset(browser_: Any, people: People, email: str, password: str = NEW_PASSWORD) -> httpx.Response:
    response = await browser_.submit("/password/forgot", {"email": email})
    assert response.status_code == 200, response.text
    token = link_in(people.messages(email)[0]).split("token=")[1]
    form = {"token": token, "password": password, "password_repeat": password}
    return await browser_.submit("/password/reset", form)


def _resets(people: People, email: str) -> list[Any]:
    return [message for message in people.messages(email) if "new password" in message.subject]


async def _api_token(browser_: Any) -> str:
    page = await browser_.submit("/account/token")
    assert page.status_code == 200
    return page.text.split('id="new-token">')[1].split("<")[0]


# --- P-3: reset links are secrets ------------------------------------------------------------------------


async def test_p3_a_reset_link_is_mailed_but_neither_logged_nor_stored_nor_shown_to_the_office(
    hub: HubFixture, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    people.approved("erika@example.org")
    app = hub.app(public_url="https://datenraum.example")
    caplog.set_level(logging.INFO)
    async with serving(app), browser(app) as erika, browser(app) as office:
        assert (await erika.submit("/password/forgot", {"email": "erika@example.org"})).status_code == 200
        assert "erika@example.org" in caplog.text
        assert "set a new password" in caplog.text
        assert "token=" not in caplog.text
        assert "drp_" not in caplog.text
        with hub.sessions() as session:
            bodies = session.scalars(sa.select(OutboxRow.body)).all()
        assert bodies and not any("drp_" in body for body in bodies)
        await office.login("office@example.org")
        page = await office.get("/admin/outbox")
        assert page.status_code == 200
        assert "set a new password" in page.text
        assert "drp_" not in page.text

        [mail] = _resets(people, "erika@example.org")
        assert mail.body.count("https://datenraum.example/password/reset?token=drp_") == 1
        token = link_in(mail).split("token=")[1]
        form = {"token": token, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
        assert (await erika.submit("/password/reset", form)).status_code == 303


async def test_p3_the_outbox_page_masks_links_and_tokens_of_messages_stored_before(
    hub: HubFixture, people: People
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    with hub.sessions.begin() as session:
        body = "open https://hub.example/password/reset?token=drp_abcdefGHIJ-123_x within 60 minutes"
        session.add(OutboxRow(created=hub.clock(), recipient="a@example.org", subject="old", body=body))
    app = hub.app()
    async with serving(app), browser(app) as office:
        await office.login("office@example.org")
        page = await office.get("/admin/outbox")
        assert "https://hub.example/password/reset?token=" in page.text
        assert "drp_abcdefGHIJ" not in page.text


def test_p3_the_local_federation_and_so_the_demo_links_to_the_port_its_hub_listens_on(tmp_path: Path) -> None:
    from datenraum.devtools.federation import LocalFederation

    federation = LocalFederation(tmp_path, port=8751)
    assert federation.hub_env["DATENRAUM_HUB_PUBLIC_URL"] == "http://127.0.0.1:8751"
    assert federation.hub_env["DATENRAUM_HUB_MAIL_FOLDER"] == str(tmp_path / "mail")


# --- P-6: API tokens expire and end with the password --------------------------------------------------


@pytest.mark.parametrize("how", ["change", "reset"])
async def test_p6_an_api_token_stops_working_when_the_password_is_changed_or_reset(
    hub: HubFixture, people: People, how: str
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app) as client, browser(app) as erika:
        await erika.login("erika@example.org")
        token = await _api_token(erika)
        assert (await client.get("/api/v1/sites", headers=bearer(token))).status_code == 200
        if how == "change":
            form = {"current": PASSWORD, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
            assert (await erika.submit("/account/password", form)).status_code == 303
        else:
            assert (await _reset(erika, people, "erika@example.org")).status_code == 303
        assert (await client.get("/api/v1/sites", headers=bearer(token))).status_code == 401


async def test_p6_an_api_token_expires_after_token_days_and_the_account_page_says_when(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app(token_days=90)
    async with serving(app) as client, browser(app) as erika:
        await erika.login("erika@example.org")
        token = await _api_token(erika)
        assert "2025-06-02" in (await erika.get("/account")).text  # START + 90 days
        hub.clock.advance(90 * 86400 - 1)
        assert (await client.get("/api/v1/sites", headers=bearer(token))).status_code == 200
        hub.clock.advance(1)
        assert (await client.get("/api/v1/sites", headers=bearer(token))).status_code == 401


def test_p6_token_days_is_a_setting_and_must_be_positive() -> None:
    assert HubConfig().token_days == 90
    with pytest.raises(ValueError, match="token_days"):
        HubConfig(token_days=0)


# --- P-7: throttling that cannot lock the owner out, and a client address that cannot be forged ------


async def test_p7_sign_in_failures_for_an_address_give_a_growing_pause_not_a_long_lockout(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app(max_failed_logins=3)
    async with serving(app), browser(app) as guesser, browser(app) as erika:
        for _ in range(3):
            assert (await guesser.login("erika@example.org", "guessed wrong")).status_code == 400
        response = await erika.login("erika@example.org")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "60"
        hub.clock.advance(60)
        assert (await guesser.login("erika@example.org", "guessed wrong")).status_code == 400
        assert (await guesser.login("erika@example.org", "guessed wrong")).headers["Retry-After"] == "120"
        hub.clock.advance(120)
        response = await erika.login("erika@example.org")
        assert response.status_code == 303, response.text


async def test_p7_the_owner_lifts_a_pause_at_once_by_resetting_the_password(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app, "10.9.9.9") as guesser, browser(app, "10.1.1.1") as erika:
        for _ in range(5):
            assert (await guesser.login("erika@example.org", "guessed wrong")).status_code == 400
        assert (await erika.login("erika@example.org")).status_code == 429
        assert (await _reset(erika, people, "erika@example.org")).status_code == 303
        response = await erika.login("erika@example.org", NEW_PASSWORD)
        assert response.status_code == 303, response.text


def _serve(monkeypatch: pytest.MonkeyPatch, config: HubConfig) -> dict[str, Any]:
    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    # What `serve` hands its workers in the environment is this test's only.
    monkeypatch.setenv(serve.CONFIG_ENV, "")
    monkeypatch.setenv(serve.SEAL_KEY_ENV, "")
    callback = cli.serve_command.callback
    while hasattr(callback, "__wrapped__"):
        callback = callback.__wrapped__
    callback(config, "127.0.0.1", 8799, 1)
    return started


@pytest.mark.parametrize(
    ("trusted", "forwarded", "recorded"), [("", False, "127.0.0.1"), ("127.0.0.1", True, "198.51.100.40")]
)
async def test_p7_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
    hub: HubFixture,
    people: People,
    monkeypatch: pytest.MonkeyPatch,
    trusted: str,
    forwarded: bool,
    recorded: str,
) -> None:
    config = HubConfig(database_url=hub.config.database_url, trusted_proxies=trusted)
    started = _serve(monkeypatch, config)
    assert started["proxy_headers"] is forwarded
    assert started["forwarded_allow_ips"] == (trusted or None)
    # The application uvicorn serves with these options, as it wraps it.
    options = {key: started[key] for key in ("proxy_headers", "forwarded_allow_ips", "factory")}
    served = uvicorn.Config(started["app"], lifespan="off", **options)
    served.load()
    transport = httpx.ASGITransport(app=served.loaded_app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        await client.get("/login")
        form = {"csrf": client.cookies["dr_csrf"], "email": "x@example.org", "password": "wrong guess"}
        await client.post("/login", data=form, headers={"X-Forwarded-For": "198.51.100.40"})
    [failed] = people.audit(action="login.failed")
    assert failed.ip == recorded


# --- P-8: rate limits on reset requests and registrations --------------------------------------------


async def test_p8_reset_requests_are_limited_per_address_alike_for_known_and_unknown_addresses(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app, "10.1.1.1") as one, browser(app, "10.2.2.2") as other:
        for email in ("erika@example.org", "nobody@example.org"):
            for _ in range(3):
                assert (await one.submit("/password/forgot", {"email": email})).status_code == 200
        known = await other.submit("/password/forgot", {"email": "erika@example.org"})
        unknown = await other.submit("/password/forgot", {"email": "nobody@example.org"})
        assert known.status_code == unknown.status_code == 429
        assert known.headers["Retry-After"] == unknown.headers["Retry-After"]
        assert known.text == unknown.text
        assert len(_resets(people, "erika@example.org")) == 3
        hub.clock.advance(3600)
        assert (await other.submit("/password/forgot", {"email": "erika@example.org"})).status_code == 200


async def test_p8_reset_requests_and_registrations_are_limited_per_client(hub: HubFixture) -> None:
    app = hub.app()
    async with serving(app), browser(app, "10.1.1.1") as spammer, browser(app, "10.2.2.2") as other:
        for n in range(10):
            response = await spammer.submit("/password/forgot", {"email": f"n{n}@example.org"})
            assert response.status_code == 200
        response = await spammer.submit("/password/forgot", {"email": "n10@example.org"})
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        for n in range(5):
            response = await spammer.submit("/register", _registration(f"r{n}@example.org"))
            assert response.status_code == 200
        response = await spammer.submit("/register", _registration("r5@example.org"))
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert (await other.submit("/register", _registration("r5@example.org"))).status_code == 200


# --- P-9: no account enumeration ------------------------------------------------------------------------


async def test_p9_registering_an_existing_address_answers_as_a_new_one_and_tells_its_owner(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as someone:
        taken = await someone.submit("/register", _registration("Erika@example.org"))
        new = await someone.submit("/register", _registration("Max@example.org"))
        assert taken.status_code == new.status_code == 200
        assert taken.text.replace("Erika", "X") == new.text.replace("Max", "X")
        [mail] = [m for m in people.messages("erika@example.org") if "approved" not in m.subject]
        assert "someone tried to register" in mail.subject
        assert people.messages("max@example.org") == []
        assert people.status("erika@example.org") == Status.APPROVED
        assert next(a.action for a in people.audit(actor="erika@example.org")) == "account.register-existing"


async def test_p9_the_team_field_does_not_tell_which_addresses_have_approved_accounts(
    hub: HubFixture, people: People
) -> None:
    people.approved("forscherin@example.org")
    people.approved("office@example.org", Role.ADMIN)
    max_id = people.approved("max@example.org")
    people.register("pending@example.org")
    app = hub.app()
    async with serving(app), browser(app) as researcher, browser(app) as office:
        await researcher.login("forscherin@example.org")
        form = {
            "title": "Team",
            "team_email": ["niemand@example.org", "max@example.org", "pending@example.org"],
            "team_role": ["observer", "observer", "observer"],
        }
        response = await researcher.client.post(
            "/proposals/new", data={**form, "csrf": researcher.csrf}, follow_redirects=False
        )
        assert response.status_code == 303, alert(response)
        page = (await researcher.get(response.headers["location"])).text
        shown = [line for line in page.splitlines() if "example.org (" in line]
        for email in ("niemand@example.org", "max@example.org", "pending@example.org"):
            assert any(f"<li>{email} (" in line for line in shown), page
        # max's account is approved: max is on the team (and sees the proposal); the others are invited and
        # become members when an account with their address is approved.
        proposal = response.headers["location"]
        pending_id = next(a.id for a in people.users.accounts() if a.email == "pending@example.org")
        await office.login("office@example.org")
        approval = await office.submit(f"/admin/accounts/{pending_id}/status", {"status": "approved"})
        assert approval.status_code == 303
        for user_id in (max_id, pending_id):
            async with browser(app) as member:
                member.client.cookies.set("dr_session", people.session_for(user_id))
                assert (await member.get(proposal)).status_code == 200


# --- P-11: names that spoof their display ---------------------------------------------------------------


@pytest.mark.parametrize("character", ["\u202e", "\u2066", "\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad"])
@pytest.mark.parametrize("field", ["name", "institution", "email"])
async def test_p11_a_registration_with_invisible_or_direction_changing_characters_is_refused(
    hub: HubFixture, people: People, field: str, character: str
) -> None:
    app = hub.app()
    values = {"name": "Erika Muster", "institution": "Uniklinik Nord", "email": "erika@example.org"}
    values[field] = values[field][:3] + character + values[field][3:]
    async with serving(app), browser(app) as someone:
        response = await someone.submit("/register", _registration(values.pop("email"), **values))
        assert response.status_code == 400
        assert alert(response).startswith(f"{field}: ")
        assert f"U+{ord(character):04X}" in alert(response)
    assert people.users.accounts() == []
