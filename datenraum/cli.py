"""The `datenraum` command: a thin layer over the library; each command parses, calls, prints."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from datenraum.hub.cli import hub_cli

if TYPE_CHECKING:
    from datenraum.site.ingest import LoadReport

# The site's commands import the site stack (DuckDB, pyarrow, msgspec) inside the command, so that
# `datenraum hub ...` and `datenraum --help` start without it (bench/bench_startup.py).


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _print_load_report(report: LoadReport, limit: int) -> None:
    kinds = ("added", "replaced", "deleted", "rejected")
    types = sorted(set().union(*(getattr(report, k) for k in kinds)))
    width = max([len("resource type"), *(len(t) for t in types)])
    click.echo(f"{'resource type':<{width}}  " + "  ".join(f"{k:>9}" for k in kinds))
    for resource_type in types:
        counts = "  ".join(f"{getattr(report, k).get(resource_type, 0):>9}" for k in kinds)
        click.echo(f"{resource_type:<{width}}  {counts}")
    click.echo(f"{'total':<{width}}  " + "  ".join(f"{report.total(k):>9}" for k in kinds))
    rate = report.resources_read / report.seconds if report.seconds else 0
    click.echo(
        f"{report.resources_read} resources read in {report.seconds:.2f} s ({rate:,.0f}/s); "
        f"store generation {report.generation}"
    )
    for reject in report.rejects[:limit]:
        click.echo(f"rejected: {reject.location}: {reject.reason}", err=True)
    if len(report.rejects) > limit:
        click.echo(f"... and {report.total('rejected') - limit} more", err=True)
    if report.rejects_file:
        click.echo(f"rejected resources are in {report.rejects_file}", err=True)
    for note in report.site_view_notes[:limit]:
        click.echo(f"note: {note}", err=True)
    for warning in report.warnings[:limit]:
        click.echo(f"warning: {warning.location}: {warning.message}", err=True)
    if report.warned > limit:
        click.echo(f"... and {report.warned - limit} more warnings", err=True)


def engine_options(command: Callable) -> Callable:
    """`--engine` and `--spark-master`: which engine a site command runs the store on (see
    datenraum/site/engines; the agent reads the same from its config's [engine] section)."""
    command = click.option(
        "--spark-master",
        default="local[*]",
        show_default=True,
        help="Spark master URL with --engine spark (spark://HOST:7077, k8s://https://HOST:443, ...).",
    )(command)
    # The engines of datenraum.site.engines.ENGINES, not imported here (see the note on --dialect).
    return click.option(
        "--engine",
        type=click.Choice(["duckdb", "spark"]),
        default="duckdb",
        show_default=True,
        help="Engine the store is read and loaded with: embedded DuckDB or Apache Spark.",
    )(command)


def _engine_settings(engine: str, spark_master: str) -> Any:
    from datenraum.site.engines import EngineSettings

    return EngineSettings(engine, spark_master)


@click.group()
def main() -> None:
    """Datenraum: a federated study and data space for clinical research."""


@main.command("ingest")
@click.option(
    "--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder."
)
@click.option(
    "--workers", type=int, default=None, help="Worker processes (default: one per core for big input)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the load report as JSON.")
@click.option("--show-rejects", default=20, show_default=True, help="How many rejects to print.")
@click.option(
    "--row-by-row",
    is_flag=True,
    help="Read every NDJSON line with the row-by-row reader: same result, slower (to compare or diagnose).",
)
@engine_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest_command(
    store_path: Path,
    workers: int | None,
    as_json: bool,
    show_rejects: int,
    row_by_row: bool,
    engine: str,
    spark_master: str,
    paths: tuple[Path],
) -> None:
    """Load FHIR R4 NDJSON (.ndjson, .ndjson.gz) and Bundles (.json), or folders of them, into a store."""
    from datenraum.site.engines import EngineUnavailable
    from datenraum.site.ingest import IngestError, ingest
    from datenraum.site.store import StoreError

    try:
        settings = _engine_settings(engine, spark_master)
        report = ingest(store_path, paths, workers=workers, strict_reader=not row_by_row, engine=settings)
    except (IngestError, StoreError, EngineUnavailable) as error:
        _fail(str(error))
    if as_json:
        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
    else:
        _print_load_report(report, show_rejects)
    if report.total("rejected"):
        sys.exit(1)


@main.command("compact")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path))
def compact_command(store_path: Path) -> None:
    """Merge a store's segments into one, each table sorted for fast queries (run after big loads)."""
    from datenraum.site.compact import compact
    from datenraum.site.store import StoreError

    try:
        report = compact(store_path)
    except StoreError as error:
        _fail(str(error))
    click.echo(
        f"{report.segments_before} segments ({report.files_before} files) compacted into generation "
        f"{report.generation} in {report.seconds:.1f} s"
    )


