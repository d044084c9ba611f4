"""The proposals service on a real database (SQLite and PostgreSQL): the walk from draft to finished,
what is recorded and who is told, dashboards, validation, documents."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from datenraum.hub.errors import Forbidden, Invalid, NotFound
from datenraum.hub.proposals.uploads import UploadRejected
from datenraum.hub.proposals.values import CohortQuery, DocumentKind, ProjectRole, TeamMember
from datenraum.hub.proposals.workflow import Action, Refused, State
from datenraum.hub.roles import Actor

from .helpers import HubFixture, older_than
from .proposals_helpers import ETHICS_VOTE, World, make_world


@pytest.fixture
def world(hub: HubFixture, tmp_path: Path) -> World:
    return make_world(hub, tmp_path)


def kinds(world: World, proposal_id: int) -> list[str]:
    return [event.kind for event in world.proposals.timeline(world.office, proposal_id)]


def test_a_proposal_walks_from_draft_to_finished_and_every_step_is_recorded(world: World) -> None:
    p, researcher, office = world.proposals, world.researcher, world.office
    proposal_id = p.create(researcher, world.draft())
    p.upload(researcher, proposal_id, DocumentKind.ETHICS_VOTE, "votum.pdf", ETHICS_VOTE)
    assert p.apply(researcher, proposal_id, Action.SUBMIT) == State.SUBMITTED
    assert p.apply(office, proposal_id, Action.START_FORMAL_CHECK) == State.FORMAL_CHECK
    sent_back = p.apply(office, proposal_id, Action.REQUEST_REVISION, reason="Zeitraum fehlt")
    assert sent_back == State.REVISION_REQUESTED
    p.edit(
        world.colleague,
        proposal_id,
        world.draft(data_from=dt.date(2015, 1, 1), data_to=dt.date(2024, 12, 31)),
    )
    assert p.apply(world.colleague, proposal_id, Action.SUBMIT) == State.SUBMITTED
    p.apply(office, proposal_id, Action.START_FORMAL_CHECK)
    assert p.apply(office, proposal_id, Action.FORWARD_TO_COMMITTEE) == State.COMMITTEE_REVIEW
    assert p.apply(world.committee[0], proposal_id, Action.VOTE_APPROVE) == State.COMMITTEE_REVIEW
    assert p.apply(world.committee[1], proposal_id, Action.VOTE_APPROVE) == State.APPROVED
    assert p.apply(office, proposal_id, Action.REQUEST_SITE_DECISIONS) == State.SITE_DECISIONS
    a, b = world.site_ids["uk-a"], world.site_ids["uk-b"]
    assert (
        p.apply(world.site_admins["uk-a"], proposal_id, Action.SITE_AGREE, site_id=a) == State.SITE_DECISIONS
    )
    declined = p.apply(
        world.site_admins["uk-b"], proposal_id, Action.SITE_DECLINE, site_id=b, reason="Kapazität"
    )
    assert declined == State.READY_FOR_DELIVERY
    assert p.apply(office, proposal_id, Action.MARK_DELIVERED) == State.DELIVERED
    p.add_publication(researcher, proposal_id, "CKD nach T2D", "https://doi.org/10.1000/example")
    assert p.apply(researcher, proposal_id, Action.FINISH) == State.FINISHED

    proposal = p.get(researcher, proposal_id)
    assert proposal.state == State.FINISHED
    assert proposal.draft.data_from == dt.date(2015, 1, 1)
    assert [(site.site_name, site.agreed, site.reason) for site in proposal.sites] == [
        ("uk-a", True, None),
        ("uk-b", False, "Kapazität"),
    ]
    assert [publication.reference for publication in proposal.publications] == [
        "https://doi.org/10.1000/example"
    ]
    assert kinds(world, proposal_id) == [
        "create",
        "upload",
        "submit",
        "start-formal-check",
        "request-revision",
        "edit",
        "submit",
        "start-formal-check",
        "forward-to-committee",
        "vote-approve",
        "vote-approve",
        "request-site-decisions",
        "site-agree",
        "site-decline",
        "mark-delivered",
        "add-publication",
        "finish",
    ]
    timeline = p.timeline(researcher, proposal_id)
    revision = timeline[4]
    assert (revision.actor_id, revision.actor_email, revision.text) == (
        office.user_id,
        "admin-1@example.org",
        "Zeitraum fehlt",
    )
    assert (revision.from_state, revision.to_state) == (State.FORMAL_CHECK, State.REVISION_REQUESTED)
    assert revision.created == world.hub.clock.now
    assert timeline[13].site_id == b


def test_submission_freezes_the_cohort_and_its_counts(world: World) -> None:
    proposal_id = world.submitted()
    proposal = world.proposals.get(world.researcher, proposal_id)
    assert proposal.submitted == world.hub.clock.now
    assert proposal.draft.cohort[0].site_counts == {"uk-a": 610, "uk-b": 620}
    with pytest.raises(Refused, match="while the proposal is submitted"):
        world.proposals.edit(world.researcher, proposal_id, world.draft(cohort=()))


def test_a_submission_names_what_is_still_missing(world: World) -> None:
    proposal_id = world.proposals.create(world.researcher, world.draft(abstract="", site_ids=()))
    with pytest.raises(Refused, match="abstract, sites, ethics vote"):
        world.proposals.apply(world.researcher, proposal_id, Action.SUBMIT)
    assert world.proposals.get(world.researcher, proposal_id).state == State.DRAFT


def test_a_rejection_by_the_quorum_needs_reasons_and_ends_the_proposal(world: World) -> None:
    proposal_id = world.in_review()
    with pytest.raises(Refused, match="reason"):
        world.proposals.apply(world.committee[0], proposal_id, Action.VOTE_REJECT)
    world.proposals.apply(world.committee[0], proposal_id, Action.VOTE_REJECT, reason="Fragestellung unklar")
    state = world.proposals.apply(world.committee[1], proposal_id, Action.VOTE_REJECT, reason="Datenschutz")
    assert state == State.REJECTED
    votes = world.proposals.get(world.office, proposal_id).votes
    assert [(vote.in_favour, vote.reason) for vote in votes] == [
        (False, "Fragestellung unklar"),
        (False, "Datenschutz"),
    ]


def test_the_quorum_is_a_setting(hub: HubFixture, tmp_path: Path) -> None:
    world = make_world(hub, tmp_path, quorum=3)
    proposal_id = world.in_review()
    for member, expected in zip(
        world.committee, [State.COMMITTEE_REVIEW] * 2 + [State.APPROVED], strict=True
    ):
        assert world.proposals.apply(member, proposal_id, Action.VOTE_APPROVE) == expected


def test_committee_votes_at_the_same_time_reach_the_quorum_exactly_once(world: World) -> None:
    proposal_id = world.in_review()
    barrier = threading.Barrier(2)
    results: list[State] = []

    def vote(member: Actor) -> None:
        barrier.wait()
        results.append(world.proposals.apply(member, proposal_id, Action.VOTE_APPROVE))

    threads = [threading.Thread(target=vote, args=(member,)) for member in world.committee[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == sorted([State.COMMITTEE_REVIEW, State.APPROVED])
    assert world.proposals.get(world.office, proposal_id).state == State.APPROVED


def test_votes_are_shown_to_the_office_and_committee_but_not_to_the_researchers(world: World) -> None:
    proposal_id = world.in_review()
    world.proposals.apply(world.committee[0], proposal_id, Action.VOTE_APPROVE)
    assert len(world.proposals.get(world.committee[2], proposal_id).votes) == 1
    assert world.proposals.get(world.researcher, proposal_id).votes == ()


def test_a_team_member_on_the_committee_cannot_vote_on_the_proposal(world: World) -> None:
    member = world.committee[0]
    team = (TeamMember(member.user_id, ProjectRole.OBSERVER),)
    proposal_id = world.in_review(team=team)
    with pytest.raises(Forbidden, match="team"):
        world.proposals.apply(member, proposal_id, Action.VOTE_APPROVE)


def test_the_project_goes_on_with_every_site_that_agreed(world: World) -> None:
    proposal_id = world.at_sites()
    for name, site_id in world.site_ids.items():
        world.proposals.apply(world.site_admins[name], proposal_id, Action.SITE_AGREE, site_id=site_id)
    proposal = world.proposals.get(world.office, proposal_id)
    assert proposal.state == State.READY_FOR_DELIVERY
    assert all(site.agreed for site in proposal.sites)


def test_the_project_ends_when_no_site_agreed(world: World) -> None:
    proposal_id = world.at_sites()
    for name, site_id in world.site_ids.items():
        admin = world.site_admins[name]
        world.proposals.apply(
            admin, proposal_id, Action.SITE_DECLINE, site_id=site_id, reason="keine Kapazität"
        )
    assert world.proposals.get(world.office, proposal_id).state == State.NO_SITE_AGREED


def test_a_site_admin_decides_only_for_their_own_site(world: World) -> None:
    proposal_id = world.at_sites()
    with pytest.raises(Forbidden, match="does not administer"):
        world.proposals.apply(
            world.site_admins["uk-a"], proposal_id, Action.SITE_AGREE, site_id=world.site_ids["uk-b"]
        )


def test_a_researcher_withdraws_before_approval_but_not_after(world: World) -> None:
    early = world.in_review()
    assert world.proposals.apply(world.researcher, early, Action.WITHDRAW) == State.WITHDRAWN
    late = world.approved()
    with pytest.raises(Refused, match="approved"):
        world.proposals.apply(world.researcher, late, Action.WITHDRAW)


def test_a_proposal_is_invisible_to_those_who_may_not_see_it(world: World) -> None:
    draft = world.proposals.create(world.researcher, world.draft())
    for outsider in (world.stranger, world.office):
        with pytest.raises(NotFound):
            world.proposals.get(outsider, draft)
        with pytest.raises(NotFound):
            world.proposals.apply(outsider, draft, Action.SUBMIT)
    assert world.proposals.get(world.colleague, draft).state == State.DRAFT
    with pytest.raises(NotFound):
        world.proposals.get(world.researcher, 999)


def test_only_researchers_create_proposals(world: World) -> None:
    with pytest.raises(Forbidden):
        world.proposals.create(world.office, world.draft())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": "x" * 301}, "title: at most 300 characters"),
        ({"title": "null\x00byte"}, "title: must not contain NUL"),
        ({"modules": ("Person", "Genom")}, "modules: not a module of the core data set: Genom"),
        ({"cohort": (CohortQuery("kaputt", {"version": "x"}),)}, r"cohort\[0\]\.query: "),
        ({"cohort": (CohortQuery("", older_than(50)),)}, r"cohort\[0\]\.name: must not be empty"),
        ({"cohort": (CohortQuery("neg", older_than(50), -1),)}, r"cohort\[0\]\.total: must be a count"),
        ({"site_ids": (12345,)}, "site_ids: unknown id 12345"),
        ({"team": (TeamMember(999, ProjectRole.OBSERVER),)}, "team: unknown id 999"),
        ({"start": dt.date(2026, 1, 1), "end": dt.date(2025, 1, 1)}, "end: 2025-01-01 is before 2026-01-01"),
        ({"questions": ("",)}, r"questions\[0\]: must not be empty"),
    ],
)
def test_a_draft_that_cannot_be_stored_is_refused_naming_the_field(
    world: World, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(Invalid, match=message):
        world.proposals.create(world.researcher, world.draft(**changes))
    assert world.hub.count("proposals") == 0


def test_a_refused_edit_leaves_the_draft_as_it_was(world: World) -> None:
    proposal_id = world.proposals.create(world.researcher, world.draft())
    with pytest.raises(Invalid):
        world.proposals.edit(world.researcher, proposal_id, world.draft(site_ids=(12345,)))
    assert world.proposals.get(world.researcher, proposal_id).draft == world.draft()


# -- notifications and dashboards


def texts(world: World, actor: Actor) -> list[str]:
    return [notification.text for notification in world.proposals.notifications(actor)]


def test_whoever_must_act_next_is_notified_and_the_team_is_told(world: World) -> None:
    proposal_id = world.submitted()
    title = f"“Diabetes und Niereninsuffizienz” (proposal {proposal_id})"
    assert texts(world, world.office) == [f"{title} waits for you: submitted"]
    assert texts(world, world.colleague) == [f"{title} is now submitted"]
    assert texts(world, world.researcher) == []  # it was their own action
    world.proposals.apply(world.office, proposal_id, Action.START_FORMAL_CHECK)
    world.proposals.apply(world.office, proposal_id, Action.FORWARD_TO_COMMITTEE)
    for member in world.committee:
        assert texts(world, member) == [f"{title} waits for you: committee-review"]
    assert texts(world, world.site_admins["uk-a"]) == []
    world.proposals.apply(world.committee[0], proposal_id, Action.VOTE_APPROVE)
    world.proposals.apply(world.committee[1], proposal_id, Action.VOTE_APPROVE)
    world.proposals.apply(world.office, proposal_id, Action.REQUEST_SITE_DECISIONS)
    for admin in world.site_admins.values():
        assert texts(world, admin) == [f"{title} waits for you: site-decisions"]
    assert texts(world, world.researcher)[0] == f"{title} is now site-decisions"


def test_notifications_are_marked_read_only_by_their_owner(world: World) -> None:
    world.submitted()
    [mine] = world.proposals.notifications(world.office)
    [theirs] = world.proposals.notifications(world.colleague)
    assert world.proposals.mark_read(world.office, [mine.id, theirs.id]) == 1
    assert world.proposals.notifications(world.office, unread_only=True) == []
    assert world.proposals.notifications(world.office)[0].read == world.hub.clock.now
    assert world.proposals.notifications(world.colleague, unread_only=True) == [theirs]
    assert world.proposals.mark_read(world.office, [mine.id]) == 0


def waiting(world: World, actor: Actor) -> list[tuple[int, tuple[Action, ...]]]:
    return [(summary.id, summary.due) for summary in world.proposals.waiting_for(actor)]


def test_each_role_sees_what_waits_for_it(world: World) -> None:
    draft = world.proposals.create(world.researcher, world.draft())
    submitted = world.submitted()
    review = world.in_review()
    sites = world.at_sites()
    assert waiting(world, world.researcher) == [(draft, (Action.SUBMIT,))]
    assert waiting(world, world.stranger) == []
    assert waiting(world, world.office) == [(submitted, (Action.START_FORMAL_CHECK,))]
    assert waiting(world, world.committee[0]) == [(review, (Action.VOTE_APPROVE, Action.VOTE_REJECT))]
    assert waiting(world, world.committee[2]) == [(review, (Action.VOTE_APPROVE, Action.VOTE_REJECT))]
    site_a = world.site_admins["uk-a"]
    assert waiting(world, site_a) == [(sites, (Action.SITE_AGREE, Action.SITE_DECLINE))]
    world.proposals.apply(world.committee[0], review, Action.VOTE_APPROVE)
    assert waiting(world, world.committee[0]) == []  # has voted
    world.proposals.apply(site_a, sites, Action.SITE_AGREE, site_id=world.site_ids["uk-a"])
    assert waiting(world, site_a) == []
    assert waiting(world, world.site_admins["uk-b"]) == [(sites, (Action.SITE_AGREE, Action.SITE_DECLINE))]


# -- comments, documents, publications


def test_comments_appear_on_the_timeline_for_everyone_involved(world: World) -> None:
    proposal_id = world.in_review()
    world.proposals.comment(world.committee[0], proposal_id, "Bitte Fallzahlschätzung begründen.")
    world.proposals.comment(world.researcher, proposal_id, "Siehe Anhang.")
    comments = [e for e in world.proposals.timeline(world.researcher, proposal_id) if e.kind == "comment"]
    assert [(c.actor_id, c.text) for c in comments] == [
        (world.committee[0].user_id, "Bitte Fallzahlschätzung begründen."),
        (world.researcher.user_id, "Siehe Anhang."),
    ]
    with pytest.raises(Invalid, match="text: must not be empty"):
        world.proposals.comment(world.researcher, proposal_id, "  ")
    with pytest.raises(NotFound):
        world.proposals.comment(world.stranger, proposal_id, "hallo")


def test_a_document_is_stored_and_downloaded_by_its_id(world: World) -> None:
    proposal_id = world.proposals.create(world.researcher, world.draft())
    document = world.proposals.upload(
        world.researcher, proposal_id, DocumentKind.OTHER, "../Plan.txt", b"Plan\n"
    )
    assert (document.file_name, document.media_type, document.size) == ("Plan.txt", "text/plain", 5)
    assert world.proposals.document(world.colleague, proposal_id, document.id) == (document, b"Plan\n")
    with pytest.raises(NotFound):
        world.proposals.document(world.stranger, proposal_id, document.id)
    with pytest.raises(NotFound):
        world.proposals.document(world.researcher, proposal_id, document.id + 1)


def test_a_rejected_upload_leaves_no_trace(world: World) -> None:
    proposal_id = world.proposals.create(world.researcher, world.draft())
    with pytest.raises(UploadRejected, match=r"votum\.pdf: the content is not one of the accepted types"):
        world.proposals.upload(
            world.researcher, proposal_id, DocumentKind.ETHICS_VOTE, "votum.pdf", b"MZ\x90\x00"
        )
    with pytest.raises(NotFound):
        world.proposals.upload(world.stranger, proposal_id, DocumentKind.OTHER, "x.pdf", ETHICS_VOTE)
    assert world.hub.count("proposal_documents") == 0
    assert not world.uploads.exists() or not any(path.is_file() for path in world.uploads.rglob("*"))


def test_publications_are_added_once_the_data_is_delivered(world: World) -> None:
    proposal_id = world.approved()
    with pytest.raises(Refused):
        world.proposals.add_publication(world.researcher, proposal_id, "Zu früh", "https://doi.org/10.1000/1")
    with pytest.raises(Invalid, match="reference: must not be empty"):
        world.proposals.add_publication(world.researcher, proposal_id, "Titel", "")


def test_apply_refuses_actions_that_have_their_own_method(world: World) -> None:
    proposal_id = world.proposals.create(world.researcher, world.draft())
    with pytest.raises(Invalid, match="own method"):
        world.proposals.apply(world.researcher, proposal_id, Action.EDIT)


def test_allowed_actions_come_with_the_proposal(world: World) -> None:
    proposal_id = world.submitted()
    assert world.proposals.get(world.office, proposal_id).allowed == (Action.START_FORMAL_CHECK,)
    assert world.proposals.get(world.researcher, proposal_id).allowed == (Action.WITHDRAW,)


def test_each_actor_lists_exactly_the_proposals_they_may_see(world: World) -> None:
    draft = world.proposals.create(world.researcher, world.draft())
    other_sites = world.proposals.create(
        world.stranger, world.draft(site_ids=(world.site_ids["uk-b"],), team=())
    )
    submitted = world.submitted()
    world.hub.clock.advance(60)
    world.proposals.apply(world.office, submitted, Action.START_FORMAL_CHECK)

    def listed(actor: Actor, state: State | None = None) -> list[int]:
        return [summary.id for summary in world.proposals.visible(actor, state)]

    assert listed(world.researcher) == [submitted, draft]  # newest change first
    assert listed(world.colleague) == [submitted, draft]
    assert listed(world.stranger) == [other_sites]
    assert listed(world.office) == [submitted]
    assert listed(world.site_admins["uk-a"]) == [submitted]
    assert listed(world.researcher, State.DRAFT) == [draft]
    assert world.proposals.visible(world.office)[0].due == (
        Action.REQUEST_REVISION,
        Action.FORWARD_TO_COMMITTEE,
    )
