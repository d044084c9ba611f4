"""Single sign-on: the hub as an OpenID Connect relying party (authorization-code flow with PKCE).

`start` gives the provider's authorization URL and the values the browser must bring back (`PendingSignIn`:
state, nonce, PKCE verifier); `finish` checks the provider's answer against them, exchanges the code at
the token endpoint and returns the person's verified `Identity`. Where the pending values are kept between
the two is the caller's choice (see `portal.sso`).

The ID token comes from the token endpoint over a connection the hub opened itself, but it is checked in
full anyway (signature, issuer, audience, times, nonce): a misconfigured proxy or provider must not be able
to sign someone in as someone else. Times (token claims, sign-in lifetime, caches) are the hub's clock, so
that tests can move them.

Every failure is a `SignInFailed` with a `Reason` for the person and a detail for the operator's log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt

from datenraum.hub.db import Clock, utcnow
from datenraum.hub.errors import HubError

__all__ = ["Identity", "OidcSettings", "PendingSignIn", "Reason", "RelyingParty", "SignInFailed"]

ALGORITHMS = ("RS256", "ES256")
SCOPES = "openid email profile"


class Reason(StrEnum):
    """Why a sign-in failed, as the person is told (the texts are `sso.<value>`)."""

    UNREACHABLE = "unreachable"
    PROVIDER_ERROR = "provider_error"
    DENIED = "denied"
    STATE = "state"
    EXPIRED = "expired"
    TOKEN_REFUSED = "token_refused"
    BAD_TOKEN = "bad_token"
    NO_EMAIL = "no_email"
    EMAIL_UNVERIFIED = "email_unverified"


class SignInFailed(HubError):
    """Single sign-on did not succeed; `reason` says why (the sign-in pages answer with their own status)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass(frozen=True)
class PendingSignIn:
    """What binds the provider's answer to the browser that asked: kept secret and given back once."""

    state: str
    nonce: str
    verifier: str
    started: float  # POSIX seconds on the hub's clock
    next_path: str


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str
    name: str