@main.command("deidentify")
@click.option("--profile", "profile_name", required=True, help="fdpg, fts, or a profile JSON file.")
@click.option("--project", required=True, help="The project (its own keys and pseudonym namespace).")
@click.option(
    "--key-file", required=True, type=click.Path(path_type=Path), help="The site secret (64 hex characters)."
)
@click.option(
    "--pseudonyms",
    "pseudonym_db",
    type=click.Path(path_type=Path),
    help="The site's pseudonym database (default: next to the key file). Never inside OUT_DIR.",
)
@click.option("--fts-config", type=click.Path(path_type=Path), help="A DeidentiFHIR folder (fts profile).")
@click.option("--max-date-shift", help="The project's maximum date shift, e.g. P14D.")
@click.option("--date-shift-preserve", type=click.Choice(["NONE", "WEEKDAY", "DAYTIME"]))
@click.argument("in_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
def deidentify_command(
    profile_name: str,
    project: str,
    key_file: Path,
    pseudonym_db: Path | None,
    fts_config: Path | None,
    max_date_shift: str | None,
    date_shift_preserve: str | None,
    in_dir: Path,
    out_dir: Path,
) -> None:
    """De-identify an extraction job folder into OUT_DIR and run the leak gate: exit 0 when it passes,
    1 when it blocks the package (reports/leak-gate.json says why), 2 for bad input."""
    from datenraum.deidentify.folder import DeidentifyError, deidentify_folder
    from datenraum.deidentify.keys import KeyFileError, ProjectKeys, read_secret
    from datenraum.deidentify.profile import ProfileError, load_profile
    from datenraum.deidentify.pseudonyms import PseudonymService
    from datenraum.site.extraction.deidentified import rebuild_tables

    try:
        secret = read_secret(key_file)
        keys = ProjectKeys.derive(secret, project)
        profile = load_profile(
            profile_name,
            fts_config=fts_config,
            max_date_shift=max_date_shift,
            date_shift_preserve=date_shift_preserve,
        )
        database = pseudonym_db or key_file.with_name(key_file.name + ".pseudonyms.sqlite")
        if out_dir.resolve() in database.resolve().parents:
            raise DeidentifyError("the pseudonym database must not be inside the output folder")
        service = PseudonymService(secret, database)
        try:
            report = deidentify_folder(in_dir, out_dir, profile, keys, service, tables=rebuild_tables)
        finally:
            service.close()
    except (KeyFileError, ProfileError, DeidentifyError) as error:
        _fail(str(error))
    gate = report["leakGate"]
    summary = {k: report[k] for k in ("project", "profile", "bundles", "resourcesOut", "droppedNoModule")}
    summary["leakGate"] = {k: gate[k] for k in ("verdict", "findingsTotal", "resources", "references")}
    click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    for finding in gate["findings"][:20]:
        click.echo(
            f"leak: {finding['kind']} in {finding['file']} at {finding['where']} ({finding['hint']})",
            err=True,
        )
    if gate["verdict"] != "pass":
        sys.exit(1)


@main.group("delivery")
def delivery_group() -> None:
    """A project's data delivery, on the researcher's side."""


@delivery_group.command("open")
@click.option(
    "--key-file", required=True, type=click.Path(path_type=Path), help="The project's private key (PEM)."
)
@click.argument("download", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
def delivery_open_command(key_file: Path, download: Path, out_dir: Path) -> None:
    """Check and open the hub's download (every site's package) into OUT_DIR, merged with a site label
    per resource; exit 2 when anything does not match (a changed byte, another key)."""
    from datenraum.deidentify.delivery import DeliveryOpenError, open_delivery

    try:
        counts = open_delivery(download, key_file.read_bytes(), out_dir)
    except (OSError, DeliveryOpenError) as error:
        _fail(str(error))
    click.echo(orjson.dumps({"resources": counts}, option=orjson.OPT_INDENT_2))


@main.command("stats")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path))
def stats_command(store_path: Path) -> None:
    """Row counts of every table of a site store."""
    from datenraum.site.store import Store, StoreError

    try:
        with Store(store_path).snapshot() as snapshot:
            click.echo(f"generation {snapshot.generation}")
            for table, count in snapshot.row_counts().items():
                click.echo(f"{table:<28} {count:>12}")
    except StoreError as error:
        _fail(str(error))


@main.command("count")
@click.option("--store", "store_path", type=click.Path(path_type=Path), help="Site store folder.")
@click.option("--explain", is_flag=True, help="Print the SQL instead of running it (needs no store).")
# The dialects of datenraum.query.engines.sql.DIALECTS, not imported here: sqlglot makes every command slower.
@click.option("--dialect", type=click.Choice(["duckdb", "spark", "postgres"]), default="duckdb")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="Evaluate on this day (default: UTC today).")
@engine_options
@click.argument("query_file", type=click.Path(path_type=Path))
def count_command(
    store_path: Path | None,
    explain: bool,
    dialect: str,
    today: dt.datetime | None,
    engine: str,
    spark_master: str,
    query_file: Path,
) -> None:
    """Count the patients of a structured query (CCDL JSON) at this site: exact, site-local."""
    from datenraum.query.model import QueryError, parse_query
    from datenraum.site import feasibility
    from datenraum.site.engines import EngineUnavailable, feasibility_engine, open_engine
    from datenraum.site.store import Store, StoreError

    if store_path is None and not explain:
        raise click.UsageError("--store is required (unless --explain)")
    day = today.date() if today is not None else None
    try:
        query = parse_query(query_file.read_bytes())
        if explain:
            click.echo(feasibility.explain(query, dialect=dialect, today=day))
            return
        with Store(store_path).snapshot() as snapshot:
            if engine == "duckdb":
                count = feasibility.count(snapshot, query, today=day)
            else:
                with open_engine(snapshot, _engine_settings(engine, spark_master)) as site_engine:
                    count = feasibility_engine(site_engine).count(query, today=day)
    except OSError as error:
        _fail(f"{query_file}: {error.strerror}")
    except QueryError as error:
        _fail(f"{query_file}: {error}")
    except (StoreError, EngineUnavailable) as error:
        _fail(str(error))
    click.echo(orjson.dumps({"count": count}))


