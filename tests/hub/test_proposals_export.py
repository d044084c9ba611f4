"""Exporting a proposal with its decision history, as JSON and as PDF."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pypdf
import pytest

from datenraum.hub.proposals.values import DocumentKind
from datenraum.hub.proposals.workflow import Action

from .helpers import HubFixture
from .proposals_helpers import World, make_world


@pytest.fixture
def world(hub: HubFixture, tmp_path: Path) -> World:
    return make_world(hub, tmp_path)


def decided(world: World) -> int:
    """A proposal sent back once, approved, agreed by one site and declined by the other."""
    p = world.proposals
    proposal_id = p.create(world.researcher, world.draft(title="Kohorte „CKD“ – Verlauf ≥ 5 Jahre ✓"))
    p.upload(world.researcher, proposal_id, DocumentKind.ETHICS_VOTE, "votum.txt", b"Votum: zustimmend\n")
    p.apply(world.researcher, proposal_id, Action.SUBMIT)
    p.apply(world.office, proposal_id, Action.START_FORMAL_CHECK)
    p.apply(world.office, proposal_id, Action.REQUEST_REVISION, reason="Datenschutzkonzept fehlt")
    p.apply(world.researcher, proposal_id, Action.SUBMIT)
    p.apply(world.office, proposal_id, Action.START_FORMAL_CHECK)
    p.apply(world.office, proposal_id, Action.FORWARD_TO_COMMITTEE)
    p.comment(world.committee[0], proposal_id, "interner Hinweis")
    p.apply(world.committee[0], proposal_id, Action.VOTE_APPROVE)
    p.apply(world.committee[1], proposal_id, Action.VOTE_APPROVE)
    p.apply(world.office, proposal_id, Action.REQUEST_SITE_DECISIONS)
    p.apply(world.site_admins["uk-a"], proposal_id, Action.SITE_AGREE, site_id=world.site_ids["uk-a"])
    p.apply(
        world.site_admins["uk-b"],
        proposal_id,
        Action.SITE_DECLINE,
        site_id=world.site_ids["uk-b"],
        reason="Keine Kapazität im Quartal",
    )
    return proposal_id


def test_the_json_export_holds_the_proposal_and_its_whole_history(world: World) -> None:
    proposal_id = decided(world)
    exported = world.proposals.export_json(world.office, proposal_id)
    assert json.loads(json.dumps(exported)) == exported  # plain JSON values only
    proposal = exported["proposal"]
    assert proposal["state"] == "ready-for-delivery"
    assert proposal["draft"]["title"] == "Kohorte „CKD“ – Verlauf ≥ 5 Jahre ✓"
    assert proposal["draft"]["cohort"][0]["site_counts"] == {"uk-a": 610, "uk-b": 620}
    assert proposal["submitted"] == world.hub.clock.now.isoformat()
    assert [(site["site_name"], site["agreed"]) for site in proposal["sites"]] == [
        ("uk-a", True),
        ("uk-b", False),
    ]
    assert [event["kind"] for event in exported["timeline"]][-3:] == [
        "request-site-decisions",
        "site-agree",
        "site-decline",
    ]
    revision = next(event for event in exported["timeline"] if event["kind"] == "request-revision")
    assert revision["text"] == "Datenschutzkonzept fehlt"
    assert revision["actor_email"] == "admin-1@example.org"


def test_the_json_export_shows_each_reader_only_what_they_may_see(world: World) -> None:
    proposal_id = decided(world)
    assert len(world.proposals.export_json(world.office, proposal_id)["proposal"]["votes"]) == 2
    assert world.proposals.export_json(world.researcher, proposal_id)["proposal"]["votes"] == []


def pdf_text(content: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_export_has_the_title_the_state_and_the_decision_history(world: World) -> None:
    proposal_id = decided(world)
    content = world.proposals.export_pdf(world.researcher, proposal_id)
    assert content.startswith(b"%PDF-")
    text = " ".join(pdf_text(content).split())
    # Characters outside the standard fonts' Windows-1252 print as "?"; the JSON keeps them.
    assert "Kohorte „CKD“ – Verlauf ? 5 Jahre ?" in text
    assert "state: ready-for-delivery" in text
    assert "Decision history" in text
    assert (
        "request-revision by admin-1@example.org (formal-check -> revision-requested): Datenschutzkonzept fehlt"
        in text
    )
    assert (
        "site-decline by site-admin-6@example.org (site-decisions -> ready-for-delivery): Keine Kapazität"
        in text
    )
    assert "vote-approve by committee-2@example.org" in text
    assert "uk-b: declined (Keine Kapazität im Quartal)" in text
    assert "interner Hinweis" not in text  # comments are no decisions


def test_the_hub_starts_without_the_pdf_library() -> None:
    """fpdf (with fontTools and numpy) is imported when a PDF is made, not when the hub starts."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, datenraum.hub.app; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [m for m in ("fpdf", "fontTools", "numpy") if m in loaded] == []
