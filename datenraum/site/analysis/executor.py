"""The site's analysis executor: one request in, one answer out, disclosure control applied here.

`SiteExecutor.handle(body)` parses the request (`datenraum.analysis.messages`), resolves its rows (a
table, or a cohort of the store with variable definitions), applies the subset (`where`), computes the
operation's aggregates and checks every rule of `datenraum.privacy.analysis` with this site's own
`AnalysisPolicy` before anything leaves. It never raises: a refusal or a bad request is an error answer
naming the rule and threshold (or the field), never a value. A refused request returns nothing else: no
information matrix, no score vector (DataSHIELD's glmDS2 returned the score after a failed check).

Every answer that leaves is first recorded in the site's release log (`releases.ReleaseLog`, on disk in
the agent): its row sets, so that two releases of a project differing by fewer than k rows are refused,
and one unit of the project's daily budget. A refused check records nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson

from datenraum.analysis.design import column_names, design_matrix, model_frame
from datenraum.analysis.families import family as make_family
from datenraum.analysis.formula import FormulaError
from datenraum.analysis.messages import (
    Assign,
    ByGroup,
    Condition,
    Cor,
    CoxPh,
    CoxStep,
    Describe,
    GlmLocal,
    GlmPrepare,
    GlmStep,
    Km,
    MessageError,
    Quantiles,
    Request,
    Summary,
    Table,
    error_result,
    ok_result,
    parse_request,
)
from datenraum.privacy.analysis import (
    AnalysisPolicy,
    Refused,
    bin_survival,
    check_binary,
    check_dominance,
    check_levels,
    check_rows,
    check_saturation,
    check_sparse,
    round_count,
    suppress,
)
from datenraum.privacy.risk_sets import check_risk_share, coarsen_risk_sets
from datenraum.site.analysis.releases import ReleaseLog
from datenraum.site.analysis.tables import AnalysisTable, TableError
from datenraum.site.analysis.workspace import Workspace, WorkspaceTable

__all__ = ["MAX_TIME_BINS", "QUANTILE_BINS", "SiteExecutor"]

log = logging.getLogger("datenraum.site.analysis")

MAX_TIME_BINS = 10_000  # per survival answer: the per-bin arrays are this long at most
QUANTILE_BINS = 400  # grid bins over mean +- 6 sd before merging to >= k rows per bin
RARE = "(rare)"  # the level that table levels with fewer than k rows are merged into
NA = "NA"

Resolver = Callable[[Request], AnalysisTable]


def _error(code: str, en: str, de: str, **extra: Any) -> dict[str, Any]:
    return error_result(
        {"code": code, "rule": None, "threshold": None, "message_en": en, "message_de": de, **extra}
    )


class SiteExecutor:
    def __init__(
        self,
        resolve: Resolver | Mapping[str, AnalysisTable],
        policy: AnalysisPolicy | None = None,
        *,
        site: str | None = None,
        releases: ReleaseLog | None = None,
        workspace: Workspace | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if isinstance(resolve, Mapping):
            tables = dict(resolve)

            def by_name(request: Request) -> AnalysisTable:
                if request.data.table is None:
                    raise TableError("this site has no store: only tables can be analysed")
                if request.data.table not in tables:
                    raise TableError(f"unknown table {request.data.table!r}")
                return tables[request.data.table]

            self._resolve: Resolver = by_name
        else:
            self._resolve = resolve
        self.policy = policy or AnalysisPolicy()
        self.site = site
        self.releases = releases or ReleaseLog()
        self.workspace = workspace or Workspace()
        self._clock = clock
        self._designs: OrderedDict[bytes, Any] = OrderedDict()

    # -- the one entry point
    def handle(self, body: Any, resolve: Resolver | None = None) -> dict[str, Any]:
        """The answer to one request (`resolve`: where this request's rows come from, if not the
        executor's own resolver, e.g. the agent's store snapshot of this task)."""
        try:
            request = parse_request(body)
        except MessageError as error:
            return error_result({**error.to_json(), "site": self.site})
        try:
            table = (resolve or self._resolve)(request)
            if request.data.lexis is not None:
                from datenraum.site.analysis.lexis import LexisTable

                table = LexisTable(table, request.data.lexis, self.policy)
            entries = self.workspace.entries(request.project, request.analyst)
            if entries:
                table = WorkspaceTable(table, entries)
            if isinstance(request, Assign):
                result, used = self._assign(request, table), []
            else:
                result, used = self._run(request, table, self._subset(request, table))
            # Row sets are placed among all the store's patients, so cohorts of different queries compare.
            rows = [table.ledger_rows(mask) for mask in (used if isinstance(used, list) else [used])]
            self.releases.release(
                project=request.project,
                analyst=request.analyst,
                operation=request.op,
                source=rows[0][0] if rows else None,
                masks=[released for _source, released in rows],
                result=result,
                policy=self.policy,
                now=self._clock(),
            )
            return ok_result(result)
        except Refused as refused:
            refused.site = self.site
            return error_result(refused.to_json())
        except (TableError, FormulaError) as error:
            return _error(
                "bad_request",
                f"cannot analyse: {error}",
                f"Analyse nicht möglich: {error}",
                site=self.site,
            )
        except Exception:
            log.exception("analysis %s: unexpected error", body.get("op") if isinstance(body, dict) else None)
            return _error(
                "internal",
                "the site could not run the analysis (internal error, see the site's log)",
                "der Standort konnte die Analyse nicht ausführen (interner Fehler, siehe Protokoll des Standorts)",
                site=self.site,
            )

    def _subset(self, request: Request, table: AnalysisTable) -> np.ndarray:
        conditions = list(request.where)
        if request.data.subset is not None:
            if not isinstance(table, WorkspaceTable):
                raise TableError(
                    f"no subset {request.data.subset!r} in the workspace (expired, or never assigned)"
                )
            conditions.extend(table.subset(request.data.subset))
        mask = np.ones(table.n_rows, dtype=bool)
        for condition in conditions:
            mask &= _condition(table.column(condition.variable), condition)
        if conditions:
            check_rows(int(mask.sum()), self.policy, "subset")
        return mask

    def _assign(self, request: Assign, table: AnalysisTable) -> dict[str, Any]:
        base = table.base if isinstance(table, WorkspaceTable) else table
        if request.derive is not None:
            if request.name in base.names():
                raise TableError(f"{request.name} is a variable of the data already")
            self._numeric(base, request.derive.name)  # exists and is numeric
        else:
            mask = np.ones(table.n_rows, dtype=bool)
            for condition in request.subset:
                mask &= _condition(table.column(condition.variable), condition)
            check_rows(int(mask.sum()), self.policy, f"subset {request.name}")
        ttl = self.workspace.assign(
            request.project, request.analyst, request.name, request.derive, request.subset
        )
        return {"name": request.name, "kind": "derive" if request.derive else "subset", "ttl": ttl}

    def _run(self, request: Request, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        match request:
            case GlmStep():
                return self._glm_step(request, table, rows)
            case GlmLocal():
                return self._glm_local(request, table, rows)
            case Describe():
                return self._describe(request, table, rows)
            case ByGroup():
                return self._by_group(request, table, rows)
            case GlmPrepare():
                return self._glm_prepare(request, table, rows)
            case Summary():
                return self._summary(request, table, rows)
            case Quantiles():
                return self._quantiles(request, table, rows)
            case Table():
                return self._table(request, table, rows)
            case Cor():
                return self._cor(request, table, rows)
            case Km():
                return self._km(request, table, rows)
            case CoxPh():
                return self._cox_ph(request, table, rows)
            case CoxStep():
                return self._cox_step(request, table, rows)
        raise MessageError("op", "not supported")

    # -- moments
    def _numeric(self, table: AnalysisTable, name: str) -> np.ndarray:
        values = table.column(name)
        if values.dtype == object:
            raise TableError(f"variable {name} is categorical; use a table")
        return values

    def _summary(self, request: Summary, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        out, used = {}, np.zeros(table.n_rows, dtype=bool)
        for name in request.variables:
            values = self._numeric(table, name)
            valid = rows & ~np.isnan(values)
            x = values[valid]
            check_rows(len(x), self.policy, f"summary of {name}")
            check_sparse(x, self.policy, f"summary of {name}")
            check_dominance(x, self.policy, f"summary of {name}")
            mean = float(x.mean())
            out[name] = {
                "n": len(x),
                "n_missing": int(rows.sum()) - len(x),
                "sum": float(x.sum()),
                "m2": float(((x - mean) ** 2).sum()),
            }
            used |= valid
        return out, used

    def _cor(self, request: Cor, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        columns = [self._numeric(table, name) for name in request.variables]
        valid = rows.copy()
        for values in columns:
            valid &= ~np.isnan(values)
        x = np.column_stack([values[valid] for values in columns])
        n = len(x)
        check_rows(n, self.policy, "correlation")
        check_saturation(x.shape[1], n, self.policy, "correlation")
        for name, column in zip(request.variables, x.T, strict=True):
            check_binary(column, self.policy, f"correlation: {name}")
            check_sparse(column, self.policy, f"correlation: {name}")
            check_dominance(column, self.policy, f"correlation: {name}")
        mean = x.mean(axis=0)
        centred = x - mean
        return {"n": n, "mean": mean.tolist(), "sscp": (centred.T @ centred).tolist()}, valid

    def _quantiles(
        self, request: Quantiles, table: AnalysisTable, rows: np.ndarray
    ) -> tuple[dict, np.ndarray]:
        values = self._numeric(table, request.variable)
        valid = rows & ~np.isnan(values)
        x = np.sort(values[valid])
        n = len(x)
        what = f"quantiles of {request.variable}"
        check_rows(n, self.policy, what)
        check_dominance(x, self.policy, what)
        k = self.policy.min_cell
        for p in request.probs:
            if min(p, 1 - p) * n < k:
                raise Refused("no_extremes", int(np.ceil(k / min(p, 1 - p))), what)
        mean, sd = float(x.mean()), float(x.std())
        if sd == 0:
            raise Refused("quantile_bins", k, what)
        grid = np.linspace(mean - 6 * sd, mean + 6 * sd, QUANTILE_BINS + 1)
        # cumulative counts at each grid edge: #(x <= edge)
        cumulative = np.searchsorted(x, grid, side="right")
        below, above = int(cumulative[0]), n - int(cumulative[-1])
        # merge bins left to right until each holds >= k rows; the edges kept are grid points only
        edges, counts = [0], []
        start = 0
        for i in range(1, len(grid)):
            if cumulative[i] - cumulative[start] >= k:
                counts.append(int(cumulative[i] - cumulative[start]))
                edges.append(i)
                start = i
        rest = int(cumulative[-1] - cumulative[start])
        if rest and counts:
            counts[-1] += rest
            edges[-1] = len(grid) - 1
        elif rest:
            raise Refused("quantile_bins", k, what)
        return {
            "n": n,
            "edges": [float(grid[i]) for i in edges],
            "counts": counts,
            # rows outside the grid: released only as "some" (>= k) or merged into an open bin
            "below": below if below >= k else (None if below else 0),
            "above": above if above >= k else (None if above else 0),
        }, valid

    # -- tables
    def _table(self, request: Table, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        k = self.policy.min_cell
        codes, levels = [], []
        for name in request.variables:
            site_codes, labels = table.codes(name)
            site_codes = site_codes[rows]
            # NA is a level, checked like any (the last code); levels with fewer than k rows merge
            labels = [*labels, NA]
            site_codes = np.where(site_codes < 0, len(labels) - 1, site_codes)
            counts = np.bincount(site_codes, minlength=len(labels))
            names = [RARE if 0 < c < k else label for label, c in zip(labels, counts, strict=True)]
            kept = sorted({n for n, c in zip(names, counts, strict=True) if c > 0})
            if len(kept) > self.policy.levels_max:
                raise Refused("levels", self.policy.levels_max, f"table of {name}")
            position = {n: i for i, n in enumerate(kept)}
            remap = np.array([position.get(n, 0) for n in names], dtype=np.int64)
            codes.append(remap[site_codes])
            levels.append(kept)
        n = int(rows.sum())
        check_rows(n, self.policy, "table")
        shape = tuple(len(level) for level in levels)
        flat = np.ravel_multi_index(tuple(codes), shape) if codes[0].size else np.zeros(0, dtype=np.int64)
        counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.int64)
        cells, margins = suppress(counts, k)
        r = self.policy.rounding

        def shown(values: np.ndarray, hidden: np.ndarray) -> Any:
            if values.ndim == 0:
                return None if bool(hidden) else round_count(int(values), r)
            return [shown(v, h) for v, h in zip(values, hidden, strict=True)]

        margin_values = [counts.sum(axis=axis) for axis in range(counts.ndim)]
        return {
            "variables": list(request.variables),
            "levels": levels,
            "counts": shown(counts, cells),
            "margins": [shown(m, h) for m, h in zip(margin_values, margins[:-1], strict=True)],
            "total": shown(np.array(n), margins[-1]),
        }, rows

    # -- describe and statistics by group
    def _moments(self, x: np.ndarray, what: str) -> dict[str, Any]:
        check_rows(len(x), self.policy, what)
        check_sparse(x, self.policy, what)
        check_dominance(x, self.policy, what)
        mean = float(x.mean())
        d = x - mean
        d2 = d * d
        return {
            "n": len(x),
            "sum": float(x.sum()),
            "m2": float(d2.sum()),
            "m3": float((d2 * d).sum()),
            "m4": float((d2 * d2).sum()),
        }

    def _describe(self, request: Describe, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, list]:
        out, used = {}, []
        n_rows = int(rows.sum())
        for name in request.variables:
            values = table.column(name)
            if values.dtype == object:
                one = Table(
                    request.op, request.project, request.analyst, request.data, request.where, (name,)
                )
                counted, mask = self._table(one, table, rows)
                out[name] = {
                    "type": "categorical",
                    "levels": counted["levels"][0],
                    "counts": counted["counts"],
                    "n": counted["total"],
                }
                used.append(mask)
                continue
            valid = rows & ~np.isnan(values)
            entry = self._moments(values[valid], f"describe {name}")
            out[name] = {"type": "numeric", "n_missing": n_rows - entry["n"], **entry}
            used.append(valid)
        return out, used

    def _by_group(self, request: ByGroup, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, list]:
        codes, labels = table.codes(request.group)
        groups: dict[str, Any] = {}
        used = []
        for code, label in enumerate(labels):
            in_group = rows & (codes == code)
            if not in_group.any():
                continue
            entry: dict[str, Any] = {}
            try:
                for name in request.variables:
                    values = self._numeric(table, name)
                    valid = in_group & ~np.isnan(values)
                    entry[name] = self._moments(values[valid], f"{name} by {request.group}")
                    entry[name].pop("m3"), entry[name].pop("m4")
                    used.append(valid)
            except Refused:
                # a group too small to show: only that it is there, no numbers (DataSHIELD's meanSdGp
                # returned its N)
                groups[label] = None
                continue
            groups[label] = entry
        if not groups:
            raise Refused("min_rows", self.policy.min_rows, f"statistics by {request.group}")
        return {"group": request.group, "groups": groups}, used

    # -- survival (binned time only: no individual time leaves the site)
    def _survival_rows(self, request: Km | CoxStep, table: AnalysisTable, rows: np.ndarray, extra=()):
        time = self._numeric(table, request.time)
        event = self._numeric(table, request.event)
        columns = [self._numeric(table, name) for name in extra]
        valid = rows & ~np.isnan(time) & ~np.isnan(event)
        for values in columns:
            valid &= ~np.isnan(values)
        what = request.op
        check_rows(int(valid.sum()), self.policy, what)
        t, e = time[valid], event[valid]
        if np.any(t < 0):
            raise TableError(f"{request.time}: survival times must not be negative")
        if t.size and float(t.max()) / request.bin_width >= MAX_TIME_BINS:
            raise TableError(
                f"{request.time}: the times span more than {MAX_TIME_BINS} bins of {request.bin_width:g}; "
                "use wider bins (or check the variable's unit)"
            )
        if not np.all((e == 0) | (e == 1)):
            raise TableError(f"{request.event}: the event indicator must be 0 or 1")
        events = int(e.sum())
        if 0 < events < self.policy.min_cell or events == 0:
            raise Refused("min_cell", self.policy.min_cell, f"{what}: events")
        return valid, t, e, [values[valid] for values in columns]

    def _km(self, request: Km, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        valid, t, e, _ = self._survival_rows(request, table, rows)
        if request.group is not None:
            codes, labels = table.codes(request.group)
            codes = codes[valid]
            keep = codes >= 0
            valid = valid.copy()
            valid[np.nonzero(valid)[0][~keep]] = False
            t, e, codes = t[keep], e[keep], codes[keep]
            counts = np.bincount(codes, minlength=len(labels))
            present = {label: int(c) for label, c in zip(labels, counts, strict=True) if c}
            check_levels(present, len(t), self.policy, f"km: group {request.group}")
            parts = {label: codes == i for i, label in enumerate(labels) if counts[i]}
        else:
            parts = {"all": np.ones(len(t), dtype=bool)}
        r = self.policy.rounding
        groups = {}
        for label, mask in parts.items():
            index, ev = bin_survival(t[mask], e[mask], request.bin_width, self.policy, f"km {label}")
            leaving = np.bincount(index)
            died = np.bincount(index, weights=ev, minlength=len(leaving)).astype(np.int64)
            n_risk = np.cumsum(leaving[::-1])[::-1]
            groups[label] = {
                "n_risk": [round_count(int(v), r) for v in n_risk],
                "events": [round_count(int(v), r) for v in died],
                "censored": [round_count(int(v), r) for v in leaving - died],
            }
        return {"bin_width": request.bin_width, "groups": groups}, valid

    def _cox_step(self, request: CoxStep, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        result, valid, _ = self._cox_sums(request, table, rows)
        return result, valid

    def _cox_ph(self, request: CoxPh, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        """This site's proportional-hazards test at the pooled beta: statistics and p-values only."""
        from datenraum.analysis.proportional_hazards import risk_set_means, schoenfeld_test
        from datenraum.analysis.survival import cox_terms

        sums, valid, index = self._cox_sums(request, table, rows)
        x_events = sums.pop("x_events_by_bin")
        p = len(request.covariates)
        beta = np.asarray(request.beta)
        _, _, info = cox_terms(sums, beta, request.ties)
        try:
            cov = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            raise TableError("the information matrix is singular at this site") from None
        d = np.asarray(sums["d"])
        bins = len(d)

        def per_bin(key: str) -> np.ndarray:
            return np.asarray(sums[key]).reshape(bins, p)

        efron = request.ties == "efron"
        means = risk_set_means(
            d,
            np.asarray(sums["s0"]),
            per_bin("s1"),
            np.asarray(sums["e0"]) if efron else None,
            per_bin("e1") if efron else None,
        )
        ends = (np.arange(bins) + 1) * request.bin_width
        if request.transform == "identity":
            g = ends
        else:
            at_risk = np.cumsum(np.bincount(index, minlength=bins)[::-1])[::-1]
            g = 1.0 - np.cumprod(1.0 - d / np.maximum(at_risk, 1))
        test = schoenfeld_test(d, x_events, means, cov, g)
        if not all(np.isfinite(test.statistic)):
            raise TableError("the proportional-hazards test has no finite value at this site")
        return {
            "transform": request.transform,
            "covariates": {
                name: {"statistic": stat, "p": pv}
                for name, stat, pv in zip(request.covariates, test.statistic, test.p, strict=True)
            },
        }, valid

    def _cox_sums(
        self, request: CoxStep, table: AnalysisTable, rows: np.ndarray
    ) -> tuple[dict, np.ndarray, np.ndarray]:
        """The risk-set sums per bin of `cox.step` (for `cox.ph` also the sums of x over each bin's events),
        the rows used and each subject's bin."""
        valid, t, e, columns = self._survival_rows(request, table, rows, request.covariates)
        x = np.column_stack(columns)
        n, p = x.shape
        check_saturation(p, int(e.sum()), self.policy, "cox")
        for name, column in zip(request.covariates, x.T, strict=True):
            check_binary(column, self.policy, f"cox: covariate {name}")
            check_sparse(column, self.policy, f"cox: covariate {name}")
            if len(np.unique(column[:50])) > 2:
                check_dominance(column, self.policy, f"cox: covariate {name}")
        if request.bin_width < self.policy.time_bin:
            raise Refused("time_bin", self.policy.time_bin, "cox")
        released, ev = coarsen_risk_sets(t, e, self.policy, "cox")
        index = np.floor(released / request.bin_width).astype(np.int64)
        bins = int(index.max()) + 1
        with np.errstate(over="ignore"):  # an overflow is refused by check_risk_share
            risk = np.exp(x @ np.asarray(request.beta))
        # An analyst chooses beta: one large enough makes one subject the whole of a late risk set, and s1
        # would then be that subject's covariates. Refused for cox.step as for cox.ph.
        check_risk_share(index, risk, self.policy, "cox.ph" if isinstance(request, CoxPh) else "cox")
        upper = np.triu_indices(p)
        cross = x[:, upper[0]] * x[:, upper[1]]

        def by_bin(weights: np.ndarray, cumulative: bool) -> np.ndarray:
            if weights.ndim == 1:
                weights = weights[:, None]
            out = np.column_stack(
                [np.bincount(index, weights=w, minlength=bins) for w in weights.T]
            )  # bins x columns
            return np.cumsum(out[::-1], axis=0)[::-1] if cumulative else out

        result: dict[str, Any] = {
            "n": n,
            "events": int(ev.sum()),
            "d": by_bin(ev.astype(float), False).ravel().tolist(),
            "s0": by_bin(risk, True).ravel().tolist(),
            "s1": by_bin(x * risk[:, None], True).ravel().tolist(),
            "s2": by_bin(cross * risk[:, None], True).ravel().tolist(),
            "x_events": (x * ev[:, None]).sum(axis=0).tolist(),
        }
        if request.ties == "efron":
            at_event = risk * ev
            result["e0"] = by_bin(at_event, False).ravel().tolist()
            result["e1"] = by_bin(x * at_event[:, None], False).ravel().tolist()
            result["e2"] = by_bin(cross * at_event[:, None], False).ravel().tolist()
        if isinstance(request, CoxPh):
            result["x_events_by_bin"] = by_bin(x * ev[:, None], False)
        return result, valid, index

    # -- GLM
    def _design(self, request: GlmPrepare, table: AnalysisTable, rows: np.ndarray, levels: Mapping | None):
        key = orjson.dumps(
            [table.key, request.model_json(), [c.to_json() for c in request.where], levels, request.project],
            option=orjson.OPT_SORT_KEYS,
        )
        cached = self._designs.get(key)
        if cached is not None:
            self._designs.move_to_end(key)
            return cached
        spec = request.model
        fam = make_family(request.family, request.link)
        frame = model_frame(spec, table.column, request.weights, rows)
        n = frame.n
        what = "glm"
        check_rows(n, self.policy, what)
        local_levels = {}
        for name, labels in frame.factors.items():
            distinct, counts = np.unique(labels.astype(str), return_counts=True)
            check_levels(
                dict(zip(distinct.tolist(), counts.tolist(), strict=True)),
                n,
                self.policy,
                f"glm: factor {name}",
            )
            local_levels[name] = distinct.tolist()
        y = frame.numeric[spec.response]
        if not fam.valid_response(y):
            raise TableError(
                f"the response {spec.response.label} is outside the range of the {fam.name} family"
            )
        if fam.binary_response or fam.count_response:
            events = int(np.count_nonzero(y))
            if events < self.policy.min_cell or (
                fam.binary_response and n - int(np.count_nonzero(y == 1)) < self.policy.min_cell
            ):
                raise Refused("min_cell", self.policy.min_cell, "glm: events of the response")
        else:
            check_dominance(y, self.policy, "glm: response")
        check_binary(y, self.policy, "glm: response")
        weights = frame.numeric[request.weights] if request.weights else np.ones(n)
        if request.weights is not None:
            if np.any(weights < 0):
                raise TableError("weights must not be negative")
            check_binary(weights, self.policy, "glm: weights")
        offset = frame.numeric[spec.offset] if spec.offset is not None else np.zeros(n)
        if spec.offset is not None:
            check_binary(offset, self.policy, "glm: offset")
        design = None
        if levels is not None:
            for name, known in local_levels.items():
                if set(known) - set(levels[name]):
                    raise TableError(f"factor {name}: a level of this site is not among the global levels")
            x = design_matrix(spec, frame, levels)
            names = column_names(spec, levels)
            check_saturation(x.shape[1], n, self.policy, what)
            for j, name in enumerate(names):
                if name == "(Intercept)":
                    continue
                column = x[:, j]
                check_binary(column, self.policy, f"glm: column {name}")
                check_sparse(column, self.policy, f"glm: column {name}")
                if len(np.unique(column[:50])) > 2:
                    check_dominance(column, self.policy, f"glm: column {name}")
            design = (x, y, weights, offset)
        cached = (frame, fam, local_levels, design)
        self._designs[key] = cached
        while len(self._designs) > 16:
            self._designs.popitem(last=False)
        return cached

    def _glm_prepare(
        self, request: GlmPrepare, table: AnalysisTable, rows: np.ndarray
    ) -> tuple[dict, np.ndarray]:
        frame, _, local_levels, _ = self._design(request, table, rows, None)
        y = frame.numeric[request.model.response]
        weights = frame.numeric[request.weights] if request.weights else np.ones(frame.n)
        return {
            "n_total": int(rows.sum()),
            "n": frame.n,
            "levels": local_levels,
            "sum_w": float(weights.sum()),
            "sum_wy": float((weights * y).sum()),
        }, frame.mask

    def _glm_local(
        self, request: GlmLocal, table: AnalysisTable, rows: np.ndarray
    ) -> tuple[dict, np.ndarray]:
        frame, fam, _, design = self._design(request, table, rows, request.levels)
        x, y, w, offset = design
        beta, info, deviance, pearson = _local_fit(fam, x, y, w, offset)
        n, p = x.shape
        dispersion = pearson / (n - p) if fam.estimated_dispersion else 1.0
        try:
            cov = np.linalg.inv(info) * dispersion
        except np.linalg.LinAlgError:
            raise TableError("the design matrix is singular at this site") from None
        if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(cov))):
            raise TableError("the site's own fit did not converge")
        return {
            "n": n,
            "n_total": int(rows.sum()),
            "coef": beta.tolist(),
            "cov": cov.tolist(),
            "deviance": deviance,
            "dispersion": dispersion,
            "df_resid": n - p,
        }, frame.mask

    def _glm_step(self, request: GlmStep, table: AnalysisTable, rows: np.ndarray) -> tuple[dict, np.ndarray]:
        frame, fam, _, design = self._design(request, table, rows, request.levels)
        x, y, w, offset = design
        p = x.shape[1]
        if len(request.beta) != p:
            raise MessageError("beta", f"expected {p} coefficients for this model")
        beta = np.asarray(request.beta)
        eta = x @ beta + offset
        mu = fam.clean_mu(fam.link.inverse(eta))
        d = fam.link.mu_eta(eta)
        var = fam.variance(mu)
        residual = y - mu
        working = w * d / var
        root = x * np.sqrt(working * d)[:, None]  # W = w mu'^2 / V >= 0
        info = root.T @ root
        score = x.T @ (working * residual)
        finite = bool(np.all(np.isfinite(info)) and np.all(np.isfinite(score)))
        result: dict[str, Any] = {
            "n_total": int(rows.sum()),
            "n": frame.n,
            "p": p,
            "sum_w": float(w.sum()),
            "sum_wy": float((w * y).sum()),
            "sum_woffset": float((w * offset).sum()),
            "info": info[np.triu_indices(p)].tolist() if finite else None,
            "score": score.tolist() if finite else None,
            "deviance": float((w * fam.unit_deviance(y, mu)).sum()) if finite else None,
            "pearson": float((w * residual * residual / var).sum()) if finite else None,
        }
        if request.null_eta is not None:
            eta0 = request.null_eta + offset
            mu0 = fam.clean_mu(fam.link.inverse(eta0))
            d0 = fam.link.mu_eta(eta0)
            var0 = fam.variance(mu0)
            result["null"] = {
                "deviance": float((w * fam.unit_deviance(y, mu0)).sum()),
                "score": float((w * d0 * (y - mu0) / var0).sum()),
                "info": float((w * d0 * d0 / var0).sum()),
            }
        return result, frame.mask