@main.command("samples")
@click.option(
    "--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder."
)
@click.option("--query", "query_file", type=click.Path(path_type=Path), help="Only this cohort (CCDL JSON).")
@click.option(
    "--filter",
    "filter_file",
    type=click.Path(path_type=Path),
    help='Sample filter JSON: {"categories", "temperatures", "biobanks", "diagnoses"}.',
)
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="Evaluate on this day (default: UTC today).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the default is a table).")
def samples_command(
    store_path: Path,
    query_file: Path | None,
    filter_file: Path | None,
    today: dt.datetime | None,
    as_json: bool,
) -> None:
    """Count the biosamples at this site per biobank, category and storage temperature: exact, site-local."""
    from datenraum.query.biobank.search import parse_sample_filter
    from datenraum.query.model import QueryError, parse_query
    from datenraum.site.samples import sample_counts
    from datenraum.site.store import Store, StoreError

    source = query_file
    try:
        query = parse_query(query_file.read_bytes()) if query_file is not None else None
        source = filter_file
        sample_filter = parse_sample_filter(orjson.loads(filter_file.read_bytes())) if filter_file else None
        with Store(store_path).snapshot() as snapshot:
            counts = sample_counts(snapshot, query, sample_filter, today=today.date() if today else None)
    except OSError as error:
        _fail(f"{source}: {error.strerror}")
    except orjson.JSONDecodeError as error:
        _fail(f"{source}: malformed JSON: {error}")
    except QueryError as error:
        _fail(f"{source}: {error}")
    except StoreError as error:
        _fail(str(error))
    if as_json:
        click.echo(orjson.dumps(counts.to_json(), option=orjson.OPT_INDENT_2))
        return
    header = (
        "biobank",
        "category",
        "temperature",
        "patients",
        "samples",
        "specimens",
        "aliquots",
        "quantity",
    )
    rows = [
        (
            cell.biobank or "-",
            cell.category,
            cell.temperature,
            *(str(n) for n in (cell.patients, cell.samples, cell.specimens, cell.aliquots)),
            ", ".join(f"{value:g} {unit}" for unit, value in cell.quantities),
        )
        for cell in counts.cells
    ]
    rows.append(
        (
            "total",
            "",
            "",
            *(str(n) for n in (counts.patients, counts.samples, counts.specimens, counts.aliquots)),
            "",
        )
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


class _ExtractCommand(click.Command):
    """`datenraum extract ...` runs a job; `datenraum extract serve ...` is the HTTP operation."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        if args[:1] == ["serve"]:
            return extract_serve_command.make_context("extract serve", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command("serve")
@click.option(
    "--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder."
)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--jobs",
    "jobs_dir",
    type=click.Path(path_type=Path),
    help="Where jobs are kept (default: extraction-jobs next to the store).",
)
@click.option("--batch-size", default=500, show_default=True, type=int, help="Patients per batch.")
@click.option(
    "--memory-limit",
    default="512MB",
    show_default=True,
    help="What DuckDB may hold while it sorts a job's resources (beyond, it spills to disk).",
)
@engine_options
def extract_serve_command(
    store_path: Path,
    port: int,
    host: str,
    jobs_dir: Path | None,
    batch_size: int,
    memory_limit: str,
    engine: str,
    spark_master: str,
) -> None:
    """TORCH's HTTP operation on this store: POST /fhir/$extract-data, GET /fhir/__status/{id}."""
    from datenraum.site.extraction.http import serve
    from datenraum.site.extraction.job import MEMORY_SIZE

    if not (store_path / "CURRENT").exists():
        _fail(f"{store_path}: not a site store (run datenraum ingest first)")
    if not MEMORY_SIZE.fullmatch(memory_limit):
        _fail(f"--memory-limit: memory limit {memory_limit!r}: not a size such as 512MB or 2GB")
    settings = _engine_settings(engine, spark_master)
    serve(
        store_path,
        port,
        host=host,
        jobs=jobs_dir,
        batch_size=batch_size,
        engine=settings,
        memory_limit=memory_limit,
    )


@main.command("extract", cls=_ExtractCommand)
@click.option(
    "--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Job folder (new, or a job to resume).",
)
@click.option(
    "--patients",
    "patients_file",
    type=click.Path(path_type=Path),
    help="Patient ids, one a line (instead of the cohort).",
)
@click.option(
    "--today",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The job's day for consent (default: today, recorded in job.json).",
)
@click.option("--strict", is_flag=True, help="Accept CRTDL v1 only (the schema with format assertion).")
@click.option(
    "--profiles",
    "profile_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A folder of further profiles (digests or StructureDefinitions).",
)
@click.option("--batch-size", default=500, show_default=True, type=int)
@click.option(
    "--memory-limit",
    default="512MB",
    show_default=True,
    help="What DuckDB may hold while it sorts the job's resources (beyond, it spills to disk).",
)
@click.option(
    "--no-encounter-shift", is_flag=True, help="Do not stretch the consent window to overlapping encounters."
)
@engine_options
@click.argument("crtdl_file", type=click.Path(path_type=Path))
def extract_command(
    store_path: Path,
    out_dir: Path,
    patients_file: Path | None,
    today: dt.datetime | None,
    strict: bool,
    profile_dirs: tuple[Path, ...],
    batch_size: int,
    no_encounter_shift: bool,
    memory_limit: str,
    engine: str,
    spark_master: str,
    crtdl_file: Path,
) -> None:
    """Extract the data a CRTDL selects: TORCH-compatible NDJSON, reports and per-group tables in --out.

    `datenraum extract serve --store DIR --port N` serves TORCH's HTTP operation instead."""
    from datenraum.site.engines import EngineUnavailable
    from datenraum.site.extraction import ExtractionError, ExtractionOutOfMemory, JobOptions, run_extraction

    if not crtdl_file.is_file():
        _fail(f"{crtdl_file}: no such file")
    if not (store_path / "CURRENT").exists():
        _fail(f"{store_path}: not a site store (run datenraum ingest first)")
    patients = None
    if patients_file is not None:
        patients = [line.strip() for line in patients_file.read_text().splitlines() if line.strip()]
    try:
        options = JobOptions(
            today=today.date() if today else None,
            patients=patients,
            batch_size=batch_size,
            mode="strict" if strict else "legacy",
            profile_dirs=profile_dirs,
            encounter_shift=not no_encounter_shift,
            engine=_engine_settings(engine, spark_master),
            memory_limit=memory_limit,
        )
    except ValueError as error:
        _fail(f"--memory-limit: {error}")
    try:
        summary = run_extraction(store_path, crtdl_file.read_bytes(), out_dir, options)
    except ExtractionError as error:
        for violation in error.violations:
            click.echo(f"error: {violation}", err=True)
        sys.exit(2)
    except (FileExistsError, EngineUnavailable, ExtractionOutOfMemory) as error:
        _fail(str(error))
    click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


@main.command("synth")
@click.option("--patients", type=int, required=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--site-profile", type=int, default=0, show_default=True, help="Case-mix variant of the site.")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--waves", is_flag=True, help="Add epidemic waves (COVID-19, influenza, RSV stays with ICU care)."
)
@click.option(
    "--biobanks", is_flag=True, help="Make the specimens a biobank's: collections, aliquots, storage history."
)
def synth_command(
    patients: int, seed: int, site_profile: int, workers: int, out_dir: Path, waves: bool, biobanks: bool
) -> None:
    """Generate realistic synthetic MII KDS data as NDJSON, reproducibly from a seed."""
    from datenraum.synth import generate

    summary = generate(
        out_dir, patients, seed, site_profile=site_profile, workers=workers, waves=waves, biobanks=biobanks
    )
    total = sum(summary.resources.values())
    click.echo(f"{summary.patients} patients, {total} resources in {summary.seconds:.1f} s -> {out_dir}")


@main.command("indicators")
@click.option(
    "--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder."
)
@click.option("--disease", "diseases", multiple=True, help="Only this disease (repeatable; default: all).")
@click.option("--indicator", "indicators", multiple=True, help="Only this indicator (repeatable).")
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Data as of the end of this day (default: yesterday).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole cube as JSON (default: a summary).")
def indicators_command(
    store_path: Path, diseases: tuple[str, ...], indicators: tuple[str, ...], as_of: Any, as_json: bool
) -> None:
    """The site's dashboard cube: every indicator over the store, exact (before the hub's privacy rules)."""
    import orjson

    from datenraum.indicators.registry import DefinitionError, default_registry
    from datenraum.site.indicators import compute_cube, open_snapshot_engine

    try:
        registry = default_registry().select(diseases or None, indicators or None)
    except DefinitionError as error:
        _fail(str(error))
    day = as_of.date() if as_of is not None else dt.date.today() - dt.timedelta(days=1)
    if not (store_path / "CURRENT").exists():
        _fail(f"{store_path} is not a site store")
    with open_snapshot_engine(store_path) as engine:
        cube = compute_cube(engine, registry, day)
    if as_json:
        click.echo(orjson.dumps(cube).decode())
        return
    click.echo(
        f"data as of {cube['data_as_of']}, definitions {cube['definitions_version']}, "
        f"{cube['seconds']:.2f} s, completeness {cube['completeness']}"
    )
    for entry in cube["series"]:
        totals = [row[-1] for row in entry["rows"] if all(v is None for v in row[1:-1])]
        click.echo(
            f"{entry['disease']:>10} {entry['indicator']:<28} {len(entry['rows']):>7} rows, total {sum(totals)}"
        )


@main.group("site")
def site_group() -> None:
    """The site node's services."""


def site_serve_options(command: Callable) -> Callable:
    """The options of `datenraum site serve` (shared with datenraum/devtools/slow_agent.py)."""
    options = [
        click.option(
            "--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder."
        ),
        click.option(
            "--hub", "hub_url", required=True, help="The hub's base URL, e.g. https://hub.example.org."
        ),
        click.option(
            "--credential",
            "credential_file",
            required=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="File holding this site's credential (issued by `datenraum hub add-site`).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="The operator's settings (TOML; see datenraum/site/agent/config.py). Defaults without.",
        ),
        click.option(
            "--state",
            "state_dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Folder for the journal and the site secret (default: <store>/agent).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@site_group.command("serve")
@site_serve_options
def site_serve_command(
    store_path: Path, hub_url: str, credential_file: Path, config_file: Path | None, state_dir: Path | None
) -> None:
    """Answer the hub's tasks from this site's store, connecting only outward, until stopped."""
    serve_site(store_path, hub_url, credential_file, config_file, state_dir)


def serve_site(
    store_path: Path,
    hub_url: str,
    credential_file: Path,
    config_file: Path | None,
    state_dir: Path | None,
    **agent: Any,
) -> None:
    """What `datenraum site serve` does; `agent`: further arguments of the agent's `serve` (for dev tools)."""
    from datenraum.site.agent import serve
    from datenraum.site.agent.config import load_config
    from datenraum.site.agent.state import StateError
    from datenraum.site.store import StoreError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the state changes
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop on SIGTERM as on Ctrl-C
    try:
        config = load_config(config_file)
        if config.engine == "spark" and "cohort" not in agent:
            from datenraum.site.engines.spark import spark_cohort

            settings = _engine_settings(config.engine, config.spark_master)
            agent["cohort"] = spark_cohort(settings, time_limit=config.time_limit)
        serve(
            store=store_path,
            hub_url=hub_url,
            credential_file=credential_file,
            config=config,
            state_dir=state_dir or store_path / "agent",
            stop=threading.Event(),
            **agent,
        )
    except (ValueError, OSError, StateError, StoreError, RuntimeError) as error:
        _fail(str(error))
    except KeyboardInterrupt:
        logging.getLogger("datenraum.site.agent").info("site agent stopped")


@main.group("analysis")
def analysis_group() -> None:
    """Federated analysis; with --local-sites, over one table file per site, in-process (local mode)."""


def _local_options(command: Callable) -> Callable:
    command = click.option(
        "--local-sites",
        "local_sites",
        required=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="Folder with one CSV or Parquet file per site.",
    )(command)
    command = click.option(
        "--project", default="local", show_default=True, help="Project (differencing ledger)."
    )(command)
    return click.option("--json", "as_json", is_flag=True, help="Print the pooled result as JSON.")(command)


def _run_local(
    local_sites: Path,
    project: str,
    as_json: bool,
    run: Callable[[Any], Any],
    policy: Mapping[str, Any] | None = None,
) -> None:
    from datenraum.analysis import Analysis, AnalysisError, FormulaError
    from datenraum.privacy.analysis import AnalysisPolicy
    from datenraum.site.analysis.local import LocalSites
    from datenraum.site.analysis.tables import TableError

    try:
        rules = AnalysisPolicy.from_mapping(policy or {})
        sites = LocalSites.from_folder(local_sites, rules)
        result = run(Analysis(sites, project=project, policy=rules))
    except AnalysisError as error:
        click.echo(orjson.dumps(error.to_json(), option=orjson.OPT_INDENT_2).decode())
        sys.exit(1)
    except (FormulaError, TableError, ValueError) as error:
        _fail(str(error))
    body = result.to_json() if hasattr(result, "to_json") else result
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    elif hasattr(result, "hazard_ratio"):
        strata = ", strata: site" if result.strata else ""
        click.echo(
            f"Cox ({result.ties}{strata}; bins of {result.bin_width:g}; n={result.n}, "
            f"{result.events} events, {len(result.sites)} sites)"
        )
        for name, b, se, hr, p in zip(
            result.covariates, result.coef, result.se, result.hazard_ratio, result.p_values, strict=True
        ):
            click.echo(f"  {name:<30} {b:>12.6g} {se:>12.6g}  HR={hr:.4g}  p={p:.3g}")
    elif hasattr(result, "coefficients") or hasattr(result, "names"):
        click.echo(
            f"{result.formula}  ({result.family}/{result.link}; n={result.n}, {len(result.sites)} sites)"
        )
        for name, b, se, p in zip(result.names, result.coef, result.se, result.p_values, strict=True):
            click.echo(f"  {name:<30} {b:>12.6g} {se:>12.6g}  p={p:.3g}")
        click.echo(
            f"  deviance {result.deviance:.6f} on {result.df_resid} df; {result.iterations} iterations"
        )
    else:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())


@analysis_group.command("glm")
@_local_options
@click.option("--formula", required=True, help="e.g. 'y ~ x1 + factor(x2) + x1:x3 + offset(log(t))'.")
@click.option("--family", default="gaussian", show_default=True)
@click.option("--link", default=None, help="Link (default: the family's).")
@click.option("--weights", default=None, help="Prior weights: a variable.")
def analysis_glm_command(
    local_sites: Path,
    project: str,
    as_json: bool,
    formula: str,
    family: str,
    link: str | None,
    weights: str | None,
) -> None:
    """A pooled GLM (Fisher scoring over the sites' sums)."""
    _run_local(local_sites, project, as_json, lambda a: a.glm(formula, family, link=link, weights=weights))


@analysis_group.command("summary")
@_local_options
@click.option(
    "--variable", "variables", multiple=True, required=True, help="A numeric variable (repeatable)."
)
def analysis_summary_command(
    local_sites: Path, project: str, as_json: bool, variables: tuple[str, ...]
) -> None:
    """Exact pooled n, mean, variance."""
    _run_local(local_sites, project, as_json, lambda a: a.summary(list(variables)))


@analysis_group.command("quantiles")
@_local_options
@click.option("--variable", required=True)
@click.option("--probs", default="0.25,0.5,0.75", show_default=True, help="Probabilities, comma-separated.")
def analysis_quantiles_command(
    local_sites: Path, project: str, as_json: bool, variable: str, probs: str
) -> None:
    """Pooled quantiles from the sites' binned distributions (never an observed value)."""
    values = [float(p) for p in probs.split(",")]
    _run_local(local_sites, project, as_json, lambda a: a.quantiles(variable, values))


@analysis_group.command("table")
@_local_options
@click.option("--variable", "variables", multiple=True, required=True, help="1 to 3 variables.")
def analysis_table_command(
    local_sites: Path, project: str, as_json: bool, variables: tuple[str, ...]
) -> None:
    """A pooled 1- to 3-way table with suppression of small cells and what would reveal them."""
    _run_local(local_sites, project, as_json, lambda a: a.table(list(variables)))


def _survival_options(command: Callable) -> Callable:
    command = click.option("--time", "time_variable", required=True, help="Follow-up time (days).")(command)
    command = click.option("--event", required=True, help="Event indicator (1: event, 0: censored).")(command)
    return click.option(
        "--bin-width",
        type=float,
        default=30.0,
        show_default=True,
        help="Time bin; in local mode also the sites' narrowest allowed bin (their time_bin).",
    )(command)


@analysis_group.command("km")
@_local_options
@_survival_options
@click.option("--group", default=None, help="Curves per level of this variable, with a log-rank test.")
@click.option("--rounding", type=int, default=5, show_default=True, help="Counts rounded to this.")
def analysis_km_command(
    local_sites: Path,
    project: str,
    as_json: bool,
    time_variable: str,
    event: str,
    bin_width: float,
    group: str | None,
    rounding: int,
) -> None:
    """Pooled Kaplan–Meier curves on binned time (Greenwood intervals; log-rank with --group)."""
    _run_local(
        local_sites,
        project,
        as_json,
        lambda a: a.km(time_variable, event, group=group, bin_width=bin_width),
        {"time_bin": bin_width, "rounding": rounding},
    )


@analysis_group.command("cox")
@_local_options
@_survival_options
@click.option("--covariate", "covariates", multiple=True, required=True, help="Numeric (repeatable).")
@click.option("--ties", type=click.Choice(["efron", "breslow"]), default="efron", show_default=True)
@click.option("--strata-by-site", is_flag=True, help="A baseline hazard of each site's own.")
def analysis_cox_command(
    local_sites: Path,
    project: str,
    as_json: bool,
    time_variable: str,
    event: str,
    bin_width: float,
    covariates: tuple[str, ...],
    ties: str,
    strata_by_site: bool,
) -> None:
    """Cox proportional hazards, exactly pooled on binned time (Newton over risk-set sums)."""
    _run_local(
        local_sites,
        project,
        as_json,
        lambda a: a.cox(
            time_variable,
            event,
            list(covariates),
            ties=ties,
            strata_by_site=strata_by_site,
            bin_width=bin_width,
        ),
        {"time_bin": bin_width},
    )


@main.command("demo")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Where the demo sites keep their data and stores, and the hub its database.",
)
@click.option("--port", type=int, default=8750, show_default=True, help="Port of the hub on 127.0.0.1.")
@click.option("--once", is_flag=True, help="Stop after the example query instead of running until Ctrl-C.")
def demo_command(workdir: Path, port: int, once: bool) -> None:
    """Synthetic hospitals with their own stores and site agents, a hub, and a federated feasibility query."""
    from datenraum.devtools import demo

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the hub and agents as on Ctrl-C
    try:
        demo.run(workdir, port=port, once=once, say=click.echo)
    except demo.DemoError as error:
        _fail(str(error))


main.add_command(hub_cli, "hub")


@main.group("view")
def view_group() -> None:
    """Standard SQL-on-FHIR v2 ViewDefinitions: run them over FHIR data, or register them at a store."""


_STORE_OPTION = click.option(
    "--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder."
)


@view_group.command("add")
@_STORE_OPTION
@click.option("--replace", is_flag=True, help="Change a view already registered under the same name.")
@click.argument("view_paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def view_add_command(store_path: Path, replace: bool, view_paths: tuple[Path, ...]) -> None:
    """Register ViewDefinitions at a store: each becomes the table site_<name>, built from every stored
    resource and kept up to date by every later load."""
    from datenraum.site.store import StoreError
    from datenraum.site.views import SiteViewError, add_views

    try:
        done = add_views(store_path, view_paths, replace=replace)
    except (SiteViewError, StoreError) as error:
        _fail(str(error))
    for view in done:
        click.echo(f"{view.table}: {view.outcome} (version {view.hash[:16]}), {view.rows} rows")


@view_group.command("list")
@_STORE_OPTION
@click.option("--json", "as_json", is_flag=True)
def view_list_command(store_path: Path, as_json: bool) -> None:
    """The views registered at a store, with their tables' row counts."""
    import dataclasses

    from datenraum.site.store import StoreError
    from datenraum.site.views import list_views

    try:
        views = list_views(store_path)
    except StoreError as error:
        _fail(str(error))
    if as_json:
        click.echo(orjson.dumps([dataclasses.asdict(v) for v in views], option=orjson.OPT_INDENT_2))
        return
    for view in views:
        click.echo(
            f"{view.table:<32} {view.resource:<24} {view.rows:>10} rows  {view.hash[:16]}  {view.source}"
        )


@view_group.command("remove")
@_STORE_OPTION
@click.argument("name")
def view_remove_command(store_path: Path, name: str) -> None:
    """Unregister a site view and drop its table (in a new store generation)."""
    from datenraum.site.store import StoreError
    from datenraum.site.views import SiteViewError, remove_view

    try:
        generation = remove_view(store_path, name)
    except (SiteViewError, StoreError) as error:
        _fail(str(error))
    click.echo(f"site_{name}: removed; store generation {generation}")


@view_group.command("run")
@click.option(
    "--view", "view_paths", multiple=True, required=True, type=click.Path(exists=True, path_type=Path)
)
@click.option("--store", "store_path", type=click.Path(path_type=Path), help="Read a site store's resources.")
@click.option("--format", "file_format", type=click.Choice(["ndjson", "csv", "parquet"]), default="ndjson")
@click.option(
    "--out", "out_path", type=click.Path(path_type=Path), help="File (one view) or folder (several)."
)
@click.option("--lenient", is_flag=True, help="A column takes its first value instead of refusing several.")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, path_type=Path))
def view_run_command(
    view_paths: tuple[Path, ...],
    store_path: Path | None,
    file_format: str,
    out_path: Path | None,
    lenient: bool,
    inputs: tuple[Path, ...],
) -> None:
    """Run ViewDefinitions over FHIR NDJSON / Bundles (INPUTS) or a store's raw resources (--store)."""
    from datenraum.fhir.viewdef.model import ViewDefinitionError
    from datenraum.fhir.viewdef.runner import read_resources, read_view_file, run_views, write_table

    if bool(inputs) == bool(store_path):
        _fail("give either input files or --store")
    try:
        views = [read_view_file(path) for path in view_paths]
        if store_path is not None:
            from datenraum.site.store import Store

            with Store(store_path).snapshot() as snapshot:
                types = sorted({view.resource for view in views})
                found = snapshot.connection.execute(
                    "SELECT json FROM resource WHERE resource_type IN (SELECT unnest(?))", [types]
                ).fetchall()
            resources = ((orjson.loads(text), text.encode()) for (text,) in found)
        else:
            resources = read_resources(inputs)
        tables = run_views(views, resources, strict=not lenient)
    except (ViewDefinitionError, OSError, orjson.JSONDecodeError) as error:
        _fail(str(error))
    suffix = {"ndjson": ".ndjson", "csv": ".csv", "parquet": ".parquet"}[file_format]
    for name, table in tables.items():
        if out_path is None:
            if file_format == "parquet":
                _fail("--format parquet needs --out")
            write_table(table, sys.stdout.buffer, file_format)
            continue
        target = out_path / f"{name}{suffix}" if len(tables) > 1 or out_path.is_dir() else out_path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            write_table(table, out, file_format)
        click.echo(f"{name}: {table.num_rows} rows -> {target}", err=True)


