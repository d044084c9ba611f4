"""The linkage unit (issue 23): a separate process over real HTTP that links the sites' CLKs and returns
only what the protocol allows: each site its own link table, the hub an obfuscated distinct count.
Authentication of sites and hub, hostile deliveries, key hygiene, and the differencing attack."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import httpx
import numpy as np
import pytest
from linkage_data import patient_resource, start_linkage_unit

from datenraum.linkage import synthetic
from datenraum.linkage.encoder import Encoder
from datenraum.linkage.estimate import calibrate
from datenraum.linkage.keys import project_secret
from datenraum.linkage.schema import load_schema
from datenraum.linkunit.config import ConfigError, load_config, parse_config, token_digest
from datenraum.linkunit.errors import QuotaExceeded
from datenraum.linkunit.service import LinkageUnit, parse_delivery
from datenraum.linkunit.store import Store as UnitStore
from datenraum.query.model import StructuredQuery, parse_query
from datenraum.site import linkage as site_linkage
from datenraum.site.feasibility import StoreEngine
from datenraum.site.ingest import ingest
from datenraum.site.store import Store as SiteStore

SITE_SECRET = b"the sites' shared secret, never at the hub or the unit"
PROJECT = "count"
SITES = ("site-a", "site-b", "site-c")
TOKENS = {site: f"token-of-{site}-{i}" * 2 for i, site in enumerate(SITES)}
HUB_TOKEN = "token-of-the-hub-only"
SCHEMA = load_schema(files("datenraum.linkage") / "schemas" / "de-patient-v3.json")
ENCODER = Encoder(SCHEMA, project_secret(SITE_SECRET, PROJECT))


def _pseudonym(site: str, patient_id: str) -> str:
    """A site's own pseudonym of its patient: nothing the unit could join across sites by itself."""
    return hmac.new(SITE_SECRET + site.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:24]


def _delivery(site: str, records: list[dict[str, str]]) -> dict:
    clks = ENCODER.encode(records)
    return {
        "schema_digest": SCHEMA.digest,
        "records": [
            {"pseudonym": _pseudonym(site, r["patient_id"]), "clk": base64.b64encode(c.tobytes()).decode()}
            for r, c in zip(records, clks, strict=True)
        ],
    }


@pytest.fixture(scope="module")
def threshold() -> float:
    train, _ = synthetic.sites(1500, 3, seed=11)
    return calibrate(
        [ENCODER.encode(s) for s in train], [[r["patient_id"] for r in s] for s in train]
    ).threshold


def _config(folder: Path, threshold: float) -> Path:
    (folder / "unit.key").write_bytes(os.urandom(32).hex().encode())
    config = {
        "unit_key_file": "unit.key",
        "projects": {
            PROJECT: {
                "schema_digest": SCHEMA.digest,
                "clk_bytes": SCHEMA.size // 8,
                "threshold": threshold,
                "sites": {site: token_digest(token) for site, token in TOKENS.items()},
                "hub": token_digest(HUB_TOKEN),
            }
        },
    }
    path = folder / "linkunit.json"
    path.write_text(json.dumps(config))
    return path


@dataclass(frozen=True)
class RunningUnit:
    url: str
    process: subprocess.Popen
    folder: Path

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory, threshold: float) -> Iterator[RunningUnit]:
    folder = tmp_path_factory.mktemp("linkunit")
    url, process = start_linkage_unit(_config(folder, threshold), folder / "unit.sqlite")
    yield RunningUnit(url, process, folder)
    process.terminate()
    process.wait(10)


def _deliver_cohorts(unit: RunningUnit, count_id: str, cohorts: list[list[dict[str, str]]]) -> None:
    for site, records in zip(SITES, cohorts, strict=True):
        with unit.client(TOKENS[site]) as c:
            r = c.put(f"/v1/projects/{PROJECT}/counts/{count_id}/sites/{site}", json=_delivery(site, records))
            assert r.status_code == 200, r.text


def test_the_hub_gets_a_distinct_count_within_five_percent_where_the_naive_sum_overstates(unit):
    cohorts, truth = synthetic.sites(3200, 3, seed=12)  # held out from the calibration
    naive = sum(map(len, cohorts))
    assert naive > 1.4 * truth
    count_id = str(uuid.uuid4())
    _deliver_cohorts(unit, count_id, cohorts)
    with unit.client(HUB_TOKEN) as hub:
        released = hub.get(f"/v1/projects/{PROJECT}/counts/{count_id}").json()
        again = hub.get(f"/v1/projects/{PROJECT}/counts/{count_id}").json()
    assert set(released) == {"distinct", "interval", "below_threshold", "sites"}
    assert released["distinct"] % 10 == 0  # obfuscated and rounded as a site's count
    assert abs(released["distinct"] - truth) <= 0.05 * truth, released
    assert released["interval"][0] <= truth <= released["interval"][1], released
    assert again == released


