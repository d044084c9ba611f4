"""Portal accounts, as people use them through the pages: registration and approval, signing in and its
throttling, passwords and their reset, roles, and the audit log that records all of it.

Every test runs on SQLite and PostgreSQL, with the hub in-process and a FakeClock; messages that would be
mailed are read from the outbox.
"""

from __future__ import annotations

import pytest

from datenraum.hub.accounts.users import Status
from datenraum.hub.roles import Role

from .helpers import HubFixture, bearer, serving
from .portal_helpers import PASSWORD, People, alert, browser, link_in
from .test_hub_service import _at_once

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fast_passwords")]

NEW_PASSWORD = "another long passphrase"
SIGNED_OUT = "/login?next="


def _registration(email: str, password: str = PASSWORD, **changes: str) -> dict[str, str]:
    form = {
        "name": "Erika Muster",
        "institution": "Uniklinik Nord",
        "email": email,
        "password": password,
        "password_repeat": password,
    }
    return {**form, **changes}


def _account_id(people: People, email: str) -> int:
    [account] = [account for account in people.users.accounts() if account.email == email]
    return account.id


async def _signed_in(response) -> None:
    assert response.status_code == 303, response.text
    assert not response.headers["location"].startswith("/login")


# --- registration and approval -----------------------------------------------------------------------