@main.group("linkage")
def linkage_cli() -> None:
    """Privacy-preserving record linkage with CLKs: test a schema offline on CSVs of identity columns."""


def _linkage_inputs(schema_path: Path, key_file: Path, project: str, sites: tuple[Path, ...]):
    import csv

    from datenraum.linkage.encoder import Encoder
    from datenraum.linkage.keys import project_secret, read_key_file
    from datenraum.linkage.schema import load_schema

    if len(sites) < 2:
        _fail("give at least two --site CSV files")
    encoder = Encoder(load_schema(schema_path), project_secret(read_key_file(key_file), project))
    tables = []
    for site in sites:
        with site.open(newline="", encoding="utf-8") as f:
            tables.append(list(csv.DictReader(f)))
    return encoder, tables


_LINKAGE_OPTIONS = [
    click.option("--schema", "schema_path", required=True, type=click.Path(path_type=Path, exists=True)),
    click.option(
        "--key-file", required=True, type=click.Path(path_type=Path, exists=True), help="Site secret."
    ),
    click.option("--project", default="default", show_default=True, help="Project (its own derived key)."),
    click.option(
        "--site", "sites", multiple=True, required=True, type=click.Path(path_type=Path, exists=True)
    ),
    click.option("--blocking", help="LSH blocking BANDS,BITS (default: compare all pairs)."),
]


