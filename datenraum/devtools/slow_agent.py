"""A site agent that pauses before each count: the real agent process, made slow from outside.

    python -m datenraum.devtools.slow_agent --delay SECONDS <the options of `datenraum site serve`>

The federation's fault tests start it (through `LocalFederation.start_agent(..., delay=...)`) to kill a
site deterministically while it works, or to make it answer after the deadline. The agent itself has no
such setting: the delay is a cohort function of this tool's, handed to the agent's `serve(cohort=...)`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from datenraum.cli import serve_site, site_serve_options

if TYPE_CHECKING:
    from datenraum.query.model import StructuredQuery
    from datenraum.site.store import Snapshot


@click.command()
@click.option(
    "--delay", type=click.FloatRange(min=0), required=True, help="Seconds to pause before each count."
)
@click.option(
    "--analysis-delay",
    type=click.FloatRange(min=0),
    default=0,
    help="Seconds to pause before analysis tasks.",
)
@click.option(
    "--analysis-delay-from",
    type=click.IntRange(min=1),
    default=1,
    help="Pause from the N-th analysis task on.",
)
@site_serve_options
def main(
    delay: float,
    analysis_delay: float,
    analysis_delay_from: int,
    store_path: Path,
    hub_url: str,
    credential_file: Path,
    config_file: Path | None,
    state_dir: Path | None,
) -> None:
    """Answer the hub's tasks like `datenraum site serve`, pausing `--delay` seconds before each count."""
    from datenraum.site import feasibility

    if analysis_delay:
        import itertools

        from datenraum.site.agent.loop import Agent, log

        answered = itertools.count(1)
        analyse = Agent._analyse

        def slow_analyse(self: Agent, task: object) -> object:
            if next(answered) >= analysis_delay_from:
                log.info("slow agent: holding analysis task %s for %g s", task.id, analysis_delay)  # type: ignore[attr-defined]
                time.sleep(analysis_delay)
            return analyse(self, task)  # type: ignore[arg-type]

        Agent._analyse = slow_analyse  # type: ignore[method-assign]

    def slow_cohort(snapshot: Snapshot, query: StructuredQuery) -> Iterator[str]:
        time.sleep(delay)
        yield from feasibility.iter_patient_ids(snapshot, query)

    serve_site(store_path, hub_url, credential_file, config_file, state_dir, cohort=slow_cohort)


if __name__ == "__main__":
    main()
