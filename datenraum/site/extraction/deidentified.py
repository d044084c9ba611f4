"""The site's side of de-identification: the analysis tables of a de-identified job folder, rebuilt
from its de-identified Bundles with the job's own extraction plan (so that the tables hold exactly
what the NDJSON holds, pseudonyms and generalizations included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from datenraum.deidentify.folder import bundle_files
from datenraum.extraction.crtdl import parse_crtdl
from datenraum.extraction.plan import compile_plan
from datenraum.extraction.profiles import Profiles
from datenraum.site.extraction.output import bundle_rows, table_specs, write_tables

__all__ = ["rebuild_tables"]


def rebuild_tables(folder: Path, job: dict[str, Any]) -> list[str]:
    plan = compile_plan(parse_crtdl(orjson.dumps(job["crtdl"]), mode="legacy"), Profiles(()))
    core = folder / "core.ndjson"
    specs = table_specs(plan)
    rows: dict[str, list[list[str | None]]] = {}
    for path in bundle_files(folder) + ([core] if core.exists() else []):
        with open(path, "rb") as lines:
            for line in lines:
                if line.strip():
                    bundle_rows(orjson.loads(line), specs, rows)
    write_tables(folder, plan, rows)
    return sorted(p.name for p in (folder / "tables").iterdir())