def _linkage_options(command: Callable) -> Callable:
    for option in reversed(_LINKAGE_OPTIONS):
        command = option(command)
    return command


def _blocking(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    bands, bits = (int(x) for x in value.split(","))
    return bands, bits


@linkage_cli.command("estimate")
@_linkage_options
@click.option(
    "--threshold", type=float, default=0.85, show_default=True, help="Dice threshold (calibrate it)."
)
@click.option("--json", "as_json", is_flag=True)
def linkage_estimate_command(
    schema_path: Path,
    key_file: Path,
    project: str,
    sites: tuple[Path, ...],
    blocking: str | None,
    threshold: float,
    as_json: bool,
) -> None:
    """Encode the sites' CSVs, link them and print the number of distinct persons with an interval."""
    from datenraum.linkage.estimate import estimate_distinct

    encoder, tables = _linkage_inputs(schema_path, key_file, project, sites)
    result = estimate_distinct([encoder.encode(t) for t in tables], threshold, blocking=_blocking(blocking))
    if as_json:
        click.echo(orjson.dumps(result.as_json()).decode())
    else:
        lo, hi = result.interval
        click.echo(f"{result.distinct} distinct persons ({lo}-{hi}) at threshold {result.threshold}")


@linkage_cli.command("calibrate")
@_linkage_options
@click.option("--truth-column", required=True, help="Column with the true person id (labelled data).")
@click.option("--json", "as_json", is_flag=True)
def linkage_calibrate_command(
    schema_path: Path,
    key_file: Path,
    project: str,
    sites: tuple[Path, ...],
    blocking: str | None,
    truth_column: str,
    as_json: bool,
) -> None:
    """Precision and recall of the schema per threshold on labelled data, and the threshold picked."""
    from datenraum.linkage.estimate import calibrate

    encoder, tables = _linkage_inputs(schema_path, key_file, project, sites)
    if any(truth_column not in (t[0] if t else {truth_column: ""}) for t in tables):
        _fail(f"column {truth_column!r} is missing in a site file")
    truth = [[r[truth_column] for r in t] for t in tables]
    clean = [[{k: v for k, v in r.items() if k != truth_column} for r in t] for t in tables]
    result = calibrate([encoder.encode(t) for t in clean], truth, blocking=_blocking(blocking))
    if as_json:
        click.echo(orjson.dumps(result.as_json()).decode())
    else:
        click.echo(f"threshold {result.threshold}: precision {result.precision}, recall {result.recall}")


@main.group("linkunit")
def linkunit_cli() -> None:
    """The linkage unit: a service of its own that links sites' CLKs (never the hub's process)."""


@linkunit_cli.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path))
@click.option(
    "--db", "db_path", required=True, type=click.Path(path_type=Path), help="The unit's SQLite file."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8470, show_default=True, type=int)
