"""Federated analysis at the hub: who may analyse which project, and one analysis call end to end.

**Who**: a researcher on the team (or the owner) of a Use & Access proposal whose planned analysis is
"federated analysis only" and that the committee approved: state `site-decisions`,
`ready-for-delivery` or `delivered`. Its **sites** are those whose administrators agreed (and that are
active); its **rows** are the patients of the proposal's cohort (its first cohort query, frozen at
submission) at each site, with the variables the researcher defines (`datenraum.analysis.variables`).
The researcher chooses variables and models, never the cohort or the sites beyond that set. This reads
the proposal's tables directly rather than through `workflow.decide`: there is no action to decide,
only facts (state, analysis kind, team, site decisions) to look up.

**A call** (`run`): the operation's parameters are checked (Invalid naming the field), then
`datenraum.analysis.Analysis` runs its rounds through `HubSites` (`rounds`); every request is checked
against the protocol before it leaves, the site set is fixed for the call, and the answer is the pooled
result or the structured errors (each naming site, rule and threshold). Each call is logged
(`AnalysisRunRow`), without any released value.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.analysis.formula import FormulaError
from datenraum.analysis.messages import PH_TRANSFORMS, MessageError
from datenraum.analysis.variables import VariableError, parse_definitions
from datenraum.hub.accounts.service import User
from datenraum.hub.analysis.rounds import HubSites, Rounds
from datenraum.hub.analysis.tables import AnalysisRunRow
from datenraum.hub.config import HubConfig
from datenraum.hub.db import SiteRow, utcnow
from datenraum.hub.errors import Forbidden, Invalid, NotFound
from datenraum.hub.proposals.tables import CohortRow, ProposalRow, ProposalSiteRow, TeamMemberRow
from datenraum.hub.roles import Role
from datenraum.privacy.analysis import AnalysisPolicy

if TYPE_CHECKING:
    from datenraum.analysis.driver import Analysis

__all__ = ["OPERATIONS", "Analyses", "AnalysisFailed", "Project"]

APPROVED_STATES = ("site-decisions", "ready-for-delivery", "delivered")
FEDERATED = "federated-analysis"

# operation -> {parameter: (type check, required)}
_STR = (str,)
_LIST = (list,)
_NUM = (int, float)
_BOOL = (bool,)
OPERATIONS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "summary": {"variables": (_LIST + _STR, True)},
    "describe": {"variables": (_LIST + _STR, True)},
    "by_group": {"variables": (_LIST + _STR, True), "group": (_STR, True)},
    "quantiles": {"variable": (_STR, True), "probs": (_LIST, False)},
    "table": {"variables": (_LIST + _STR, True)},
    "cor": {"variables": (_LIST, True)},
    "glm": {
        "formula": (_STR, True),
        "family": (_STR, False),
        "link": (_STR, False),
        "weights": (_STR, False),
        "tol": (_NUM, False),
        "max_iter": ((int,), False),
    },
    "glm_slma": {
        "formula": (_STR, True),
        "family": (_STR, False),
        "link": (_STR, False),
        "weights": (_STR, False),
    },
    "assign": {"name": (_STR, True), "derive": (_STR, False), "subset": (_LIST, False)},
    # survival on binned time (datenraum.analysis.survival): curves, the log-rank test, Cox
    "km": {
        "time": (_STR, True),
        "event": (_STR, True),
        "group": (_STR, False),
        "bin_width": (_NUM, False),
        "alpha": (_NUM, False),
    },
    "logrank": {
        "time": (_STR, True),
        "event": (_STR, True),
        "group": (_STR, True),
        "bin_width": (_NUM, False),
    },
    "cox": {
        "time": (_STR, True),
        "event": (_STR, True),
        "covariates": (_LIST + _STR, True),
        "ties": (_STR, False),
        "strata_by_site": (_BOOL, False),
        "bin_width": (_NUM, False),
        "max_iter": ((int,), False),
        "ph_test": (_STR, False),
    },
    # the piecewise-exponential model: the sites' rows split at the bins, a pooled Poisson GLM
    "pwe": {
        "time": (_STR, True),
        "event": (_STR, True),
        "covariates": (_LIST + _STR, True),
        "bin_width": (_NUM, False),
        "max_iter": ((int,), False),
    },
}
MAX_COX_ITERATIONS = 50  # each one is a round over every site


class AnalysisFailed(Exception):
    """The call ran but gives no pooled result; `errors` are structured, `status` the HTTP status."""

    def __init__(self, errors: list[dict[str, Any]], status: int) -> None:
        super().__init__("; ".join(str(e.get("message_en")) for e in errors))
        self.errors = errors
        self.status = status
        self.log: dict[str, Any] | None = None


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    sites: dict[str, int]  # name -> id
    cohort: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "sites": sorted(self.sites),
            "operations": sorted(OPERATIONS),
        }


def _jsonable(value: Any) -> Any:
    """NaN and infinities as None: JSON has no numbers for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    return value