async def test_a_registered_account_can_sign_in_only_once_an_administrator_approved_it(
    hub: HubFixture, people: People
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    app = hub.app()
    async with serving(app), browser(app) as erika, browser(app) as office:
        response = await erika.submit("/register", _registration("erika@example.org"))
        assert response.status_code == 200
        assert "erika@example.org" in response.text
        assert people.status("erika@example.org") == Status.PENDING

        response = await erika.login("erika@example.org")
        assert response.status_code == 400
        assert "waiting for approval" in alert(response)
        assert erika.session is None

        await _signed_in(await office.login("office@example.org"))
        user_id = _account_id(people, "erika@example.org")
        response = await office.submit(f"/admin/accounts/{user_id}/status", {"status": "approved"})
        assert response.status_code == 303
        [message] = people.messages("erika@example.org")
        assert "approved" in message.subject

        await _signed_in(await erika.login("erika@example.org"))
        assert (await erika.get("/queries/new")).status_code == 200


async def test_a_rejected_account_cannot_sign_in(hub: HubFixture, people: People) -> None:
    people.approved("office@example.org", Role.ADMIN)
    user_id = people.register("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika, browser(app) as office:
        await office.login("office@example.org")
        response = await office.submit(f"/admin/accounts/{user_id}/status", {"status": "rejected"})
        assert response.status_code == 303
        response = await erika.login("erika@example.org")
        assert response.status_code == 400
        assert "not active" in alert(response)
        assert erika.session is None


async def test_disabling_an_account_ends_its_sessions_and_its_api_token_at_once(
    hub: HubFixture, people: People
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    user_id = people.approved("erika@example.org")
    app = hub.app()
    async with serving(app) as client, browser(app) as erika, browser(app) as office:
        await _signed_in(await erika.login("erika@example.org"))
        response = await erika.submit("/account/token")
        token = response.text.split('<pre class="secret" id="new-token">')[1].split("</pre>")[0]
        assert (await client.get("/api/v1/sites", headers=bearer(token))).status_code == 200

        await office.login("office@example.org")
        await office.submit(f"/admin/accounts/{user_id}/status", {"status": "disabled"})

        response = await erika.get("/account")
        assert response.status_code == 303
        assert response.headers["location"].startswith(SIGNED_OUT)
        assert (await client.get("/api/v1/sites", headers=bearer(token))).status_code == 401
        assert (await erika.login("erika@example.org")).status_code == 400


async def test_an_email_address_has_one_account_whatever_its_case(hub: HubFixture, people: People) -> None:
    app = hub.app()
    async with serving(app), browser(app) as erika:
        assert (await erika.submit("/register", _registration("Erika@Example.org"))).status_code == 200
        response = await erika.submit("/register", _registration("erika@EXAMPLE.ORG"))
        assert response.status_code == 200  # answered as a new one; the owner is told by mail
        assert "someone tried to register" in people.messages("erika@example.org")[0].subject
        assert [account.email for account in people.users.accounts()] == ["erika@example.org"]


@pytest.mark.parametrize(
    ("password", "repeat", "complaint"),
    [
        ("too short", "too short", "at least 10 characters"),
        ("x" * 1001, "x" * 1001, "at most 1000 characters"),
        ("erika@example.org", "erika@example.org", "must not be the e-mail address"),
        (PASSWORD, PASSWORD + "!", "the two passwords differ"),
    ],
    ids=["short", "long", "the-address", "repeated-wrongly"],
)
async def test_a_registration_with_a_password_against_the_policy_is_refused_and_stores_nothing(
    hub: HubFixture, people: People, password: str, repeat: str, complaint: str
) -> None:
    app = hub.app()
    async with serving(app), browser(app) as erika:
        form = _registration("erika@example.org", password, password_repeat=repeat)
        response = await erika.submit("/register", form)
        assert response.status_code == 400
        assert complaint in alert(response)
        assert 'value="erika@example.org"' in response.text  # what was entered stays in the form
        assert people.users.accounts() == []


async def test_a_wrong_password_an_unknown_address_and_a_pending_account_get_the_same_answer(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    people.register("pending@example.org")
    app = hub.app()
    async with serving(app), browser(app) as someone:
        answers = [
            await someone.login("erika@example.org", "not her password"),
            await someone.login("nobody@example.org", "not her password"),
            await someone.login("pending@example.org", "not her password"),
        ]
        assert {response.status_code for response in answers} == {400}
        assert {alert(response) for response in answers} == {"wrong e-mail address or password"}


async def test_an_account_made_on_the_command_line_is_one_address_whatever_its_case(
    hub: HubFixture, people: People
) -> None:
    hub.accounts.create_user("Office@Example.org", Role.ADMIN, password=PASSWORD)
    app = hub.app()
    async with serving(app), browser(app) as office, browser(app) as someone:
        await _signed_in(await office.login("office@example.org"))
        response = await someone.submit("/register", _registration("OFFICE@example.org"))
        assert response.status_code == 200
        assert "someone tried to register" in people.messages("office@example.org")[0].subject
        assert [account.email for account in people.users.accounts()] == ["office@example.org"]


# --- throttling ----------------------------------------------------------------------------------------


async def test_sign_in_pauses_for_an_address_after_too_many_failures_until_the_pause_passes(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    people.approved("max@example.org")
    app = hub.app(max_failed_logins=3)
    async with serving(app), browser(app) as guesser, browser(app) as erika:
        for _ in range(3):
            assert (await guesser.login("erika@example.org", "guessed wrong")).status_code == 400
        # Now even the right password waits: the guesser must not learn that it was right.
        response = await erika.login("erika@example.org")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "60"  # a minute, doubling with each further failure
        assert " 1 " in alert(response)
        assert erika.session is None
        # Other accounts are not affected.
        await _signed_in(await guesser.login("max@example.org"))
        [paused] = people.audit(action="login.throttled")
        assert (paused.actor, paused.target) == ("erika@example.org", "erika@example.org")

        hub.clock.advance(60)
        await _signed_in(await erika.login("erika@example.org"))


async def test_sign_in_pauses_for_a_client_address_that_tries_many_accounts(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app(max_failed_logins=2)  # an address gets four times an account's room: 8 failures
    async with serving(app), browser(app, "10.1.1.1") as guesser, browser(app, "10.2.2.2") as erika:
        for n in range(8):
            assert (await guesser.login(f"guess{n}@example.org", "guessed wrong")).status_code == 400
        response = await guesser.login("erika@example.org")
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) == 15 * 60
        await _signed_in(await erika.login("erika@example.org"))

        hub.clock.advance(15 * 60)
        await _signed_in(await guesser.login("erika@example.org"))


# --- passwords -----------------------------------------------------------------------------------------


async def test_changing_the_password_ends_every_session_of_the_account(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as laptop, browser(app) as phone:
        await laptop.login("erika@example.org")
        await phone.login("erika@example.org")
        form = {"current": PASSWORD, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
        response = await laptop.submit("/account/password", form)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?notice=password-changed"

        for device in (laptop, phone):
            response = await device.get("/account")
            assert response.headers["location"].startswith(SIGNED_OUT)
        assert (await phone.login("erika@example.org")).status_code == 400
        await _signed_in(await phone.login("erika@example.org", NEW_PASSWORD))


async def test_a_password_change_with_the_wrong_current_password_changes_nothing(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika:
        await erika.login("erika@example.org")
        form = {"current": "not my password", "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
        response = await erika.submit("/account/password", form)
        assert response.status_code == 400
        assert "wrong password" in alert(response)
        assert (await erika.get("/account")).status_code == 200
        await _signed_in(await erika.login("erika@example.org"))


async def test_a_reset_link_from_the_outbox_sets_a_new_password_once(hub: HubFixture, people: People) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika, browser(app) as old_device:
        await old_device.login("erika@example.org")
        response = await erika.submit("/password/forgot", {"email": "Erika@example.org"})
        assert response.status_code == 200
        message = people.messages("erika@example.org")[0]
        assert "new password" in message.subject
        link = link_in(message)
        assert link.startswith("/password/reset?token=drp_")
        token = link.split("token=")[1]
        assert token in (await erika.get(link)).text

        form = {"token": token, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
        response = await erika.submit("/password/reset", form)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?notice=password-set"
        await _signed_in(await erika.login("erika@example.org", NEW_PASSWORD))
        assert (await old_device.get("/account")).headers["location"].startswith(SIGNED_OUT)

        again = {"token": token, "password": PASSWORD, "password_repeat": PASSWORD}
        response = await erika.submit("/password/reset", again)
        assert response.status_code == 400
        assert "invalid or has expired" in alert(response)
        await _signed_in(await erika.login("erika@example.org", NEW_PASSWORD))


async def test_a_reset_link_expires_after_an_hour(hub: HubFixture, people: People) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika:
        await erika.submit("/password/forgot", {"email": "erika@example.org"})
        token = link_in(people.messages("erika@example.org")[0]).split("token=")[1]
        hub.clock.advance(3600)
        form = {"token": token, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
        response = await erika.submit("/password/reset", form)
        assert response.status_code == 400
        assert "invalid or has expired" in alert(response)
        await _signed_in(await erika.login("erika@example.org"))


async def test_asking_for_a_reset_link_does_not_tell_which_addresses_have_accounts(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as someone:
        known = await someone.submit("/password/forgot", {"email": "erika@example.org"})
        unknown = await someone.submit("/password/forgot", {"email": "nobody@example.org"})
        assert known.status_code == unknown.status_code == 200
        assert known.text == unknown.text
        assert people.messages("nobody@example.org") == []
        assert "new password" in people.messages("erika@example.org")[0].subject


# --- roles ---------------------------------------------------------------------------------------------


async def test_the_site_admin_role_is_granted_for_an_existing_site_only(
    hub: HubFixture, people: People
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    user_id = people.approved("erika@example.org")
    hub.sites("uk-a")
    app = hub.app()
    async with serving(app), browser(app) as office:
        await office.login("office@example.org")
        roles = f"/admin/accounts/{user_id}/roles"
        for site, complaint in (("uk-nowhere", "no site named 'uk-nowhere'"), ("", "needs a site")):
            response = await office.submit(roles, {"change": "grant", "role": "site-admin", "site": site})
            assert response.status_code == 400
            assert complaint in alert(response)
        response = await office.submit(roles, {"change": "grant", "role": "committee", "site": "uk-a"})
        assert response.status_code == 400
        assert "only the site-admin role is for a site" in alert(response)
        assert _roles(people, user_id) == {(Role.RESEARCHER, None)}

        response = await office.submit(roles, {"change": "grant", "role": "site-admin", "site": "uk-a"})
        assert response.status_code == 303
        assert _roles(people, user_id) == {(Role.RESEARCHER, None), (Role.SITE_ADMIN, "uk-a")}
        response = await office.submit(roles, {"change": "revoke", "role": "researcher", "site": ""})
        assert response.status_code == 303
        assert _roles(people, user_id) == {(Role.SITE_ADMIN, "uk-a")}
        response = await office.submit(roles, {"change": "revoke", "role": "site-admin", "site": "uk-a"})
        assert _roles(people, user_id) == set()


def _roles(people: People, user_id: int) -> set[tuple[Role, str | None]]:
    [account] = [account for account in people.users.accounts() if account.id == user_id]
    return set(account.roles)


async def test_an_administrator_cannot_lock_themselves_out(hub: HubFixture, people: People) -> None:
    office_id = people.approved("office@example.org", Role.ADMIN)
    app = hub.app()
    async with serving(app), browser(app) as office:
        await office.login("office@example.org")
        for status in ("disabled", "rejected", "pending"):
            response = await office.submit(f"/admin/accounts/{office_id}/status", {"status": status})
            assert response.status_code == 400
            assert "cannot lock themselves out" in alert(response)
        response = await office.submit(
            f"/admin/accounts/{office_id}/roles", {"change": "revoke", "role": "admin", "site": ""}
        )
        assert response.status_code == 400
        assert "cannot take their own administrator role" in alert(response)
        assert people.status("office@example.org") == Status.APPROVED
        assert (await office.get("/admin/accounts")).status_code == 200


# --- the audit log -------------------------------------------------------------------------------------


async def test_every_account_action_is_in_the_audit_log_with_actor_action_and_target(
    hub: HubFixture, people: People
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    hub.sites("uk-a")
    app = hub.app()
    async with serving(app), browser(app, "10.0.0.7") as erika, browser(app, "10.0.0.9") as office:
        await erika.submit("/register", _registration("erika@example.org"))
        await erika.login("erika@example.org")  # refused: pending
        await office.login("office@example.org")
        erika_id = _account_id(people, "erika@example.org")
        await office.submit(f"/admin/accounts/{erika_id}/status", {"status": "approved"})
        roles = f"/admin/accounts/{erika_id}/roles"
        await office.submit(roles, {"change": "grant", "role": "site-admin", "site": "uk-a"})
        await office.submit(roles, {"change": "revoke", "role": "site-admin", "site": "uk-a"})
        await erika.login("erika@example.org", "mistyped")
        await erika.login("erika@example.org")
        await erika.submit("/account/token")
        form = {"current": PASSWORD, "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD}
        await erika.submit("/account/password", form)
        await erika.submit("/password/forgot", {"email": "erika@example.org"})
        token = link_in(people.messages("erika@example.org")[0]).split("token=")[1]
        form = {"token": token, "password": PASSWORD, "password_repeat": PASSWORD}
        await erika.submit("/password/reset", form)
        await erika.login("erika@example.org")
        await erika.submit("/logout")
        await office.submit(f"/admin/accounts/{erika_id}/status", {"status": "disabled"})

    erika, office = ("erika@example.org", "10.0.0.7"), ("office@example.org", "10.0.0.9")
    logged = [(entry.actor, entry.ip, entry.action, entry.target) for entry in reversed(people.audit())]
    expected = [
        (*erika, "account.register", "erika@example.org"),
        (*erika, "login.refused", "erika@example.org"),
        (*office, "login", "office@example.org"),
        (*office, "account.approved", "erika@example.org"),
        (*office, "role.grant", "erika@example.org"),
        (*office, "role.revoke", "erika@example.org"),
        (*erika, "login.failed", "erika@example.org"),
        (*erika, "login", "erika@example.org"),
        (*erika, "token.issue", "erika@example.org"),
        (*erika, "password.change", "erika@example.org"),
        (*erika, "password.reset-request", "erika@example.org"),
        (*erika, "password.reset", "erika@example.org"),
        (*erika, "login", "erika@example.org"),
        (*erika, "logout", "erika@example.org"),
        (*office, "account.disabled", "erika@example.org"),
    ]
    assert [entry for entry in logged if entry[1]] == expected  # setup has no address
    details = {entry.action: entry.detail for entry in people.audit(action="role", actor="erika@")}
    assert details == {"role.grant": "site-admin of uk-a", "role.revoke": "site-admin of uk-a"}


async def test_the_audit_page_filters_by_action_person_and_day(hub: HubFixture, people: People) -> None:
    people.approved("office@example.org", Role.ADMIN)
    people.approved("erika@example.org")
    app = hub.app()
    async with serving(app), browser(app) as erika, browser(app) as office:
        await erika.login("erika@example.org", "mistyped")
        await erika.login("erika@example.org")
        hub.clock.advance(24 * 3600)
        await office.login("office@example.org")

        async def actions(**filters: str) -> list[str]:
            response = await office.get("/admin/audit", params=filters)
            assert response.status_code == 200
            return [row.split("</code>")[0] for row in response.text.split("<td><code>")[1:]]

        assert await actions(action="login") == ["login", "login", "login.failed"]
        assert await actions(action="login.failed") == ["login.failed"]
        assert await actions(action="login", actor_filter="erika@") == ["login", "login.failed"]
        assert await actions(action="login", day="2025-03-05") == ["login"]
        assert await actions(action="login", day="2025-03-04") == ["login", "login.failed"]
        assert await actions(action="no-such-action") == []
        assert await actions(action="login", day="9999-12-31") == []  # the last day there is
        assert await actions(action="login", day="not a day") == ["login", "login", "login.failed"]
        # A filter is a filter, never a pattern: the log's own wildcard characters match only themselves.
        assert await actions(action="%") == []
        assert await actions(actor_filter="_") == []


async def test_an_account_id_out_of_range_is_an_error_page_not_a_crash(
    hub: HubFixture, people: People
) -> None:
    people.approved("office@example.org", Role.ADMIN)
    app = hub.app()
    async with serving(app), browser(app) as office:
        await office.login("office@example.org")
        for user_id in (str(2**31), "99999999999999999999"):
            for change, form in (
                ("status", {"status": "approved"}),
                ("roles", {"change": "grant", "role": "admin"}),
            ):
                response = await office.submit(f"/admin/accounts/{user_id}/{change}", form)
                assert response.status_code == 422, (user_id, change)
                assert alert(response).startswith("user_id: ")
        response = await office.get(f"/queries/saved/{2**31}")
        assert response.status_code == 422
        assert alert(response).startswith("saved_id: ")


def test_registering_one_address_at_the_same_time_twice_makes_one_account(people: People) -> None:
    results = _at_once(4, lambda: people.register("erika@example.org"))
    accounts = [result for result in results if isinstance(result, int)]
    assert len(accounts) == 1
    assert [result for result in results if not isinstance(result, int)] == [None] * 3  # answered alike