def linkunit_serve_command(config_path: Path, db_path: Path, host: str, port: int) -> None:
    """Serve the linkage unit's HTTP API."""
    import uvicorn

    from datenraum.linkunit.app import create_app
    from datenraum.linkunit.config import load_config
    from datenraum.linkunit.errors import ConfigError
    from datenraum.linkunit.service import LinkageUnit
    from datenraum.linkunit.store import Store

    try:
        config = load_config(config_path)
    except ConfigError as e:
        _fail(str(e))
    unit = LinkageUnit(config, Store(db_path))
    uvicorn.run(create_app(unit), host=host, port=port, log_level="warning")


@main.group("studies")
def studies_cli() -> None:
    """Prospective studies: REDCap dictionaries and records <-> FHIR Questionnaires and responses."""


@studies_cli.command("import-redcap-dictionary")
@click.argument("dictionary", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--base-url", default=None, help="Canonical url prefix of the Questionnaires.")
def studies_import_dictionary_command(dictionary: Path, out_dir: Path, base_url: str | None) -> None:
    """Convert a REDCap data dictionary into one Questionnaire per form and a conversion report."""
    from datenraum.studies.redcap import RedcapError, dictionary_to_questionnaires
    from datenraum.studies.redcap.fields import DEFAULT_BASE_URL
    from datenraum.studies.redcap.files import read_text, report_text, write_conversion

    try:
        conversion = dictionary_to_questionnaires(
            read_text(dictionary), str(dictionary), base_url or DEFAULT_BASE_URL
        )
    except RedcapError as e:
        _fail(str(e))
    write_conversion(conversion, out_dir)
    click.echo(f"{len(conversion.questionnaires)} Questionnaires in {out_dir}")
    click.echo(report_text(conversion.report).splitlines()[0])


@studies_cli.command("export-redcap-dictionary")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path, dir_okay=False))
def studies_export_dictionary_command(folder: Path, out_file: Path) -> None:
    """Write the Questionnaires of FOLDER as a REDCap data dictionary."""
    from datenraum.studies.questionnaire import FormError
    from datenraum.studies.redcap import RedcapError, questionnaires_to_dictionary
    from datenraum.studies.redcap.files import read_questionnaires, report_text

    try:
        exported = questionnaires_to_dictionary(read_questionnaires(folder))
    except (RedcapError, FormError) as e:
        _fail(str(e))
    out_file.write_text(exported.text, encoding="utf-8")
    click.echo(report_text(exported.report), nl=False)