def test_the_same_cohorts_under_a_new_count_id_give_the_same_answer(unit):
    cohorts, _ = synthetic.sites(300, 3, seed=21)
    answers = []
    for _ in range(2):
        count_id = str(uuid.uuid4())
        _deliver_cohorts(unit, count_id, cohorts)
        with unit.client(HUB_TOKEN) as hub:
            answers.append(hub.get(f"/v1/projects/{PROJECT}/counts/{count_id}").json())
    assert answers[0] == answers[1]  # asking again yields no fresh noise to average away


def test_a_small_union_is_only_below_threshold(unit):
    cohorts, _ = synthetic.sites(4, 3, seed=22)
    count_id = str(uuid.uuid4())
    _deliver_cohorts(unit, count_id, cohorts)
    with unit.client(HUB_TOKEN) as hub:
        released = hub.get(f"/v1/projects/{PROJECT}/counts/{count_id}").json()
    assert released == {"distinct": None, "interval": None, "below_threshold": True, "sites": list(SITES)}


def test_a_count_waits_for_every_site_and_takes_no_delivery_after_release(unit):
    cohorts, _ = synthetic.sites(200, 3, seed=23)
    count_id = str(uuid.uuid4())
    with unit.client(TOKENS["site-a"]) as a:
        assert a.put(
            f"/v1/projects/{PROJECT}/counts/{count_id}/sites/site-a", json=_delivery("site-a", cohorts[0])
        )
    with unit.client(HUB_TOKEN) as hub:
        waiting = hub.get(f"/v1/projects/{PROJECT}/counts/{count_id}")
    assert waiting.status_code == 409 and "site-b, site-c" in waiting.json()["error"]
    _deliver_cohorts(unit, count_id, cohorts)
    with unit.client(HUB_TOKEN) as hub:
        assert hub.get(f"/v1/projects/{PROJECT}/counts/{count_id}").status_code == 200
    with unit.client(TOKENS["site-a"]) as a:
        late = a.put(
            f"/v1/projects/{PROJECT}/counts/{count_id}/sites/site-a", json=_delivery("site-a", cohorts[0][:5])
        )
    assert late.status_code == 409 and "already released" in late.json()["error"]


def test_only_the_hub_creates_counts_and_each_new_id_is_fresh(unit):
    with unit.client(HUB_TOKEN) as hub:
        ids = [hub.post(f"/v1/projects/{PROJECT}/counts").json()["count_id"] for _ in range(2)]
    assert ids[0] != ids[1] and all(uuid.UUID(i) for i in ids)
    with unit.client(TOKENS["site-a"]) as a:
        refused = a.post(f"/v1/projects/{PROJECT}/counts")
    assert refused.status_code == 403 and "only the hub" in refused.json()["error"]


def test_a_count_over_named_sites_waits_for_those_only_and_is_released_over_them_alone(unit):
    """A site without linkage never delivers: the hub names the sites that did. Once released over one set
    of sites, the count is not released again over another (that would be a second count of the cohorts)."""
    cohorts, _ = synthetic.sites(300, 3, seed=25)
    count_id = str(uuid.uuid4())
    for site, records in zip(SITES[:2], cohorts, strict=False):
        with unit.client(TOKENS[site]) as c:
            path = f"/v1/projects/{PROJECT}/counts/{count_id}/sites/{site}"
            assert c.put(path, json=_delivery(site, records)).status_code == 200
    path = f"/v1/projects/{PROJECT}/counts/{count_id}"
    with unit.client(HUB_TOKEN) as hub:
        released = hub.get(path, params={"sites": "site-b,site-a"})
        assert released.status_code == 200 and released.json()["sites"] == ["site-a", "site-b"]
        assert hub.get(path, params={"sites": "site-a,site-b"}).json() == released.json()
        other = hub.get(path, params={"sites": "site-a"})
        assert other.status_code == 409 and "released over site(s) site-a, site-b" in other.json()["error"]
        unknown = hub.get(path, params={"sites": "site-a,site-x"})
        assert unknown.status_code == 400 and "'site-x' is no site of project" in unknown.json()["error"]
        twice = hub.get(f"/v1/projects/{PROJECT}/counts/{uuid.uuid4()}", params={"sites": "site-a,site-a"})
        assert twice.status_code == 400 and "named twice" in twice.json()["error"]


