"""The `datenraum` command: a thin layer over the library; each command parses, calls, prints."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
from collections.abc import Callable
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


@main.command("synth")
@click.option("--patients", type=int, required=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--site-profile", type=int, default=0, show_default=True, help="Case-mix variant of the site.")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
def synth_command(patients: int, seed: int, site_profile: int, workers: int, out_dir: Path) -> None:
    """Generate realistic synthetic MII KDS data as NDJSON, reproducibly from a seed."""
    from datenraum.synth import generate

    summary = generate(out_dir, patients, seed, site_profile=site_profile, workers=workers)
    total = sum(summary.resources.values())
    click.echo(f"{summary.patients} patients, {total} resources in {summary.seconds:.1f} s -> {out_dir}")


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

            agent["cohort"] = spark_cohort(_engine_settings(config.engine, config.spark_master))
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