@studies_cli.command("import-redcap-records")
@click.argument("dictionary", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("records", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--format", "out_format", type=click.Choice(["ndjson", "bundle"]), default="ndjson", show_default=True
)
@click.option(
    "--timezone", default="Europe/Berlin", show_default=True, help="Time zone of the export's datetimes."
)
def studies_import_records_command(
    dictionary: Path, records: Path, out_dir: Path, out_format: str, timezone: str
) -> None:
    """Convert a REDCap flat record export into QuestionnaireResponses (with the dictionary's forms)."""
    from datenraum.studies.redcap import RedcapError, dictionary_to_questionnaires, records_to_responses
    from datenraum.studies.redcap.files import read_text, write_conversion, write_responses

    try:
        conversion = dictionary_to_questionnaires(read_text(dictionary), str(dictionary))
        imported = records_to_responses(conversion.questionnaires, read_text(records), str(records), timezone)
    except RedcapError as e:
        _fail(str(e))
    write_conversion(conversion, out_dir / "questionnaires")
    name = "responses.ndjson" if out_format == "ndjson" else "responses.json"
    write_responses(imported.responses, out_dir / name, out_format)
    click.echo(f"{len(imported.responses)} QuestionnaireResponses in {out_dir / name}")
    for (event, instrument), rows in sorted(imported.rows_per_event_and_instrument.items()):
        click.echo(f"{event or '-'}\t{instrument or '-'}\t{rows} rows")


@studies_cli.command("export")
@click.argument("questionnaires", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("responses", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--format",
    "formats",
    multiple=True,
    help="Only these (csv, labels.csv, dictionary.csv, sav, dta, xpt, rds).",
)
@click.option("--drop-identifiers", is_flag=True, help="Leave out the items flagged as identifying.")
@click.option(
    "--date-shift-key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A file whose bytes key the per-record date shift (0 to 364 days earlier).",
)
def studies_export_command(
    questionnaires: Path,
    responses: Path,
    out_dir: Path,
    formats: tuple[str, ...],
    drop_identifiers: bool,
    date_shift_key: Path | None,
) -> None:
    """One table per form of the study's responses, for the statistician: CSV with a data dictionary,
    SPSS, Stata, SAS and R files."""
    from datenraum.studies.exports import FORMATS, ExportError, export_form, form_table, read_responses
    from datenraum.studies.questionnaire import FormError, parse_questionnaire
    from datenraum.studies.redcap import RedcapError
    from datenraum.studies.redcap.files import read_questionnaires

    try:
        forms = [parse_questionnaire(q) for q in read_questionnaires(questionnaires)]
        answered = read_responses(responses)
        key = date_shift_key.read_bytes() if date_shift_key else None
        for form in forms:
            table = form_table(form, answered, drop_identifiers=drop_identifiers, date_shift_key=key)
            export_form(table, out_dir, formats or FORMATS)
            click.echo(f"{table.form}\t{len(table.rows)} rows\t{len(table.columns)} columns")
    except (ExportError, FormError, RedcapError) as e:
        _fail(str(e))


@studies_cli.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8490, show_default=True, type=int)
def studies_serve_command(config_path: Path, host: str, port: int) -> None:
    """Serve the site EDC (data entry for the site's studies) inside the hospital."""
    import uvicorn

    from datenraum.site.studies.app import create_app
    from datenraum.site.studies.config import EdcConfigError, load_edc_config
    from datenraum.site.studies.service import Edc

    try:
        config = load_edc_config(config_path)
        if not (config.store / "CURRENT").exists():
            _fail(f"{config.store}: not a site store (run datenraum ingest first)")
        edc = Edc.open(config)
    except (EdcConfigError, ValueError) as e:
        _fail(str(e))
    try:
        app = create_app(edc, session_hours=config.session_hours, secure_cookies=config.secure_cookies)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        edc.close()


@studies_cli.group("users")
def studies_users_cli() -> None:
    """Local accounts of the site's study staff (their roles come from the hub's roster)."""


@studies_users_cli.command("add")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--email", required=True, help="Must match the e-mail on the study's roster.")
@click.option("--name", required=True)
@click.password_option(help="At least 12 characters (asked for when not given).")
def studies_users_add_command(config_path: Path, email: str, name: str, password: str) -> None:
    """Create a site EDC account (argon2id password hash in the EDC's database)."""
    import datetime as dt

    from datenraum.site.studies.accounts import AccountError, Accounts
    from datenraum.site.studies.config import EdcConfigError, load_edc_config
    from datenraum.site.studies.database import EdcDatabase

    try:
        config = load_edc_config(config_path)
    except EdcConfigError as e:
        _fail(str(e))
    database = EdcDatabase(config.database)
    try:
        account = Accounts(database).add(email, name, password, dt.datetime.now(dt.UTC))
    except AccountError as e:
        _fail(str(e))
    finally:
        database.close()
    click.echo(f"account {account.email} created in {config.database}")