def test_each_site_gets_only_its_own_link_table_and_a_shared_person_has_one_link_id(unit):
    populations, _ = synthetic.sites(600, 3, seed=24)
    for site, records in zip(SITES, populations, strict=True):
        with unit.client(TOKENS[site]) as c:
            r = c.put(f"/v1/projects/{PROJECT}/sites/{site}/clks", json=_delivery(site, records))
            assert r.json() == {"registered": len(records)}
    tables = {}
    for site, records in zip(SITES, populations, strict=True):
        with unit.client(TOKENS[site]) as c:
            rows = c.get(f"/v1/projects/{PROJECT}/sites/{site}/links").json()["links"]
        assert sorted(r["pseudonym"] for r in rows) == sorted(
            _pseudonym(site, p["patient_id"]) for p in records
        )
        by_pseudonym = {r["pseudonym"]: r["link_id"] for r in rows}
        tables[site] = {p["patient_id"]: by_pseudonym[_pseudonym(site, p["patient_id"])] for p in records}
    a, b = tables["site-a"], tables["site-b"]
    shared = sorted(set(a) & set(b))
    assert sum(a[p] == b[p] for p in shared) >= 0.95 * len(shared)
    only_a = sorted(set(a) - set(b))
    assert not {a[p] for p in only_a} & set(b.values()) - {a[p] for p in shared}


def test_sites_and_hub_are_authenticated_and_speak_only_for_themselves(unit):
    cohorts, _ = synthetic.sites(20, 3, seed=25)
    body = _delivery("site-a", cohorts[0])
    path = f"/v1/projects/{PROJECT}/sites/site-a/clks"
    with unit.client(None) as anonymous:
        assert anonymous.put(path, json=body).status_code == 401
    with unit.client("a guessed token") as guess:
        assert guess.put(path, json=body).status_code == 403
    with unit.client(TOKENS["site-b"]) as b:
        assert b.put(path, json=body).status_code == 403  # site-b cannot speak for site-a
        assert b.get(f"/v1/projects/{PROJECT}/sites/site-a/links").status_code == 403
        assert b.get(f"/v1/projects/{PROJECT}/counts/{uuid.uuid4()}").status_code == 403
    with unit.client(HUB_TOKEN) as hub:
        assert hub.put(path, json=body).status_code == 403  # the hub never delivers or reads CLKs
        assert hub.get(f"/v1/projects/{PROJECT}/sites/site-a/links").status_code == 403
        assert hub.get(f"/v1/projects/other/counts/{uuid.uuid4()}").status_code == 404


def test_hostile_deliveries_are_refused_naming_where_and_leave_the_stored_registration(unit):
    site = "site-c"
    records, _ = synthetic.sites(30, 1, seed=26)
    good = _delivery(site, records[0])
    path = f"/v1/projects/{PROJECT}/sites/{site}/clks"
    with unit.client(TOKENS[site]) as c:
        assert c.put(path, json=good).status_code == 200
        before = c.get(f"/v1/projects/{PROJECT}/sites/{site}/links").json()
        clk = good["records"][0]["clk"]
        cases = [
            ({**good, "schema_digest": "0" * 64}, "$.schema_digest"),
            ({**good, "extra": 1}, "unknown field"),
            ({**good, "records": {"a": 1}}, "$.records: expected an array"),
            ({**good, "records": [good["records"][0], {"pseudonym": "x", "clk": "!!"}]}, "$.records[1].clk"),
            ({**good, "records": [{"pseudonym": "x", "clk": clk[:-8]}]}, "$.records[0].clk"),
            ({**good, "records": [{"pseudonym": "a b", "clk": clk}]}, "$.records[0].pseudonym"),
            ({**good, "records": [good["records"][0], good["records"][0]]}, "$.records[1].pseudonym"),
            ({**good, "records": [{"pseudonym": "x", "clk": clk, "name": "Müller"}]}, "$.records[0]"),
        ]
        for body, where in cases:
            r = c.put(path, json=body)
            assert r.status_code == 400 and where in r.json()["error"], (where, r.text)
        not_json = c.put(path, content=b'{"records": [', headers={"content-type": "application/json"})
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
        assert c.put(f"/v1/projects/{PROJECT}/counts/not-an-id!/sites/{site}", json=good).status_code == 400
        assert c.get(f"/v1/projects/{PROJECT}/sites/{site}/links").json() == before


