"""The site's side of record linkage: identities from the store's Patient resources, encoded inside the site.

For a count of distinct patients across sites, the site reads the identity data of its cohort (name,
birth date, sex, postal code, city of each Patient resource, as the German patient schema names them),
encodes them into CLKs with the project's key (`datenraum.linkage`) and sends the linkage unit only the
CLKs with its own pseudonyms (a keyed hash of the patient id with a key that never leaves the site), so
neither identities nor patient ids leave the site. The hub gets none of this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import orjson

from datenraum.linkage.encoder import Encoder
from datenraum.site.store import Snapshot

_CHUNK = 5000
_DOMAIN = b"datenraum site linkage pseudonym v1\n"


class DeliveryError(RuntimeError):
    """The linkage unit refused a delivery or could not be reached; the message says which and why."""


def _pick(items: Any, preferred: str) -> dict[str, Any]:
    """The element of a FHIR list with `use` = preferred, else the first; {} for none."""
    if not isinstance(items, list) or not items:
        return {}
    dicts = [i for i in items if isinstance(i, dict)]
    return next((i for i in dicts if i.get("use") == preferred), dicts[0] if dicts else {})


def identity(patient: dict[str, Any]) -> dict[str, str]:
    """A Patient resource's identity columns; a missing or partial value ("1968", "1968-07") is empty."""
    name = _pick(patient.get("name"), "official")
    address = _pick(patient.get("address"), "home")
    given = name.get("given") if isinstance(name.get("given"), list) else []
    birth = patient.get("birthDate")
    return {
        "given_name": " ".join(g for g in given if isinstance(g, str)),
        "family_name": name.get("family") if isinstance(name.get("family"), str) else "",
        "birth_date": birth if isinstance(birth, str) and len(birth) == 10 else "",
        "sex": patient.get("gender") if isinstance(patient.get("gender"), str) else "",
        "postal_code": address.get("postalCode") if isinstance(address.get("postalCode"), str) else "",
        "city": address.get("city") if isinstance(address.get("city"), str) else "",
    }


def identities(snapshot: Snapshot, patient_ids: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(patient id, identity) of the patients, in id order."""
    ids = sorted(set(patient_ids))
    connection = snapshot.connection
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = connection.execute(
            "SELECT id, json FROM resource WHERE resource_type = 'Patient' AND id IN (SELECT unnest(?))"
            " ORDER BY id",
            [chunk],
        ).fetchall()
        for patient_id, text in rows:
            yield patient_id, identity(orjson.loads(text))


def pseudonym(site_key: bytes, patient_id: str) -> str:
    """The site's pseudonym of its patient for the linkage unit: keyed, so the unit cannot invert it."""
    return hmac.new(site_key, _DOMAIN + patient_id.encode(), hashlib.sha256).hexdigest()[:32]


def delivery(
    encoder: Encoder, site_key: bytes, cohort: Sequence[tuple[str, dict[str, str]]]
) -> dict[str, Any]:
    """The body of a delivery to the linkage unit: the schema's digest and one CLK per patient."""
    clks = encoder.encode([ident for _, ident in cohort])
    return {
        "schema_digest": encoder.schema.digest,
        "records": [
            {"pseudonym": pseudonym(site_key, pid), "clk": base64.b64encode(clk.tobytes()).decode("ascii")}
            for (pid, _), clk in zip(cohort, clks, strict=True)
        ],
    }


def deliver_cohort(client: httpx.Client, project: str, count_id: str, site: str, body: dict[str, Any]) -> int:
    """Sends the cohort's CLKs for one count; returns how many the unit took."""
    path = f"/v1/projects/{project}/counts/{count_id}/sites/{site}"
    try:
        response = client.put(path, content=orjson.dumps(body), headers={"content-type": "application/json"})
    except httpx.HTTPError as e:
        raise DeliveryError(f"linkage unit {client.base_url}: {e}") from None
    if response.status_code != 200:
        try:
            reason = response.json().get("error", response.text)
        except ValueError:
            reason = response.text
        raise DeliveryError(
            f"linkage unit refused the cohort of count {count_id} ({response.status_code}): {reason}"
        )
    return int(response.json()["delivered"])