class Analyses:
    def __init__(
        self, sessions: sessionmaker[Session], config: HubConfig, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._clock = clock
        self.rounds = Rounds()
        self.policy = AnalysisPolicy(min_sites=max(2, config.analysis_min_sites))

    # -- who may analyse what
    def projects(self, user: User) -> list[Project]:
        self._check_role(user)
        with self._sessions() as session:
            ids = session.scalars(
                sa.select(ProposalRow.id)
                .outerjoin(TeamMemberRow, TeamMemberRow.proposal_id == ProposalRow.id)
                .where(
                    ProposalRow.analysis == FEDERATED,
                    ProposalRow.state.in_(APPROVED_STATES),
                    sa.or_(ProposalRow.owner_id == user.id, TeamMemberRow.user_id == user.id),
                )
                .distinct()
                .order_by(ProposalRow.id)
            ).all()
            return [self._project(session, user, i) for i in ids]

    def project(self, user: User, proposal_id: int) -> Project:
        self._check_role(user)
        with self._sessions() as session:
            return self._project(session, user, proposal_id)

    @staticmethod
    def _check_role(user: User) -> None:
        if not user.has(Role.RESEARCHER):
            raise Forbidden("federated analyses are run by researchers of an approved project")

    def _project(self, session: Session, user: User, proposal_id: int) -> Project:
        row = session.get(ProposalRow, proposal_id)
        on_team = row is not None and (
            row.owner_id == user.id
            or session.scalar(
                sa.select(TeamMemberRow.user_id).where(
                    TeamMemberRow.proposal_id == proposal_id, TeamMemberRow.user_id == user.id
                )
            )
            is not None
        )
        if row is None or not on_team:
            raise NotFound(f"project {proposal_id}: no such project of yours")
        if row.analysis != FEDERATED:
            raise Forbidden(f"project {proposal_id}: its planned analysis is not a federated analysis")
        if row.state not in APPROVED_STATES:
            raise Forbidden(f"project {proposal_id}: not approved (state {row.state})")
        sites = dict(
            session.execute(
                sa.select(SiteRow.name, SiteRow.id)
                .join(ProposalSiteRow, ProposalSiteRow.site_id == SiteRow.id)
                .where(
                    ProposalSiteRow.proposal_id == proposal_id,
                    ProposalSiteRow.agreed.is_(True),
                    SiteRow.active,
                )
            ).all()
        )
        cohort = session.scalar(
            sa.select(CohortRow.query)
            .where(CohortRow.proposal_id == proposal_id)
            .order_by(CohortRow.position)
            .limit(1)
        )
        if cohort is None:
            raise Forbidden(f"project {proposal_id}: has no cohort")
        return Project(row.id, row.title, sites, cohort)

    # -- one call
    def run(
        self, user: User, project: Project, operation: str, body: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The pooled result of `operation` and the log entry's fields; AnalysisFailed or Invalid otherwise.
        Runs the rounds: call it in a worker thread, not holding the database."""
        if operation not in OPERATIONS:
            raise Invalid(f"operation: expected one of {', '.join(sorted(OPERATIONS))}")
        params = _check_params(operation, body)
        definitions = params.pop("variables_def")
        where = params.pop("where", None)
        chosen = params.pop("sites", None)
        subset = params.pop("subset_name", None)
        if chosen is not None:
            unknown = [s for s in chosen if s not in project.sites]
            if unknown or len(set(chosen)) != len(chosen):
                raise Invalid(
                    f"sites: expected distinct sites of the project ({', '.join(sorted(project.sites))})"
                )
        if not project.sites:
            raise AnalysisFailed(
                [
                    _hub_error(
                        "no_sites",
                        "the project has no site that agreed",
                        "das Projekt hat keinen zustimmenden Standort",
                    )
                ],
                409,
            )
        data: dict[str, Any] = {"cohort": project.cohort, "variables": definitions}
        if subset is not None:
            data["subset"] = subset
        # The solvers need numpy and scipy (about two seconds of start-up): imported at the first analysis,
        # not when the hub starts.
        from datenraum.analysis.driver import Analysis, AnalysisError

        sites = HubSites(self.rounds, project.sites, self._config.analysis_round_seconds)
        analysis = Analysis(
            sites, project=f"project-{project.id}", analyst=f"user-{user.id}", data=data, policy=self.policy
        )
        started = time.monotonic()
        log = {
            "operation": operation,
            "request": {k: v for k, v in body.items() if k != "where"} if isinstance(body, dict) else {},
            "sites": sorted(chosen or project.sites),
        }
        try:
            result = _call(analysis, operation, params, where, chosen)
        except AnalysisError as error:
            errors = [{**e} for e in error.errors]
            timed_out = any(e.get("code") == "no_answer" for e in errors)
            log.update(
                state="no-answer" if timed_out else "refused",
                errors=_summary(errors),
                rounds=sites.rounds,
                seconds=time.monotonic() - started,
            )
            failed = AnalysisFailed(errors, 504 if timed_out else 422)
            failed.log = log
            raise failed from None
        except (FormulaError, MessageError, VariableError, ValueError, TypeError) as error:
            raise Invalid(_text(error)) from None
        log.update(state="ok", errors=[], rounds=sites.rounds, seconds=time.monotonic() - started)
        return _jsonable(result), log

    def record(self, user: User, project: Project, log: Mapping[str, Any]) -> None:
        with self._sessions.begin() as session:
            session.add(AnalysisRunRow(proposal_id=project.id, user_id=user.id, created=self._clock(), **log))


def _text(error: Exception) -> str:
    if isinstance(error, MessageError):
        return f"{error.field}: {error.problem}"
    return str(error)


def _hub_error(code: str, en: str, de: str) -> dict[str, Any]:
    return {"code": code, "rule": None, "threshold": None, "site": None, "message_en": en, "message_de": de}


def _summary(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: e.get(k) for k in ("site", "code", "rule", "threshold")} for e in errors]


def _check_params(operation: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid("body: expected an object")
    allowed = set(OPERATIONS[operation]) | {"data", "where", "sites"}
    unknown = set(body) - allowed
    if unknown:
        raise Invalid(f"{sorted(map(str, unknown))[0]}: unknown parameter of {operation}")
    params: dict[str, Any] = {}
    # the variable definitions: "data": {"variables": {...}} (and optionally "subset": a workspace subset)
    data = body.get("data")
    if not isinstance(data, dict) or set(data) - {"variables", "subset"} or "variables" not in data:
        raise Invalid("data: expected {variables: {name: definition}, subset?: name}")
    try:
        parse_definitions(data["variables"])
    except VariableError as error:
        raise Invalid(str(error)) from None
    params["variables_def"] = data["variables"]
    if "subset" in data:
        if not isinstance(data["subset"], str) or not 0 < len(data["subset"]) <= 40:
            raise Invalid("data.subset: expected the name of a workspace subset")
        params["subset_name"] = data["subset"]
    for name, spec in OPERATIONS[operation].items():
        types, required = spec
        if name not in body:
            if required:
                raise Invalid(f"{name}: required for {operation}")
            continue
        value = body[name]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise Invalid(f"{name}: expected {' or '.join(t.__name__ for t in types)}")
        params[name] = value
    _check_survival(operation, params)
    for name in ("where", "sites"):
        if name in body:
            if not isinstance(body[name], list) or len(body[name]) > 50:
                raise Invalid(f"{name}: expected a list")
            params[name] = body[name]
    if operation == "assign" and "subset" in body:
        params["subset"] = body["subset"]
    return params


def _check_survival(operation: str, params: dict[str, Any]) -> None:
    """What the protocol would refuse only at the first round, refused before it."""
    if operation not in ("km", "logrank", "cox", "pwe"):
        return
    width = params.get("bin_width")
    if width is not None and not (math.isfinite(width) and width > 0):
        raise Invalid("bin_width: expected a positive number of days")
    alpha = params.get("alpha")
    if alpha is not None and not 0 < alpha < 1:
        raise Invalid("alpha: expected a number between 0 and 1")
    if operation == "pwe" and not 1 <= params.get("max_iter", 1) <= MAX_COX_ITERATIONS:
        raise Invalid(f"max_iter: expected 1 to {MAX_COX_ITERATIONS}")
    if operation == "cox":
        if params.get("ties", "efron") not in ("breslow", "efron"):
            raise Invalid("ties: expected breslow or efron")
        if not 1 <= params.get("max_iter", 1) <= MAX_COX_ITERATIONS:
            raise Invalid(f"max_iter: expected 1 to {MAX_COX_ITERATIONS}")
        if params.get("ph_test", "km") not in PH_TRANSFORMS:
            raise Invalid(f"ph_test: expected one of {', '.join(PH_TRANSFORMS)}")


def _call(analysis: Analysis, operation: str, params: dict[str, Any], where: Any, sites: Any) -> Any:
    if operation == "glm":
        return analysis.glm(where=where, sites=sites, **params).to_json()
    if operation == "cox":
        return analysis.cox(where=where, sites=sites, **params).to_json()
    if operation == "pwe":
        return analysis.pwe(where=where, sites=sites, **params).to_json()
    if operation == "logrank":
        from datenraum.analysis.driver import AnalysisError

        result = analysis.km(where=where, sites=sites, **params)
        if "logrank" not in result:
            raise AnalysisError(
                [
                    _hub_error(
                        "one_group",
                        f"log-rank: {params['group']} has only one level with released rows",
                        f"Log-Rank: {params['group']} hat nur eine Ausprägung mit freigegebenen Zeilen",
                    )
                ]
            )
        return {"group": result["group"], "bin_width": result["bin_width"], **result["logrank"]}
    if operation == "assign":
        return analysis.assign(sites=sites, **params)
    method = getattr(analysis, operation)
    return method(where=where, sites=sites, **params)