def test_the_unit_never_holds_the_encoding_secret(unit):
    """Its configuration has no place for it, its process environment and its storage do not contain it."""
    project_key = project_secret(SITE_SECRET, PROJECT)
    environ = Path(f"/proc/{unit.process.pid}/environ").read_bytes()
    stored = b"".join(p.read_bytes() for p in unit.folder.iterdir() if p.is_file())
    for secret in (SITE_SECRET, project_key, project_key.hex().encode(), base64.b64encode(project_key)):
        assert secret not in environ and secret not in stored
    raw = json.loads((unit.folder / "linkunit.json").read_text())
    raw["projects"][PROJECT]["site_secret"] = SITE_SECRET.decode()
    with pytest.raises(ConfigError, match=r"projects\.count: unknown field\(s\) \['site_secret'\]"):
        parse_config(raw, unit.folder)


def test_bad_configurations_name_file_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"unit_key_file": "k",\n "projects": }')
    with pytest.raises(ConfigError, match=r"bad\.json: line 2"):
        load_config(path)
    (tmp_path / "k").write_bytes(b"short")
    path.write_text(json.dumps({"unit_key_file": "k", "projects": {"p": {}}}))
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_config(path)
    (tmp_path / "k").write_bytes(b"k" * 40)
    path.write_text(json.dumps({"unit_key_file": "k", "projects": {"p": {"schema_digest": "x"}}}))
    with pytest.raises(ConfigError, match=r"projects\.p\.schema_digest"):
        load_config(path)


def test_differencing_two_cohorts_does_not_tell_whether_a_person_is_at_two_hospitals(tmp_path, threshold):
    """The attacker knows target P is at hospital A and asks twice: once with criteria that leave P out at A,
    once with P in. If P is also in B's cohort, the union does not grow; otherwise it grows by one. The
    exact distinct counts tell it every time; the released ones must not do much better than a coin."""
    (tmp_path / "k").write_bytes(b"u" * 40)
    raw = json.loads(_config(tmp_path, threshold).read_text()) | {"unit_key_file": "k"}
    raw["projects"][PROJECT]["max_counts_per_day"] = 1000  # the attack's pairs, each on its own
    config = parse_config(raw, tmp_path)
    service = LinkageUnit(config, UnitStore(tmp_path / "attack.sqlite"))
    project = config.projects[PROJECT]
    population, _ = synthetic.sites(240, 3, presence=0.5, seed=27)
    deliveries = [
        parse_delivery(_delivery(s, recs), project) for s, recs in zip(SITES, population, strict=True)
    ]
    ids = [[r["patient_id"] for r in recs] for recs in population]
    at_b = set(ids[1])
    targets = ids[0][:100]
    correct_released = correct_exact = 0
    for i, target in enumerate(targets):
        answers, exact = [], []
        for with_target in (False, True):
            count_id = f"attack-{i}-{int(with_target)}"
            rng = np.random.default_rng(i)  # the attacker's base cohort: a random half at each site
            for s, (site, recs) in enumerate(zip(SITES, deliveries, strict=True)):
                keep = [
                    rec for rec, pid in zip(recs, ids[s], strict=True) if rng.random() < 0.5 and pid != target
                ]
                if s == 1 and target in at_b:  # B's criteria select P whenever P is at B
                    keep.append(recs[ids[1].index(target)])
                if s == 0 and with_target:
                    keep.append(recs[ids[0].index(target)])
                service.deliver_cohort(project, count_id, site, keep)
            answers.append(service.distinct_count(project, count_id).distinct)
            if i < 20:  # the exact counts of the first targets, to show the attack is real
                exact.append(_exact_union(service, project, count_id))
        guess_two = answers[1] - answers[0] <= 0
        correct_released += guess_two == (target in at_b)
        correct_exact += bool(exact) and (exact[1] - exact[0] == 0) == (target in at_b)
    assert correct_exact >= 19  # of 20: exact union counts give the answer away
    assert correct_released / len(targets) <= 0.65  # a coin is 0.5


def _exact_union(service: LinkageUnit, project, count_id: str) -> int:
    from datenraum.linkage.estimate import estimate_distinct

    cohorts = service.store.cohort(project.name, count_id)
    mats = [
        np.frombuffer(b"".join(c for _, c in recs), dtype=np.uint8).reshape(len(recs), project.clk_bytes)
        for recs in cohorts.values()
        if recs
    ]
    return estimate_distinct(mats, project.threshold).distinct