def _local_fit(fam, x, y, w, offset, max_iter: int = 50, tol: float = 1e-10):
    """The site's own GLM fit (iteratively reweighted least squares, started as R's glm.fit)."""
    mu = fam.clean_mu(np.where(np.isfinite(y), (y + np.average(y, weights=w)) / 2, 0.5))
    if fam.binary_response:
        mu = (w * y + 0.5) / (w + 1)
    eta = fam.link(mu)
    dev_old = np.inf
    beta = np.full(x.shape[1], np.inf)
    for _ in range(max_iter):
        previous = beta
        d = fam.link.mu_eta(eta)
        var = fam.variance(mu)
        z = eta - offset + (y - mu) / d
        weight = w * d * d / var
        root = np.sqrt(weight)
        beta, *_ = np.linalg.lstsq(x * root[:, None], z * root, rcond=None)
        eta = x @ beta + offset
        mu = fam.clean_mu(fam.link.inverse(eta))
        dev = float((w * fam.unit_deviance(y, mu)).sum())
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol and np.all(
            np.abs(beta - previous) <= 1e-12 * (np.abs(beta) + 1e-3)
        ):
            break
        dev_old = dev
    d = fam.link.mu_eta(eta)
    var = fam.variance(mu)
    root = x * np.sqrt(w * d * d / var)[:, None]
    info = root.T @ root
    pearson = float((w * (y - mu) ** 2 / var).sum())
    return beta, info, dev, pearson


def _condition(values: np.ndarray, condition: Condition) -> np.ndarray:
    c, v = condition.comparator, condition.value
    if c == "not_null":
        return ~np.isnan(values) if values.dtype != object else values != None  # noqa: E711
    if values.dtype == object:
        labels = values
        if c == "in":
            return np.isin(labels, [str(x) for x in v])
        if c in ("eq", "ne"):
            hit = labels == str(v)
            return hit if c == "eq" else ~hit & (labels != None)  # noqa: E711
        raise TableError(f"{condition.variable} is categorical: only eq, ne, in, not_null apply")
    if isinstance(v, str) or (c == "in" and any(isinstance(x, str) for x in v)):
        raise TableError(f"{condition.variable} is numeric: compare it with numbers")
    with np.errstate(invalid="ignore"):
        match c:
            case "eq":
                return values == v
            case "ne":
                return (values != v) & ~np.isnan(values)
            case "lt":
                return values < v
            case "le":
                return values <= v
            case "gt":
                return values > v
            case "ge":
                return values >= v
            case _:
                return np.isin(values, v)
