"""A proposal and its decision history as JSON (complete, for machines) and PDF (for reading and filing).

The PDF uses the standard PDF fonts, which every reader has and which need no font file on the hub;
they cover Windows-1252 (German text, typographic quotes and dashes). Other characters are printed as
"?" there; the JSON export is the complete record. `fpdf` is imported only when a PDF is made, so that
the hub starts without it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from datenraum.hub.proposals.values import Event, Proposal

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = ["to_json", "to_pdf"]

_ENCODING = "windows-1252"
# Transitions and decisions; comments, edits and uploads are in the JSON timeline but no decision.
_NOT_DECISIONS = frozenset({"comment", "edit", "upload"})


def to_json(proposal: Proposal, events: Sequence[Event]) -> dict[str, Any]:
    return {"proposal": _plain(proposal), "timeline": [_plain(event) for event in events]}


def _plain(value: Any) -> Any:
    """Dataclasses, enums, dates, tuples and mappings as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: _plain(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.date):  # datetimes too
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def to_pdf(proposal: Proposal, events: Sequence[Event]) -> bytes:
    # Imported here: fpdf brings fontTools and numpy, which the hub needs only when it makes a PDF.
    from fpdf import FPDF

    draft = proposal.draft
    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = _ENCODING
    pdf.set_title(_printable(f"Proposal {proposal.id}: {draft.title}"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    _paragraph(pdf, draft.title or "(untitled)", 8)
    pdf.set_font("Helvetica", size=10)
    _paragraph(pdf, f"Proposal {proposal.id} - state: {proposal.state}")
    submitted = "not yet" if proposal.submitted is None else _when(proposal.submitted)
    _paragraph(pdf, f"Created {_when(proposal.created)}, submitted {submitted}")

    _heading(pdf, "Abstract")
    _paragraph(pdf, draft.abstract or "-")
    _heading(pdf, "Scientific questions")
    for number, question in enumerate(draft.questions, 1):
        _paragraph(pdf, f"{number}. {question}")
    _heading(pdf, "Requested cohort")
    for cohort in draft.cohort:
        total = "not shown" if cohort.total is None else str(cohort.total)
        _paragraph(pdf, f"{cohort.name}: total {total}")
    _heading(pdf, "Requested data and analysis")
    span = f"{draft.data_from or '...'} to {draft.data_to or '...'}"
    _paragraph(pdf, f"Modules: {', '.join(draft.modules) or '-'}; time span {span}")
    _paragraph(pdf, f"Biosamples: {draft.biosamples or '-'}")
    _paragraph(pdf, f"Planned analysis: {draft.analysis or '-'}")
    _paragraph(pdf, f"Timeline: {draft.start or '...'} to {draft.end or '...'}")
    _heading(pdf, "Participating sites")
    for site in proposal.sites:
        decision = {None: "no decision", True: "agreed", False: "declined"}[site.agreed]
        reason = f" ({site.reason})" if site.reason else ""
        _paragraph(pdf, f"{site.site_name}: {decision}{reason}")
    if proposal.publications:
        _heading(pdf, "Publications")
        for publication in proposal.publications:
            _paragraph(pdf, f"{publication.title} - {publication.reference}")

    _heading(pdf, "Decision history")
    for event in events:
        if event.kind in _NOT_DECISIONS:
            continue
        change = (
            f"{event.from_state} -> {event.to_state}"
            if event.from_state != event.to_state
            else event.to_state
        )
        why = f": {event.text}" if event.text else ""
        _paragraph(pdf, f"{_when(event.created)}  {event.kind} by {event.actor_email} ({change}){why}")
    return bytes(pdf.output())


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    _paragraph(pdf, text, 7)
    pdf.set_font("Helvetica", size=10)


def _paragraph(pdf: FPDF, text: str, height: float = 5) -> None:
    pdf.multi_cell(0, height, _printable(text), new_x="LMARGIN", new_y="NEXT")


def _printable(text: str) -> str:
    return text.encode(_ENCODING, errors="replace").decode(_ENCODING)


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
