"""The delivery service on a real database (SQLite and PostgreSQL): from a proposal ready for delivery
to the team's download, with the custodians' decisions, a resumed upload, tampering, a missed period
and who may see what."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from datenraum.deidentify.package import new_recipient_key
from datenraum.hub.accounts.service import Site, User
from datenraum.hub.delivery.service import Deliveries, project_id
from datenraum.hub.delivery.workflow import DeliveryState, SiteState, StateRefused
from datenraum.hub.errors import Conflict, Forbidden, Invalid, NotFound
from datenraum.hub.proposals.values import Analysis
from datenraum.hub.proposals.workflow import Action, State
from datenraum.hub.roles import Actor
from datenraum.protocol.messages import TaskResult, TaskState, TaskType

from .helpers import HubFixture
from .proposals_helpers import World, make_world

CRTDL = {
    "version": "http://json-schema.org/to-be-done/schema#",
    "display": "",
    "cohortDefinition": {"version": "http://to_be_decided.com/draft-1/schema#", "inclusionCriteria": []},
    "dataExtraction": {"attributeGroups": []},
}
SUMMARY = {"Num-Final-Patients": 12, "Deidentified-Resources": {"Patient": 12}, "Leak-Gate-Findings": 0}


@pytest.fixture
def world(hub: HubFixture, tmp_path: Path) -> World:
    return make_world(hub, tmp_path)


@pytest.fixture
def deliveries(hub: HubFixture, tmp_path: Path) -> Deliveries:
    config = dataclasses.replace(hub.config, delivery_folder=str(tmp_path / "deliveries"))
    return Deliveries(hub.sessions, config, hub.clock)


def user(actor: Actor) -> User:
    return User(actor.user_id, f"user-{actor.user_id}@example.org", actor.roles, actor.site_ids)


def ready(world: World, *, agree: tuple[str, ...] = ("uk-a", "uk-b")) -> int:
    proposal_id = world.at_sites(analysis=Analysis.DATA_DELIVERY)
    for name, admin in world.site_admins.items():
        if name in agree:
            world.proposals.apply(admin, proposal_id, Action.SITE_AGREE, site_id=world.site_ids[name])
        else:
            world.proposals.apply(
                admin,
                proposal_id,
                Action.SITE_DECLINE,
                reason="keine Kapazität",
                site_id=world.site_ids[name],
            )
    return proposal_id


def public_key() -> str:
    _private, public = new_recipient_key()
    return public.decode()


def sites(world: World) -> dict[str, Site]:
    return {name: Site(site_id, name) for name, site_id in world.site_ids.items()}


def extracted(deliveries: Deliveries, site: Site) -> str:
    (task,) = deliveries.claim(site)
    deliveries.record(site, task.id, TaskResult(task.id, TaskState.ANSWERED, summary=SUMMARY))
    return task.id


def upload(deliveries: Deliveries, site: Site, task_id: str, package: bytes, chunk: int = 1000) -> None:
    offset = deliveries.upload_offset(site, task_id)
    while offset < len(package):
        data = package[offset : offset + chunk]
        offset = deliveries.receive(site, task_id, offset, data, hashlib.sha256(data).hexdigest())
    deliveries.complete(site, task_id, len(package), hashlib.sha256(package).hexdigest())


def kinds(world: World, proposal_id: int) -> list[str]:
    return [event.kind for event in world.proposals.timeline(world.office, proposal_id)]


def test_a_started_delivery_gives_each_agreed_site_one_extraction_task_with_the_pinned_crtdl(
    world: World, deliveries: Deliveries
) -> None:
    proposal_id = ready(world, agree=("uk-a",))
    key = public_key()
    delivery = deliveries.start(user(world.office), proposal_id, CRTDL, key)
    assert [(p.site, p.state) for p in delivery.parts] == [("uk-a", SiteState.REQUESTED)]
    assert delivery.state is DeliveryState.WAITING_FOR_DATA
    assert (
        delivery.crtdl_sha256
        == hashlib.sha256(json.dumps(CRTDL, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )
    (task,) = deliveries.claim(sites(world)["uk-a"])
    assert task.type is TaskType.EXTRACTION
    assert task.payload["crtdl"] == CRTDL and task.payload["recipient_key"] == key
    assert task.payload["project"] == project_id(proposal_id)
    assert deliveries.claim(sites(world)["uk-a"]) == []  # leased: not handed out twice
    assert deliveries.claim(sites(world)["uk-b"]) == []  # declined: no task
    assert kinds(world, proposal_id)[-2:] == ["delivery-requested", "delivery-extracting"]


def test_from_extraction_to_download_every_step_is_recorded_and_the_proposal_becomes_delivered(
    world: World, deliveries: Deliveries
) -> None:
    proposal_id = ready(world)
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    a, b = sites(world)["uk-a"], sites(world)["uk-b"]
    task_a, task_b = extracted(deliveries, a), extracted(deliveries, b)
    admin_a, admin_b = user(world.site_admins["uk-a"]), user(world.site_admins["uk-b"])
    waiting = deliveries.awaiting_release(admin_a)
    assert [(p.site, p.summary) for p in waiting[0].parts if p.site == "uk-a"] == [("uk-a", SUMMARY)]
    with pytest.raises(Forbidden):
        deliveries.release(admin_b, task_a)  # another site's custodian
    with pytest.raises(Conflict):
        deliveries.upload_offset(a, task_a)  # nothing leaves before the release
    deliveries.release(admin_a, task_a)
    with pytest.raises(Invalid):
        deliveries.reject(admin_b, task_b, "  ")
    deliveries.reject(admin_b, task_b, "Stichprobe enthält Freitext")
    assert [u.task_id for u in deliveries.uploads(a)] == [task_a] and deliveries.uploads(b) == []
    package = bytes(range(256)) * 20
    upload(deliveries, a, task_a, package)
    delivery = deliveries.get(user(world.researcher), proposal_id)
    assert delivery.state is DeliveryState.DELIVERED
    assert [(p.site, p.state) for p in delivery.parts] == [
        ("uk-a", SiteState.UPLOADED),
        ("uk-b", SiteState.REJECTED),
    ]
    assert world.proposals.get(world.researcher, proposal_id).state == State.DELIVERED

    fetched, stream = deliveries.download(user(world.colleague), proposal_id)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        index = json.loads(tar.extractfile("delivery.json").read())  # type: ignore[union-attr]
        assert tar.extractfile("sites/uk-a.dpkg").read() == package  # type: ignore[union-attr]
        assert sorted(tar.getnames()) == ["delivery.json", "sites/uk-a.dpkg"]
    assert fetched.state is DeliveryState.FETCHED
    assert [(s["site"], s["state"], s["sha256"]) for s in index["sites"]] == [
        ("uk-a", "uploaded", hashlib.sha256(package).hexdigest()),
        ("uk-b", "rejected", None),
    ]
    assert kinds(world, proposal_id)[-11:] == [
        "delivery-requested",
        "delivery-extracting",
        "delivery-extracted",
        "delivery-extracting",
        "delivery-extracted",
        "delivery-released",
        "delivery-rejected",
        "delivery-uploaded",
        "delivery-delivered",
        "delivered",
        "delivery-fetched",
    ]
    # Each entry is the act of whoever did it: the office started, the agents extracted and uploaded,
    # the custodians decided, the hub concluded, the colleague downloaded.
    actors = [
        event.actor_id or event.actor_email for event in world.proposals.timeline(world.office, proposal_id)
    ][-11:]
    assert actors == [
        world.office.user_id,
        "agent of uk-a",
        "agent of uk-a",
        "agent of uk-b",
        "agent of uk-b",
        world.site_admins["uk-a"].user_id,
        world.site_admins["uk-b"].user_id,
        "agent of uk-a",
        "hub",
        "hub",
        world.colleague.user_id,
    ]


def test_only_the_projects_team_downloads_anyone_else_gets_not_found(
    world: World, deliveries: Deliveries
) -> None:
    proposal_id = ready(world, agree=("uk-a",))
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    a = sites(world)["uk-a"]
    task = extracted(deliveries, a)
    deliveries.release(user(world.site_admins["uk-a"]), task)
    upload(deliveries, a, task, b"sealed")
    for outsider in (world.stranger, world.office, world.site_admins["uk-a"]):
        with pytest.raises(NotFound):
            deliveries.download(user(outsider), proposal_id)
    with pytest.raises(NotFound):
        deliveries.get(user(world.stranger), proposal_id)
    with pytest.raises(NotFound):  # another site's agent cannot touch the part
        deliveries.upload_offset(sites(world)["uk-b"], task)


def test_an_interrupted_upload_continues_at_the_acknowledged_offset_after_a_hub_restart(
    world: World, deliveries: Deliveries, hub: HubFixture
) -> None:
    proposal_id = ready(world, agree=("uk-a",))
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    a = sites(world)["uk-a"]
    task = extracted(deliveries, a)
    deliveries.release(user(world.site_admins["uk-a"]), task)
    package = b"".join(i.to_bytes(4, "big") for i in range(5000))
    first = package[:7000]
    assert deliveries.receive(a, task, 0, first, hashlib.sha256(first).hexdigest()) == 7000
    restarted = Deliveries(hub.sessions, deliveries._config, hub.clock)  # a new hub process, same disk
    with pytest.raises(Conflict, match="continues at offset 7000"):
        restarted.receive(a, task, 0, first, hashlib.sha256(first).hexdigest())
    assert restarted.uploads(a)[0].received == 7000
    upload(restarted, a, task, package, chunk=4096)
    assert restarted.get(user(world.researcher), proposal_id).parts[0].package_bytes == len(package)


def test_a_tampered_chunk_or_package_is_refused_and_nothing_half_written_is_kept(
    world: World, deliveries: Deliveries
) -> None:
    proposal_id = ready(world, agree=("uk-a",))
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    a = sites(world)["uk-a"]
    task = extracted(deliveries, a)
    deliveries.release(user(world.site_admins["uk-a"]), task)
    package = b"x" * 3000
    tampered = b"y" + package[1:1000]
    with pytest.raises(Invalid, match="SHA-256"):
        deliveries.receive(a, task, 0, tampered, hashlib.sha256(package[:1000]).hexdigest())
    assert deliveries.upload_offset(a, task) == 0
    # A byte changed on the way that also changed its chunk's digest passes the chunk check, not the package's.
    deliveries.receive(a, task, 0, tampered, hashlib.sha256(tampered).hexdigest())
    deliveries.receive(a, task, 1000, package[1000:], hashlib.sha256(package[1000:]).hexdigest())
    with pytest.raises(Conflict, match="refused and must be sent again"):
        deliveries.complete(a, task, len(package), hashlib.sha256(package).hexdigest())
    assert deliveries.upload_offset(a, task) == 0
    assert not list((Path(deliveries._config.delivery_folder)).rglob("*.dpkg"))
    upload(deliveries, a, task, package)
    assert deliveries.get(user(world.researcher), proposal_id).parts[0].state is SiteState.UPLOADED


def test_a_site_that_misses_the_period_fails_and_the_delivery_ends_without_data(
    world: World, deliveries: Deliveries, hub: HubFixture
) -> None:
    proposal_id = ready(world, agree=("uk-a",))
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    extracted(deliveries, sites(world)["uk-a"])
    hub.clock.advance(29 * 86400)
    assert deliveries.sweep() == 1
    delivery = deliveries.get(user(world.researcher), proposal_id)
    assert delivery.state is DeliveryState.NO_DATA
    assert delivery.parts[0].reason == "the site missed the delivery period"
    with pytest.raises(StateRefused):
        deliveries.release(user(world.site_admins["uk-a"]), delivery.parts[0].task_id)
    # The office that started it is told (the custodians too, by their roles in the portal's table).
    texts = [n.text for n in world.proposals.notifications(world.office)]
    assert any("uk-a missed the delivery period" in text for text in texts), texts


def test_a_failed_extraction_is_recorded_with_the_sites_reason(world: World, deliveries: Deliveries) -> None:
    proposal_id = ready(world, agree=("uk-a",))
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    a = sites(world)["uk-a"]
    (task,) = deliveries.claim(a)
    failed = TaskResult(task.id, TaskState.FAILED, reason="the leak gate blocked the package")
    assert deliveries.record(a, task.id, failed) is SiteState.FAILED
    assert deliveries.record(a, task.id, failed) is SiteState.FAILED  # a replay changes nothing
    assert deliveries.get(user(world.office), proposal_id).state is DeliveryState.NO_DATA


@pytest.mark.parametrize(
    ("change", "error", "text"),
    [
        ({"crtdl": "select *"}, Invalid, "crtdl: expected"),
        ({"crtdl": {"cohortDefinition": {}}}, Invalid, "crtdl.dataExtraction"),
        (
            {"recipient_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
            Invalid,
            "recipient_key",
        ),
        ({"profile": "none"}, Invalid, "profile"),
    ],
)
def test_a_bad_start_names_the_field(
    world: World, deliveries: Deliveries, change: dict, error: type, text: str
) -> None:
    proposal_id = ready(world)
    arguments = {"crtdl": CRTDL, "recipient_key": public_key(), "profile": "fdpg"} | change
    with pytest.raises(error, match=text):
        deliveries.start(user(world.office), proposal_id, **arguments)
    assert deliveries.claim(sites(world)["uk-a"]) == []


def test_only_an_approved_data_delivery_proposal_ready_for_delivery_gets_a_delivery(
    world: World, deliveries: Deliveries
) -> None:
    federated = world.at_sites(analysis=Analysis.FEDERATED_ANALYSIS)
    for name, admin in world.site_admins.items():
        world.proposals.apply(admin, federated, Action.SITE_AGREE, site_id=world.site_ids[name])
    with pytest.raises(Conflict, match="not data delivery"):
        deliveries.start(user(world.office), federated, CRTDL, public_key())
    early = world.approved(analysis=Analysis.DATA_DELIVERY)
    with pytest.raises(Conflict, match="not ready-for-delivery"):
        deliveries.start(user(world.office), early, CRTDL, public_key())
    proposal_id = ready(world)
    with pytest.raises(Forbidden):
        deliveries.start(user(world.researcher), proposal_id, CRTDL, public_key())
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    with pytest.raises(Conflict, match="has a delivery already"):
        deliveries.start(user(world.office), proposal_id, CRTDL, public_key())


def test_the_counts_of_a_package_are_for_the_team_and_that_sites_custodian_only(
    world: World, deliveries: Deliveries
) -> None:
    proposal_id = ready(world)
    deliveries.start(user(world.office), proposal_id, CRTDL, public_key())
    extracted(deliveries, sites(world)["uk-a"])

    def summaries(actor: Actor) -> dict[str, object]:
        return {part.site: part.summary for part in deliveries.get(user(actor), proposal_id).parts}

    assert summaries(world.researcher) == {"uk-a": SUMMARY, "uk-b": None}
    assert summaries(world.site_admins["uk-a"])["uk-a"] == SUMMARY
    assert summaries(world.site_admins["uk-b"])["uk-a"] is None
    assert summaries(world.office)["uk-a"] is None
