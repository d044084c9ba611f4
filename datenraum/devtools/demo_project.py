"""The demo's federated-analysis project: an approved Use & Access proposal, and its worked example.

`seed_project` writes into the demo hub's database what the Use & Access workflow leaves behind once
the office, the committee and every site have said yes (the proposal with its frozen cohort, state
`ready-for-delivery`, "federated analysis only", every demo site agreed), so that the demo's researcher
can analyse at once instead of playing five roles first. `run_example` is the worked example of the
README: a pooled summary and a logistic regression of type 2 diabetes over the demo's sites through the
hub's analysis API (`datenraum.analysis.Client`), as a researcher would run them from a notebook.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from datenraum.analysis import Client
from datenraum.hub.db import SiteRow, UserRow, create_hub_engine
from datenraum.hub.proposals.tables import CohortRow, EventRow, ProposalRow, ProposalSiteRow

__all__ = ["EXAMPLE_FORMULA", "EXAMPLE_VARIABLES", "Example", "run_example", "seed_project"]

PROJECT_TITLE = "Typ-2-Diabetes: Risikofaktoren über alle Standorte (Demo)"
# Adults: the rows of the analysis, at every site.
COHORT: dict[str, Any] = {
    "version": "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
    "display": "Erwachsene",
    "inclusionCriteria": [
        [
            {
                "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                "termCodes": [{"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}],
                "valueFilter": {
                    "type": "quantity-comparator",
                    "comparator": "gt",
                    "value": 18,
                    "unit": {"code": "a", "display": "Jahre"},
                },
            }
        ]
    ],
}
# The synthetic data have no body weight or height: hypertension stands where BMI would.
EXAMPLE_VARIABLES: dict[str, Any] = {
    "t2d": {"kind": "condition", "codes": ["E11"], "value": "any"},
    "age": {"kind": "age", "at": "2024-01-01"},
    "sex": {"kind": "sex"},
    "htn": {"kind": "condition", "codes": ["I10"], "value": "any"},
}
EXAMPLE_FORMULA = "t2d ~ age + factor(sex) + htn"
FEMALE_OR_MALE = [{"variable": "sex", "comparator": "in", "value": ["female", "male"]}]


def seed_project(database_url: str, researcher: str, office: str, sites: list[str]) -> int:
    """The approved federated-analysis project of `researcher` over `sites` (decided by `office`); its id."""
    engine = create_hub_engine(database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        with engine.begin() as connection:
            users = dict(
                connection.execute(
                    sa.select(UserRow.email, UserRow.id).where(UserRow.email.in_([researcher, office]))
                ).all()
            )
            site_ids = dict(
                connection.execute(sa.select(SiteRow.name, SiteRow.id).where(SiteRow.name.in_(sites))).all()
            )
            missing = sorted({researcher, office} - set(users)) + sorted(set(sites) - set(site_ids))
            if missing:
                raise LookupError(f"not at the hub: {', '.join(missing)}")
            project = connection.execute(
                sa.insert(ProposalRow.__table__).values(
                    owner_id=users[researcher],
                    state="ready-for-delivery",
                    title=PROJECT_TITLE,
                    abstract="Wie hängen Alter, Geschlecht und Hypertonie mit Typ-2-Diabetes zusammen? "
                    "Ausgewertet wird nur föderiert: die Daten bleiben an den Standorten.",
                    questions=["Odds Ratio von Typ-2-Diabetes nach Alter, Geschlecht und Hypertonie"],
                    modules=["Person", "Diagnose"],
                    biosamples="",
                    analysis="federated-analysis",
                    created=now,
                    updated=now,
                    submitted=now,
                )
            ).inserted_primary_key[0]
            connection.execute(
                sa.insert(CohortRow.__table__).values(
                    proposal_id=project,
                    position=0,
                    name="Erwachsene",
                    query=COHORT,
                    site_counts={},
                    frozen=now,
                )
            )
            for name in sites:
                connection.execute(
                    sa.insert(ProposalSiteRow.__table__).values(
                        proposal_id=project,
                        site_id=site_ids[name],
                        agreed=True,
                        reason="Demo",
                        decided_by=users[office],
                        decided=now,
                    )
                )
            # One line in the proposal's timeline says where it came from.
            connection.execute(
                sa.insert(EventRow.__table__).values(
                    proposal_id=project,
                    actor_id=users[office],
                    kind="comment",
                    from_state="ready-for-delivery",
                    to_state="ready-for-delivery",
                    text="Vom Demo angelegt: als von Koordinationsstelle, Ausschuss und allen Standorten genehmigt",
                    created=now,
                )
            )
            return int(project)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Example:
    project: int
    sites: list[str]
    summary: dict[str, Any]  # pooled age and t2d
    glm: dict[str, Any]  # the logistic regression (GlmResult.to_json)


def run_example(hub_url: str, token: str, project: int) -> Example:
    """The worked example over the hub: pooled summary, then the logistic regression."""
    with Client(hub_url, token, project=project, variables=EXAMPLE_VARIABLES) as client:
        sites = client.sites()
        summary = client.summary(["age", "t2d"], where=FEMALE_OR_MALE)
        fit = client.glm(EXAMPLE_FORMULA, family="binomial", where=FEMALE_OR_MALE)
    return Example(project, sites, summary, fit.to_json())
