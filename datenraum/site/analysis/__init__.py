"""Federated analysis at the site: the executor that answers analysis requests with disclosure control.

- `executor`: `SiteExecutor`, one request in, one answer out (authoritative checks from
  `datenraum.privacy.analysis` with the site's own policy);
- `releases`: `ReleaseLog`, every released result per project and analyst, on disk (differencing, budget);
- `tables`: analysis tables from CSV/Parquet files (`read_table`) and the `AnalysisTable` the executor reads;
- `local`: `LocalSites`, one in-process executor per table file (local mode, tests);
- `variables`: analysis tables from the store (a cohort and variable definitions, as SQL);
  `time_to_event`: the SQL of time-to-event variables (start, event, censoring at the data end);
- `workspace`: the analyst's derived variables and subsets.
"""