@dataclass(frozen=True)
class _Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    auth_methods: tuple[str, ...]


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class RelyingParty:
    """One hub process's client of one provider; caches the provider's metadata and keys.

    A state is accepted once: states already used are remembered until their sign-in would have expired
    anyway, so a replayed callback fails even if the provider accepted a code twice.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        clock: Clock = utcnow,
        lifetime_seconds: float = 600.0,
        leeway_seconds: float = 30.0,
        cache_seconds: float = 3600.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.settings = settings
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._leeway = leeway_seconds
        self._cache_seconds = cache_seconds
        self._timeout = httpx.Timeout(timeout_seconds)
        self._provider: tuple[_Provider, float] | None = None
        self._keys: tuple[dict[str, jwt.PyJWK], float] | None = None
        self._used_states: dict[str, float] = {}

    def _now(self) -> float:
        return self._clock().timestamp()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._timeout, headers={"Accept": "application/json"})

    # --- the two steps -------------------------------------------------------------------------------

    async def start(self, next_path: str) -> tuple[str, PendingSignIn]:
        """The URL to send the browser to, and what it must bring back."""
        async with self._client() as client:
            provider = await self._discover(client)
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),
            started=self._now(),
            next_path=next_path,
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.settings.redirect_uri,
                "scope": SCOPES,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": _challenge(pending.verifier),
                "code_challenge_method": "S256",
            },
            quote_via=quote,
        )
        separator = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{separator}{query}", pending

    async def finish(self, pending: PendingSignIn | None, answer: Mapping[str, str]) -> Identity:
        """The identity behind the provider's answer (the callback's query parameters)."""
        pending = self._accepted(pending, answer.get("state", ""))
        if "error" in answer:
            error = answer["error"]
            # Only the error code is used, never the free text: a crafted link must not put words on our page.
            reason = Reason.DENIED if error in _REFUSALS else Reason.PROVIDER_ERROR
            raise SignInFailed(reason, f"the provider answered {error!r}")
        code = answer.get("code")
        if not code:
            raise SignInFailed(Reason.PROVIDER_ERROR, "the provider's answer has neither a code nor an error")
        async with self._client() as client:
            provider = await self._discover(client)
            tokens = await self._exchange(client, provider, code, pending.verifier)
            claims = await self._validate(client, provider, tokens.get("id_token"), pending)
            access_token = tokens.get("access_token")
            if "email" not in claims and provider.userinfo_endpoint and isinstance(access_token, str):
                claims = {**await self._userinfo(client, provider, access_token, claims["sub"]), **claims}
        return _identity(claims)

    def _accepted(self, pending: PendingSignIn | None, state: str) -> PendingSignIn:
        now = self._now()
        self._used_states = {used: until for used, until in self._used_states.items() if until > now}
        if pending is None or not state or not _same(pending.state, state):
            raise SignInFailed(Reason.STATE, "the callback's state does not match a sign-in of this browser")
        if pending.state in self._used_states:
            raise SignInFailed(Reason.STATE, "the callback's state was used already (a replay)")
        if now > pending.started + self.lifetime_seconds:
            raise SignInFailed(Reason.EXPIRED, f"the sign-in began {now - pending.started:.0f} s ago")
        self._used_states[pending.state] = pending.started + self.lifetime_seconds
        return pending

    # --- talking to the provider ---------------------------------------------------------------------

    async def _json(
        self,
        client: httpx.AsyncClient,
        what: str,
        request: httpx.Request,
        refusal: Reason = Reason.PROVIDER_ERROR,
    ) -> dict[str, Any]:
        """The provider's JSON answer; a 4xx answer fails with `refusal`, naming the provider's error code."""
        try:
            response = await client.send(request)
        except httpx.HTTPError as error:
            raise SignInFailed(Reason.UNREACHABLE, f"{what} {request.url}: {error!r}") from None
        if response.status_code >= 500:
            raise SignInFailed(Reason.UNREACHABLE, f"{what} {request.url}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            raise SignInFailed(refusal, f"{what} {request.url}: HTTP {response.status_code} {error!r}")
        if not isinstance(body, dict):
            raise SignInFailed(
                Reason.PROVIDER_ERROR, f"{what} {request.url}: the answer is not a JSON object"
            )
        return body

    async def _discover(self, client: httpx.AsyncClient) -> _Provider:
        if self._provider is not None and self._now() < self._provider[1]:
            return self._provider[0]
        issuer = self.settings.issuer.rstrip("/")
        url = f"{issuer}/.well-known/openid-configuration"
        document = await self._json(client, "discovery", client.build_request("GET", url))
        try:
            provider = _Provider(
                issuer=_text(document, "issuer"),
                authorization_endpoint=_text(document, "authorization_endpoint"),
                token_endpoint=_text(document, "token_endpoint"),
                jwks_uri=_text(document, "jwks_uri"),
                userinfo_endpoint=_optional_text(document, "userinfo_endpoint"),
                # RFC 8414 2: a provider that does not say takes client_secret_basic.
                auth_methods=_texts(document, "token_endpoint_auth_methods_supported", "client_secret_basic"),
            )
        except ValueError as error:
            raise SignInFailed(Reason.PROVIDER_ERROR, f"discovery {url}: {error}") from None
        if provider.issuer.rstrip("/") != issuer:
            raise SignInFailed(
                Reason.PROVIDER_ERROR,
                f"discovery {url}: names the issuer {provider.issuer!r}, not {issuer!r}",
            )
        if "S256" not in _texts(document, "code_challenge_methods_supported", "S256"):
            raise SignInFailed(
                Reason.PROVIDER_ERROR, f"discovery {url}: the provider does not offer PKCE S256"
            )
        self._provider = (provider, self._now() + self._cache_seconds)
        return provider

    async def _exchange(
        self, client: httpx.AsyncClient, provider: _Provider, code: str, verifier: str
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_uri,
            "code_verifier": verifier,
        }
        headers = {}
        client_id, secret = self.settings.client_id, self.settings.client_secret
        if secret and "client_secret_basic" in provider.auth_methods:
            # RFC 6749 2.3.1: both parts are form-encoded before they are joined and encoded in base64.
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif secret and "client_secret_post" in provider.auth_methods:
            form |= {"client_id": client_id, "client_secret": secret}
        elif secret:
            raise SignInFailed(
                Reason.PROVIDER_ERROR,
                f"the token endpoint takes neither client_secret_basic nor _post ({provider.auth_methods})",
            )
        else:
            form["client_id"] = client_id  # a public client: PKCE alone proves that we asked
        request = client.build_request("POST", provider.token_endpoint, data=form, headers=headers)
        return await self._json(client, "token request", request, Reason.TOKEN_REFUSED)

    async def _userinfo(
        self, client: httpx.AsyncClient, provider: _Provider, access_token: str, subject: str
    ) -> dict[str, Any]:
        assert provider.userinfo_endpoint is not None
        request = client.build_request(
            "GET", provider.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
        )
        claims = await self._json(client, "userinfo", request)
        # OpenID Connect Core 5.3.2: the answer may only be used if it is about the ID token's subject.
        if claims.get("sub") != subject:
            raise SignInFailed(Reason.BAD_TOKEN, "the userinfo answer is about another subject")
        return claims

    # --- the ID token --------------------------------------------------------------------------------

    async def _keys_now(
        self, client: httpx.AsyncClient, provider: _Provider, fresh: bool
    ) -> dict[str, jwt.PyJWK]:
        if not fresh and self._keys is not None and self._now() < self._keys[1]:
            return self._keys[0]
        document = await self._json(client, "keys", client.build_request("GET", provider.jwks_uri))
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            # Keys of other uses or of types we do not take (e.g. encryption keys) are left out.
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue
            keys[entry.get("kid", "")] = key
        self._keys = (keys, self._now() + self._cache_seconds)
        return keys

    async def _key(self, client: httpx.AsyncClient, provider: _Provider, kid: str) -> jwt.PyJWK:
        keys = await self._keys_now(client, provider, fresh=False)
        if kid not in keys:
            # The provider may have rotated its keys since we fetched them: ask once more, not again.
            keys = await self._keys_now(client, provider, fresh=True)
        if kid not in keys:
            raise SignInFailed(
                Reason.BAD_TOKEN, f"the ID token's key {kid!r} is not among the provider's keys"
            )
        return keys[kid]

    async def _validate(
        self, client: httpx.AsyncClient, provider: _Provider, token: Any, pending: PendingSignIn
    ) -> dict[str, Any]:
        if not isinstance(token, str):
            raise SignInFailed(Reason.PROVIDER_ERROR, "the token response has no id_token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise SignInFailed(Reason.BAD_TOKEN, f"the ID token is malformed: {error}") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise SignInFailed(
                Reason.BAD_TOKEN, f"the ID token is signed with {algorithm!r}, not {ALGORITHMS}"
            )
        key = await self._key(client, provider, str(header.get("kid", "")))
        if key.algorithm_name != algorithm:
            raise SignInFailed(
                Reason.BAD_TOKEN, f"the ID token says {algorithm}, its key is {key.algorithm_name}"
            )
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.settings.client_id,
                issuer=provider.issuer,
                # The times are checked below, against the hub's clock.
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "sub", "aud", "exp", "iat"],
                },
            )
        except jwt.PyJWTError as error:
            raise SignInFailed(Reason.BAD_TOKEN, f"the ID token is not valid: {error}") from None
        self._check_claims(claims, pending)
        return claims

    def _check_claims(self, claims: dict[str, Any], pending: PendingSignIn) -> None:
        now, leeway = self._now(), self._leeway
        try:
            expires, issued = float(claims["exp"]), float(claims["iat"])
            not_before = float(claims.get("nbf", issued))
        except (TypeError, ValueError):
            raise SignInFailed(Reason.BAD_TOKEN, "the ID token's exp, iat or nbf is not a number") from None
        if expires <= now - leeway:
            raise SignInFailed(Reason.BAD_TOKEN, f"the ID token expired {now - expires:.0f} s ago")
        # A token for this sign-in cannot have been issued before the sign-in began.
        if not pending.started - leeway <= issued <= now + leeway or not_before > now + leeway:
            raise SignInFailed(
                Reason.BAD_TOKEN, f"the ID token's issue time {issued:.0f} is not now ({now:.0f})"
            )
        azp = claims.get("azp")
        if azp is not None and azp != self.settings.client_id:
            raise SignInFailed(Reason.BAD_TOKEN, f"the ID token was issued to {azp!r}")
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not _same(nonce, pending.nonce):
            raise SignInFailed(Reason.BAD_TOKEN, "the ID token's nonce is not this sign-in's")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise SignInFailed(Reason.BAD_TOKEN, "the ID token has no subject")


# Answers by which the person (or the provider on their behalf) declined, as opposed to a provider fault.
_REFUSALS = frozenset(
    {
        "access_denied",
        "consent_required",
        "login_required",
        "interaction_required",
        "account_selection_required",
    }
)


def _text(document: Mapping[str, Any], field: str) -> str:
    value = document.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: missing or not a string")
    return value


def _optional_text(document: Mapping[str, Any], field: str) -> str | None:
    value = document.get(field)
    return value if isinstance(value, str) and value else None


def _texts(document: Mapping[str, Any], field: str, default: str) -> tuple[str, ...]:
    value = document.get(field, [default])
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else (default,)


def _identity(claims: Mapping[str, Any]) -> Identity:
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise SignInFailed(
            Reason.NO_EMAIL, "neither the ID token nor the userinfo answer has an e-mail address"
        )
    # A provider that lets people enter addresses without confirming them says so with false; one that
    # sends no claim at all vouches for the address by sending it.
    if claims.get("email_verified") is False or claims.get("email_verified") == "false":
        raise SignInFailed(Reason.EMAIL_UNVERIFIED, f"the provider has not verified {email}")
    given = " ".join(str(claims[part]) for part in ("given_name", "family_name") if claims.get(part))
    name = claims.get("name") or given or claims.get("preferred_username") or ""
    return Identity(subject=claims["sub"], email=email, name=str(name)[:200])