def _adults() -> StructuredQuery:
    adult = {
        "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
        "termCodes": [{"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}],
        "valueFilter": {
            "type": "quantity-comparator",
            "comparator": "gt",
            "value": 30,
            "unit": {"code": "a"},
        },
    }
    return parse_query({"inclusionCriteria": [[adult]]})


def test_sites_encode_their_cohort_from_the_store_and_the_hub_learns_only_the_distinct_count(unit, tmp_path):
    """Three site stores with overlapping patients (typos, moves, name changes between sites): each site
    runs the feasibility query, reads its cohort's identities from its Patient resources, encodes them and
    delivers CLKs with its own pseudonyms; the hub's answer is the distinct count, where the sum of the
    sites' counts overstates."""
    people, _ = synthetic.sites(900, 3, seed=31)
    count_id = str(uuid.uuid4())
    truth: set[str] = set()
    naive = 0
    for s, (site, records) in enumerate(zip(SITES, people, strict=True)):
        local = {f"s{s}p{n:05d}": r for n, r in enumerate(records)}  # the site's own ids
        ndjson = tmp_path / f"{site}.ndjson"
        ndjson.write_text("\n".join(json.dumps(patient_resource(i, r)) for i, r in local.items()) + "\n")
        store = SiteStore(tmp_path / site)
        assert not ingest(store, [ndjson]).rejected
        with store.snapshot() as snapshot:
            cohort_ids = StoreEngine(snapshot).patient_ids(_adults(), today=dt.date(2026, 12, 1))
            cohort = list(site_linkage.identities(snapshot, cohort_ids))
        assert [pid for pid, _ in cohort] == cohort_ids
        naive += len(cohort_ids)
        truth |= {local[i]["patient_id"] for i in cohort_ids}
        body = site_linkage.delivery(ENCODER, f"{site}'s own key".encode(), cohort)
        assert not any(pid in json.dumps(body) for pid in cohort_ids)  # no patient id leaves the site
        with unit.client(TOKENS[site]) as c:
            assert site_linkage.deliver_cohort(c, PROJECT, count_id, site, body) == len(cohort_ids)
    with unit.client(HUB_TOKEN) as hub:
        released = hub.get(f"/v1/projects/{PROJECT}/counts/{count_id}").json()
    assert naive > 1.3 * len(truth)
    assert abs(released["distinct"] - len(truth)) <= 0.05 * len(truth), (released, len(truth), naive)
    assert released["interval"][0] <= len(truth) <= released["interval"][1]


def test_a_refused_delivery_is_reported_with_the_units_reason(unit):
    body = {"schema_digest": "x", "records": []}
    with (
        unit.client(TOKENS["site-a"]) as c,
        pytest.raises(site_linkage.DeliveryError, match=r"\(400\): \$\.schema_digest"),
    ):
        site_linkage.deliver_cohort(c, PROJECT, str(uuid.uuid4()), "site-a", body)


def test_serving_with_a_bad_configuration_fails_with_its_reason(tmp_path):
    from click.testing import CliRunner

    from datenraum.cli import main

    path = tmp_path / "unit.json"
    path.write_text(json.dumps({"unit_key_file": "missing.key", "projects": {}}))
    result = CliRunner().invoke(
        main, ["linkunit", "serve", "--config", str(path), "--db", str(tmp_path / "u.db")]
    )
    assert result.exit_code == 2
    assert "unit_key_file" in result.output and "missing.key" in result.output
    assert "Traceback" not in result.output


def test_new_counts_are_rationed_per_project_and_a_released_one_can_be_read_again(tmp_path, threshold):
    (tmp_path / "k").write_bytes(b"u" * 40)
    raw = json.loads(_config(tmp_path, threshold).read_text()) | {"unit_key_file": "k"}
    raw["projects"][PROJECT]["max_counts_per_day"] = 2
    config = parse_config(raw, tmp_path)
    now = [1_000_000.0]
    service = LinkageUnit(config, UnitStore(tmp_path / "quota.sqlite"), clock=lambda: now[0])
    project = config.projects[PROJECT]
    cohorts, _ = synthetic.sites(60, 3, seed=28)
    deliveries = [parse_delivery(_delivery(s, c), project) for s, c in zip(SITES, cohorts, strict=True)]
    ids = [f"quota-count-{i}" for i in range(4)]
    for count_id in ids:
        for site, records in zip(SITES, deliveries, strict=True):
            service.deliver_cohort(project, count_id, site, records)
    first = service.distinct_count(project, ids[0])
    service.distinct_count(project, ids[1])
    with pytest.raises(QuotaExceeded, match="2 counts in 24 hours"):
        service.distinct_count(project, ids[2])
    assert service.distinct_count(project, ids[0]) == first  # released before: read again
    now[0] += 86401
    assert service.distinct_count(project, ids[2]) == first  # the same cohorts, the same answer
