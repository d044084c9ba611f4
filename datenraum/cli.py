"""The `datenraum` command: a thin layer over the library; each command parses, calls, prints."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from datenraum.site.ingest import IngestError, LoadReport, ingest
from datenraum.site.store import Store, StoreError


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
    click.echo(f"{report.resources_read} resources read in {report.seconds:.2f} s ({rate:,.0f}/s); "
               f"store generation {report.generation}")
    for reject in report.rejects[:limit]:
        click.echo(f"rejected: {reject.location}: {reject.reason}", err=True)
    if len(report.rejects) > limit:
        click.echo(f"... and {report.total('rejected') - limit} more", err=True)
    if report.rejects_file:
        click.echo(f"rejected resources are in {report.rejects_file}", err=True)


@click.group()
def main() -> None:
    """Datenraum: a federated study and data space for clinical research."""


@main.command("ingest")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path), help="Site store folder.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core for big input).")
@click.option("--json", "as_json", is_flag=True, help="Print the load report as JSON.")
@click.option("--show-rejects", default=20, show_default=True, help="How many rejects to print.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest_command(store_path: Path, workers: int | None, as_json: bool, show_rejects: int, paths: tuple[Path]) -> None:
    """Load FHIR R4 NDJSON (.ndjson, .ndjson.gz) and Bundles (.json), or folders of them, into a store."""
    try:
        report = ingest(store_path, paths, workers=workers)
    except (IngestError, StoreError) as error:
        _fail(str(error))
    if as_json:
        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
    else:
        _print_load_report(report, show_rejects)
    if report.total("rejected"):
        sys.exit(1)


@main.command("stats")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path))
def stats_command(store_path: Path) -> None:
    """Row counts of every table of a site store."""
    try:
        with Store(store_path).snapshot() as snapshot:
            click.echo(f"generation {snapshot.generation}")
            for table, count in snapshot.row_counts().items():
                click.echo(f"{table:<28} {count:>12}")
    except StoreError as error:
        _fail(str(error))


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


@main.command("demo")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True,
              help="Where the demo sites keep their data and stores.")
def demo_command(workdir: Path) -> None:
    """Several synthetic hospitals on this machine, each with its own store, answering a feasibility query."""
    from datenraum import demo

    demo.run(workdir, say=click.echo)
