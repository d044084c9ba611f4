"""Single sign-on by OpenID Connect, driven end to end against a real (small) provider, on SQLite and
PostgreSQL.

Keycloak cannot run here, so `Provider` is an OpenID provider of our own: discovery, keys, an authorize
endpoint that signs in whoever the test says and redirects back with a code, a token endpoint that checks
the client's secret and the PKCE verifier and issues ID tokens signed with a test key, and userinfo. It is
served by uvicorn on a loopback port, in a thread, for this module, and stopped at its end. The hub runs
in-process; the browser is an httpx client that carries the hub's cookies and follows the redirects between
hub and provider itself. Provider and hub share the test's clock, so tokens and sign-ins expire when a test
says so.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit

import httpx
import jwt
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from markupsafe import escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from datenraum.hub.accounts.audit import AuditSource
from datenraum.hub.accounts.outbox import Outbox
from datenraum.hub.accounts.users import Registration, Status, Users
from datenraum.hub.config import ConfigError, HubConfig
from datenraum.hub.db import UserRow
from datenraum.hub.portal.i18n import texts_for
from datenraum.hub.runtime import SESSION_COOKIE

from .helpers import FakeClock, HubFixture, serving

pytestmark = pytest.mark.anyio

CLIENT_ID = "datenraum-portal"
CLIENT_SECRET = "s3cret:with/odd chars"
HUB_URL = "http://hub"
TEXTS = texts_for("en")


# --- the provider ------------------------------------------------------------------------------------


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        return {**algorithm.to_jwk(self.private.public_key(), as_dict=True), "kid": self.kid, "use": "sig"}


@dataclass
class Person:
    subject: str = "kc-4711"
    email: str = "anna.muster@uk-nord.example"
    name: str = "Anna Muster"
    email_verified: bool = True


@dataclass
class Grant:
    nonce: str
    challenge: str
    redirect_uri: str


@dataclass
class Provider:
    """A minimal OpenID provider; what it does wrong is set by the test (`claims`, `forged_with`, ...)."""

    url: str = ""
    clock: FakeClock = field(default_factory=FakeClock)
    keys: list[SigningKey] = field(default_factory=list)
    person: Person = field(default_factory=Person)
    deny: bool = False
    auth_methods: tuple[str, ...] = ("client_secret_basic",)
    claims: dict[str, Any] = field(default_factory=dict)  # changes to the ID token; None removes a claim
    email_in_id_token: bool = True
    userinfo_subject: str | None = None  # whom userinfo answers about, if not the signed-in person
    sign_with: SigningKey | None = None  # instead of the newest published key
    failing: bool = False  # the token endpoint answers 503, as behind a proxy whose backend is down
    grants: dict[str, Grant] = field(default_factory=dict)
    key_fetches: int = 0
    discovery_fetches: int = 0
    client_auth: str = ""

    def reset(self, clock: FakeClock) -> None:
        fresh = Provider(url=self.url, clock=clock, keys=[SigningKey.rsa("key-1")])
        self.__dict__.update(fresh.__dict__)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/keys", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo),
            ]
        )

    async def discovery(self, _request: Request) -> Response:
        self.discovery_fetches += 1
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/keys",
                "userinfo_endpoint": f"{self.url}/userinfo",
                "token_endpoint_auth_methods_supported": list(self.auth_methods),
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def jwks(self, _request: Request) -> Response:
        self.key_fetches += 1
        return JSONResponse({"keys": [key.jwk() for key in self.keys]})

    async def authorize(self, request: Request) -> Response:
        asked = request.query_params
        if (
            asked.get("response_type") != "code"
            or asked.get("client_id") != CLIENT_ID
            or "openid" not in asked.get("scope", "").split()
            or asked.get("code_challenge_method") != "S256"
            or not asked.get("nonce")
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        answer = {"state": asked["state"]}
        if self.deny:
            answer |= {"error": "access_denied", "error_description": "<b>Give us your password</b>"}
        else:
            code = secrets.token_urlsafe(16)
            self.grants[code] = Grant(asked["nonce"], asked["code_challenge"], asked["redirect_uri"])
            answer["code"] = code
        return RedirectResponse(f"{asked['redirect_uri']}?{urlencode(answer)}", status_code=302)

    def _client_authenticated(self, request: Request, form: Any) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            self.client_auth = "client_secret_basic"
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return (unquote_plus(client_id), unquote_plus(secret)) == (CLIENT_ID, CLIENT_SECRET)
        self.client_auth = "client_secret_post"
        return form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET

    async def token(self, request: Request) -> Response:
        if self.failing:
            return Response("the realm's database is down", status_code=503)
        form = await request.form()
        if not self._client_authenticated(request, form) or self.client_auth not in self.auth_methods:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        proof = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant is None or grant.redirect_uri != form.get("redirect_uri") or proof != grant.challenge:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(self.clock().timestamp())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": self.person.subject,
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "name": self.person.name,
        }
        if self.email_in_id_token:
            claims |= {"email": self.person.email, "email_verified": self.person.email_verified}
        claims |= self.claims
        claims = {name: value for name, value in claims.items() if value is not None}
        key = self.sign_with or self.keys[-1]
        id_token = jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid})
        return JSONResponse(
            {"access_token": f"at-{self.person.subject}", "token_type": "Bearer", "id_token": id_token}
        )

    async def userinfo(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer at-{self.person.subject}":
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(
            {
                "sub": self.userinfo_subject or self.person.subject,
                "email": self.person.email,
                "email_verified": self.person.email_verified,
            }
        )


def _free_socket() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    return listener


@contextlib.contextmanager
def _served(app: Starlette, listener: socket.socket) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test provider did not start"
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "the test provider did not stop"


@pytest.fixture(scope="module")
def provider_server() -> Iterator[Provider]:
    provider = Provider()
    listener = _free_socket()
    provider.url = f"http://127.0.0.1:{listener.getsockname()[1]}/realms/mii"
    app = Starlette()
    app.mount("/realms/mii", provider.app())
    with _served(app, listener):
        yield provider


@pytest.fixture
def provider(provider_server: Provider, clock: FakeClock) -> Provider:
    provider_server.reset(clock)
    return provider_server


@pytest.fixture
def users(hub: HubFixture) -> Users:
    return Users(hub.sessions, Outbox(hub.sessions, None, hub.clock), clock=hub.clock)


# --- the browser -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def portal(hub: HubFixture, issuer: str) -> AsyncIterator[httpx.AsyncClient]:
    app = hub.app(
        oidc_issuer=issuer, oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET, public_url=HUB_URL
    )
    async with serving(app) as browser:
        browser.headers["Accept-Language"] = "en"
        yield browser


async def to_provider(browser: httpx.AsyncClient, next_page: str = "/") -> str:
    """Press "single sign-on": the provider's authorize URL the hub sends the browser to."""
    response = await browser.get("/login/sso", params={"next": next_page})
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def authorize(url: str) -> str:
    """Sign in at the provider: the hub's callback path (with code and state) it sends the browser back to."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == HUB_URL
    return f"{location.path}?{location.query}"


async def sign_in(browser: httpx.AsyncClient, next_page: str = "/") -> httpx.Response:
    return await browser.get(await authorize(await to_provider(browser, next_page)))


async def signed_in(browser: httpx.AsyncClient) -> bool:
    response = await browser.get("/account")
    assert response.status_code in (200, 303)
    return response.status_code == 200


def user_rows(hub: HubFixture) -> list[UserRow]:
    with hub.sessions() as session:
        return list(session.scalars(sa.select(UserRow).order_by(UserRow.id)))


def assert_refused(response: httpx.Response, status: int, text_key: str) -> None:
    assert response.status_code == status, response.text
    assert str(escape(TEXTS[text_key])) in response.text
    assert SESSION_COOKIE not in response.cookies
    assert "Traceback" not in response.text


def approve(users: Users, email: str) -> None:
    (account,) = [account for account in users.accounts() if account.email == email]
    users.set_status(AuditSource(None, "office@example.org", "127.0.0.1"), account.id, Status.APPROVED)


# --- accounts ----------------------------------------------------------------------------------------


async def test_first_sign_in_creates_a_pending_account_and_no_session(hub: HubFixture, provider: Provider):
    async with portal(hub, provider.url) as browser:
        response = await sign_in(browser)
        assert response.status_code == 200
        assert TEXTS["registered.text"].format(email=provider.person.email) in response.text
        assert SESSION_COOKIE not in response.cookies
        assert not await signed_in(browser)
    (row,) = user_rows(hub)
    assert (row.email, row.name, row.status, row.oidc_subject, row.password_hash) == (
        provider.person.email,
        provider.person.name,
        "pending",
        provider.person.subject,
        None,
    )
    assert provider.client_auth == "client_secret_basic"


async def test_sign_in_after_approval_gives_a_session_and_goes_to_the_page_asked_for(
    hub: HubFixture, provider: Provider, users: Users
):
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        approve(users, provider.person.email)
        response = await sign_in(browser, next_page="/queries")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/queries"
        cookie = response.headers["set-cookie"]
        assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
        assert await signed_in(browser)
    assert len(user_rows(hub)) == 1


async def test_sign_in_links_the_identity_to_the_local_account_with_the_same_email(
    hub: HubFixture, provider: Provider, users: Users
):
    email = provider.person.email
    users.register(Registration("Anna Muster", "UK Nord", email.upper(), "a long local passphrase"))
    approve(users, email)
    async with portal(hub, provider.url) as browser:
        response = await sign_in(browser)
        assert response.status_code == 303, response.text
        assert await signed_in(browser)
    (row,) = user_rows(hub)
    assert (row.email, row.institution, row.oidc_subject) == (email, "UK Nord", provider.person.subject)
    assert row.password_hash is not None


async def test_an_email_linked_to_another_identity_is_refused(
    hub: HubFixture, provider: Provider, users: Users
):
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        approve(users, provider.person.email)
        provider.person = Person(subject="kc-someone-else")
        response = await sign_in(browser)
        assert response.status_code == 403
        assert "belongs to another single sign-on identity" in response.text
        assert not await signed_in(browser)


async def test_the_email_may_come_from_the_userinfo_endpoint(hub: HubFixture, provider: Provider):
    provider.email_in_id_token = False
    async with portal(hub, provider.url) as browser:
        response = await sign_in(browser)
        assert response.status_code == 200, response.text
    assert [row.email for row in user_rows(hub)] == [provider.person.email]


async def test_client_secret_post_is_used_when_the_provider_takes_only_that(
    hub: HubFixture, provider: Provider, users: Users
):
    provider.auth_methods = ("client_secret_post",)
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        approve(users, provider.person.email)
        assert (await sign_in(browser)).status_code == 303
    assert provider.client_auth == "client_secret_post"


async def test_es256_signed_id_tokens_are_accepted(hub: HubFixture, provider: Provider):
    provider.keys = [SigningKey.ec("ec-1")]
    async with portal(hub, provider.url) as browser:
        assert (await sign_in(browser)).status_code == 200
    assert len(user_rows(hub)) == 1


# --- refusals ----------------------------------------------------------------------------------------


async def test_an_unverified_email_is_refused(hub: HubFixture, provider: Provider):
    provider.person = Person(email_verified=False)
    async with portal(hub, provider.url) as browser:
        assert_refused(await sign_in(browser), 400, "sso.email_unverified")
    assert user_rows(hub) == []


async def test_denied_consent_is_said_plainly_without_the_providers_free_text(
    hub: HubFixture, provider: Provider
):
    provider.deny = True
    async with portal(hub, provider.url) as browser:
        response = await sign_in(browser)
        assert_refused(response, 403, "sso.denied")
        assert "Give us your password" not in response.text
    assert user_rows(hub) == []


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "another-client", "azp": None}, id="wrong audience"),
        pytest.param({"iss": "http://127.0.0.1:1/realms/evil"}, id="wrong issuer"),
        pytest.param({"exp": int(FakeClock()().timestamp()) - 60}, id="expired"),
        pytest.param({"iat": int(FakeClock()().timestamp()) + 600}, id="issued in the future"),
        pytest.param({"nonce": "a nonce of another sign-in"}, id="wrong nonce"),
        pytest.param({"nonce": None}, id="no nonce"),
        pytest.param({"azp": "another-client"}, id="issued to another party"),
    ],
)
async def test_an_id_token_with_wrong_claims_signs_nobody_in(
    hub: HubFixture, provider: Provider, claims: dict[str, Any]
):
    provider.claims = claims
    async with portal(hub, provider.url) as browser:
        assert_refused(await sign_in(browser), 400, "sso.bad_token")
        assert not await signed_in(browser)
    assert user_rows(hub) == []


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param(
            lambda: SigningKey("key-1", "RS256", SigningKey.rsa("forger").private), id="other RSA key"
        ),
        pytest.param(
            lambda: SigningKey("key-1", "ES256", SigningKey.ec("forger").private), id="EC key, RSA kid"
        ),
    ],
)
async def test_an_id_token_with_a_bad_signature_signs_nobody_in(
    hub: HubFixture, provider: Provider, forgery: Callable[[], SigningKey]
):
    provider.sign_with = forgery()
    async with portal(hub, provider.url) as browser:
        assert_refused(await sign_in(browser), 400, "sso.bad_token")
    assert user_rows(hub) == []


async def test_a_userinfo_answer_about_someone_else_is_refused(hub: HubFixture, provider: Provider):
    provider.email_in_id_token = False
    provider.userinfo_subject = "kc-someone-else"
    async with portal(hub, provider.url) as browser:
        assert_refused(await sign_in(browser), 400, "sso.bad_token")
    assert user_rows(hub) == []


async def test_a_callback_without_the_sign_in_cookie_is_refused(hub: HubFixture, provider: Provider):
    async with portal(hub, provider.url) as browser:
        callback = await authorize(await to_provider(browser))
        browser.cookies.delete("dr_sso")
        assert_refused(await browser.get(callback), 400, "sso.state")
        assert_refused(await browser.get("/login/sso/callback"), 400, "sso.state")
    assert user_rows(hub) == []


async def test_a_callback_for_another_sign_in_is_refused(hub: HubFixture, provider: Provider):
    async with portal(hub, provider.url) as browser:
        first = await authorize(await to_provider(browser))
        await to_provider(browser)  # a second sign-in in the same browser replaces the first one's cookie
        assert_refused(await browser.get(first), 400, "sso.state")


async def test_a_replayed_callback_is_refused(hub: HubFixture, provider: Provider, users: Users):
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        approve(users, provider.person.email)
        callback = await authorize(await to_provider(browser))
        flow_cookie = browser.cookies["dr_sso"]
        assert (await browser.get(callback)).status_code == 303
        replayed = await browser.get(callback, headers={"Cookie": f"dr_sso={flow_cookie}"})
        assert_refused(replayed, 400, "sso.state")


async def test_a_sign_in_that_took_too_long_is_refused(hub: HubFixture, provider: Provider):
    async with portal(hub, provider.url) as browser:
        callback = await authorize(await to_provider(browser))
        hub.clock.advance(11 * 60)
        assert_refused(await browser.get(callback), 400, "sso.expired")
    assert user_rows(hub) == []


async def test_a_provider_that_cannot_be_reached_gives_a_page_saying_so(hub: HubFixture):
    with _free_socket() as closed:
        issuer = f"http://127.0.0.1:{closed.getsockname()[1]}/realms/mii"
        async with portal(hub, issuer) as browser:
            response = await browser.get("/login/sso")
            assert_refused(response, 503, "sso.unreachable")
            assert "dr_sso" not in browser.cookies


async def test_a_provider_that_fails_during_sign_in_gives_a_page_saying_so(
    hub: HubFixture, provider: Provider
):
    async with portal(hub, provider.url) as browser:
        callback = await authorize(await to_provider(browser))
        provider.failing = True
        assert_refused(await browser.get(callback), 503, "sso.unreachable")
    assert user_rows(hub) == []


# --- keys --------------------------------------------------------------------------------------------


async def test_rotated_provider_keys_are_fetched_again_once(
    hub: HubFixture, provider: Provider, users: Users
):
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        approve(users, provider.person.email)
        assert provider.key_fetches == 1
        provider.keys = [SigningKey.rsa("key-2")]
        assert (await sign_in(browser)).status_code == 303
        assert provider.key_fetches == 2
        assert (await sign_in(browser)).status_code == 303
        assert provider.key_fetches == 2, "known keys are not fetched again"


async def test_a_key_the_provider_does_not_publish_is_asked_for_once_then_refused(
    hub: HubFixture, provider: Provider
):
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        provider.sign_with = SigningKey.rsa("unpublished")
        assert_refused(await sign_in(browser), 400, "sso.bad_token")
        assert provider.key_fetches == 2


async def test_provider_metadata_and_keys_are_cached_for_an_hour(hub: HubFixture, provider: Provider):
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        await sign_in(browser)
        assert (provider.discovery_fetches, provider.key_fetches) == (1, 1)
        hub.clock.advance(61 * 60)
        await sign_in(browser)
        assert (provider.discovery_fetches, provider.key_fetches) == (2, 2)


async def test_only_paths_of_this_hub_are_followed_after_sign_in(
    hub: HubFixture, provider: Provider, users: Users
):
    async with portal(hub, provider.url) as browser:
        await sign_in(browser)
        approve(users, provider.person.email)
        for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example/"):
            response = await sign_in(browser, next_page=elsewhere)
            assert response.headers["location"] == "/"


# --- not configured ----------------------------------------------------------------------------------


async def test_single_sign_on_pages_are_404_when_no_provider_is_configured(hub: HubFixture):
    async with serving(hub.app()) as browser:
        for path in ("/login/sso", "/login/sso/callback"):
            response = await browser.get(path)
            assert response.status_code == 404
            assert "single sign-on is not set up" in response.text
        assert "/login/sso" not in (await browser.get("/login")).text


def test_an_issuer_without_a_client_id_is_a_configuration_error():
    with pytest.raises(ConfigError, match="oidc_client_id"):
        HubConfig(oidc_issuer="https://keycloak.example/realms/mii")
