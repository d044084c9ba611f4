"""`datenraum demo`: a federated research data space on one machine.

Several synthetic hospitals, each with its own site store and site agent, a hub, and a researcher who
asks how many patients match a feasibility query, then runs a federated analysis (a pooled summary and
a logistic regression) in an approved project seeded for the demo (`demo_project`). Everything runs as the real commands would in
production (`datenraum hub serve`, `datenraum site serve`), as child processes on 127.0.0.1.

The sites differ the way real ones do: size, seed, and case mix (see `datenraum.synth` profiles). The
stores are reused when they already hold the data of their recipe, so a second run starts in seconds; the
hub and its database start fresh every run (in `<workdir>/federation/`).
"""

from __future__ import annotations

import shlex
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import sessionmaker

from datenraum.analysis import AnalysisError
from datenraum.devtools.demo_edc import (
    DEMO_EDC_PASSWORD,
    DEMO_STATISTICIAN,
    DemoStudyError,
    EdcSite,
    prepare_edc,
    seed_study,
)
from datenraum.devtools.demo_project import EXAMPLE_FORMULA, Example, run_example, seed_project
from datenraum.devtools.federation import FederationError, LocalFederation, Researcher
from datenraum.hub.db import create_hub_engine
from datenraum.hub.directory.service import Directory, Site
from datenraum.hub.roles import Actor, Role
from datenraum.query.model import StructuredQuery, parse_query, query_to_json

__all__ = [
    "DEMO_PORT",
    "DEMO_QUERY",
    "DEMO_SITES",
    "DemoError",
    "DemoOutcome",
    "DemoSite",
    "prepare_sites",
    "run",
]

DEMO_PORT = 8750
# The site EDCs of the demo study's two sites listen on the ports after the hub's.
EDC_SITES = 2
# The demo's sites have biobanks (synth --biobanks); their agents answer sample searches and analysis tasks
# besides the default tasks (both are off by default at a real site).
AGENT_CONFIG = '[tasks]\nallowed = ["feasibility-count", "indicators", "sample-search", "analysis"]\n'
DEMO_SAMPLES = {"categories": ["blood"]}
# Portal accounts of the demo, with their passwords: a researcher and the coordination office.
DEMO_USER = "researcher@demo.example"
DEMO_ADMIN = "office@demo.example"
DEMO_PASSWORDS = {DEMO_USER: "demo-researcher", DEMO_ADMIN: "demo-coordination"}


class DemoError(RuntimeError):
    """The demo cannot run (port taken, a process did not start); the text says what to do."""


@dataclass(frozen=True)
class DemoOutcome:
    query: dict[str, Any]  # the feasibility query's result document
    analysis: Example  # the worked example of federated analysis


@dataclass(frozen=True)
class DemoSite:
    key: str  # the site's name at the hub (ASCII, no spaces) and its folder in the workdir
    name: str
    patients: int
    seed: int
    profile: int


DEMO_SITES = (
    DemoSite("uk-nord", "Universitätsklinikum Nord", 4000, 11, 0),
    DemoSite("uk-sued", "Universitätsklinikum Süd", 2500, 22, 1),
    DemoSite("um-west", "Universitätsmedizin West", 1500, 33, 2),
    DemoSite("klinikum-ost", "Klinikum Ost", 2000, 44, 3),
)

# "Women over 50 with type 2 diabetes and HbA1c above 6.5 %, without any cancer diagnosis."
DEMO_QUERY: StructuredQuery = parse_query(
    {
        "version": "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
        "display": "Frauen über 50 mit Typ-2-Diabetes und HbA1c > 6,5 %, ohne Krebsdiagnose",
        "inclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "263495000", "display": "Geschlecht"}
                    ],
                    "valueFilter": {
                        "type": "concept",
                        "selectedConcepts": [
                            {
                                "system": "http://hl7.org/fhir/administrative-gender",
                                "code": "female",
                                "display": "Female",
                            }
                        ],
                    },
                }
            ],
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}
                    ],
                    "valueFilter": {
                        "type": "quantity-comparator",
                        "comparator": "gt",
                        "value": 50,
                        "unit": {"code": "a", "display": "Jahre"},
                    },
                }
            ],
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Diagnose", "display": "Diagnose"},
                    "termCodes": [
                        {
                            "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                            "code": "E11",
                            "display": "Diabetes mellitus, Typ 2",
                        }
                    ],
                }
            ],
            [
                {
                    "context": {
                        "system": "fdpg.mii.cds",
                        "code": "Laboruntersuchung",
                        "display": "Laboruntersuchung",
                    },
                    "termCodes": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}],
                    "valueFilter": {
                        "type": "quantity-comparator",
                        "comparator": "gt",
                        "value": 6.5,
                        "unit": {"code": "%", "display": "%"},
                    },
                }
            ],
        ],
        "exclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Diagnose", "display": "Diagnose"},
                    "termCodes": [
                        {
                            "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                            "code": "C00-C97",
                            "display": "Bösartige Neubildungen",
                        }
                    ],
                }
            ],
        ],
    }
)


def list_in_directory(database_url: str, sites: list[DemoSite]) -> None:
    """The demo's sites in the network directory (under their names at the hub), so that their agents'
    catalogue reports list their biobanks there."""
    engine = create_hub_engine(database_url)
    try:
        directory = Directory(sessionmaker(engine, expire_on_commit=False))
        office = Actor(0, frozenset({Role.ADMIN}))
        for site in sites:
            directory.save_site(office, Site(site.key, site.name, site.name.split()[-1]))
    finally:
        engine.dispose()


def prepare_sites(
    workdir: Path, sites: tuple[DemoSite, ...] = DEMO_SITES, say: Callable[[str], None] = print
) -> dict[str, Path]:
    """Generate and ingest each site's data unless its store already holds exactly that recipe; the stores
    by site key."""
    from datenraum.site.ingest import ingest
    from datenraum.synth import generate

    stores = {}
    for site in sites:
        folder = workdir / site.key
        recipe = {"patients": site.patients, "seed": site.seed, "profile": site.profile, "biobanks": True}
        marker = folder / "recipe.json"
        store = folder / "store"
        if not (marker.exists() and orjson.loads(marker.read_bytes()) == recipe):
            say(
                f"{site.name}: generating {site.patients} patients (seed {site.seed}, profile {site.profile})"
            )
            data = folder / "data"
            shutil.rmtree(store, ignore_errors=True)  # another recipe's patients must not stay in the store
            generate(data, site.patients, site.seed, site_profile=site.profile, biobanks=True)
            report = ingest(store, [data])
            say(f"{site.name}: loaded {report.total('added')} resources in {report.seconds:.1f} s")
            marker.write_bytes(orjson.dumps(recipe))
        stores[site.key] = store
    return stores


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} is in use (is another demo running?); choose one with --port"
            ) from None


VALUE_WIDTH = 16


def _format_count(site: dict[str, Any]) -> str:
    count = site.get("count")
    if count is None:
        return f"{site['state']} ({site.get('reason') or 'no answer'})"
    if count.get("below_threshold"):
        return f"{'below threshold':>{VALUE_WIDTH}}"
    return f"{count['obfuscated']:>{VALUE_WIDTH}}"


def _print_result(result: dict[str, Any], sites: tuple[DemoSite, ...], say: Callable[[str], None]) -> None:
    """One line per site in the demo's order, then the total (if the hub shows one)."""
    answers = {answer["site"]: answer for answer in result["sites"]}
    width = max(len(site.name) for site in sites) + 2
    for site in sites:
        say(f"  {site.name:<{width}}{_format_count(answers[site.key])}")
    total = result.get("total")
    if total is None:
        say(f"  {'all sites':<{width}}no total: too few sites answered")
    else:
        label = f"all {total['sites']} sites"
        value = f"{'at least ' if total['at_least'] else ''}{total['value']}"
        say(f"  {label:<{width}}{value:>{VALUE_WIDTH}}")


def _print_samples(result: dict[str, Any], sites: tuple[DemoSite, ...], say: Callable[[str], None]) -> None:
    """Per site its patients and samples (over its biobanks), then the network's totals."""
    answers = {answer["site"]: answer for answer in result["sites"]}
    width = max(len(site.name) for site in sites) + 2
    for site in sites:
        answer = answers[site.key]
        if answer["result"] is None:
            say(f"  {site.name:<{width}}{answer['state']} ({answer['reason'] or 'no answer'})")
            continue
        biobanks = ", ".join(b["name"] or b["biobank"] or "?" for b in answer["result"]["biobanks"])
        patients = _format_count({"count": answer["result"]["patients"]})
        samples = _format_count({"count": answer["result"]["samples"]}).strip()
        say(f"  {site.name:<{width}}{patients} patients, {samples} samples ({biobanks})")
    totals = result["totals"]
    if totals["patients"] is None:
        say(f"  {'all sites':<{width}}no total: too few sites answered")
    else:
        at_least = "at least " if totals["patients"]["at_least"] else ""
        say(f"  {'all sites':<{width}}{at_least}{totals['patients']['value']:>{VALUE_WIDTH}} patients")


def _print_directions(
    fed: LocalFederation, token: Path, query_file: Path, say: Callable[[str], None]
) -> None:
    auth = f'-H "Authorization: Bearer $(cat {shlex.quote(str(token))})"'
    say(f"\nOpen the research portal in a browser: {fed.url}/")
    say(f"  researcher:          {DEMO_USER} / {DEMO_PASSWORDS[DEMO_USER]}")
    say(f"  coordination office: {DEMO_ADMIN} / {DEMO_PASSWORDS[DEMO_ADMIN]} (approves new registrations)")
    say(f"The hub's API is at {fed.url}/api/v1 (documentation: {fed.url}/docs).")
    say(f"Researcher API token: {token}")
    say("Try it:")
    say(f"  curl -s {auth} {fed.url}/api/v1/sites")
    say(
        f"  curl -s {auth} -H 'Content-Type: application/json' "
        f"--data @{shlex.quote(str(query_file))} {fed.url}/api/v1/queries"
    )
    say(f"  curl -s {auth} '{fed.url}/api/v1/queries/<id>?wait=30'")
    say(f"Logs of the hub and the site agents: {fed.logs}/")
    say(f"Messages the hub sends (approvals, password-reset links): {fed.workdir / 'mail'}/")


def _print_example(example: Example, say: Callable[[str], None]) -> None:
    fit = example.glm
    say(f"\nFederated analysis in project {example.project} ({len(example.sites)} sites), adults:")
    age = example.summary["age"]
    say(
        f"  pooled age: n {age['n']}, mean {age['mean']:.1f} years; type 2 diabetes: {example.summary['t2d']['mean']:.1%}"
    )
    say(
        f"  logistic regression {EXAMPLE_FORMULA} ({fit['iterations']} rounds of Fisher scoring, n {fit['n']}):"
    )
    for name, row in fit["coefficients"].items():
        say(f"    {name:<18}{row['estimate']:>9.4f}  SE {row['se']:.4f}  p {row['p']:.3g}")


def _print_analysis_directions(
    fed: LocalFederation, token: Path, project: int, say: Callable[[str], None]
) -> None:
    say('Run your own, from Python (README, "Across the federation"):')
    say("  from datenraum.analysis import Client")
    say(f"  client = Client({fed.url!r}, open({str(token)!r}).read().strip(), project={project},")
    say("                  variables={'t2d': {'kind': 'condition', 'codes': ['E11'], 'value': 'any'}, ...})")
    auth = f'-H "Authorization: Bearer $(cat {shlex.quote(str(token))})"'
    say("or with curl:")
    say(
        f"  curl -s {auth} -H 'Content-Type: application/json' --data "
        '\'{"variables": ["age"], "data": {"variables": {"age": {"kind": "age"}}}}\' '
        f"{fed.url}/api/v1/analysis/projects/{project}/summary"
    )


def _start_study(
    fed: LocalFederation,
    workdir: Path,
    stores: dict[str, Path],
    secrets: dict[str, Path],
    port: int,
    say: Callable[[str], None],
) -> list[EdcSite]:
    """The multicentre study at the hub, and the EDCs of its first two sites with entered visits."""
    sites = list(stores)[:EDC_SITES]
    for number in range(1, len(sites) + 1):
        _check_port_free(port + number)
    lead, statistician = (secrets[email].read_text().strip() for email in (DEMO_USER, DEMO_STATISTICIAN))
    seed_study(fed.url, lead, statistician, sites)
    say("\nStudy HERZ-AKTIV (two arms, randomised by sex) at the hub; its site EDCs:")
    edcs = [prepare_edc(workdir, site, stores[site], fed.url, secrets[site], say) for site in sites]
    for number, edc in enumerate(edcs, start=1):
        fed.start_edc(edc.name, edc.config, port + number)
    return edcs


def _print_edc_directions(edcs: list[EdcSite], port: int, say: Callable[[str], None]) -> None:
    say("\nOpen a site's study EDC (data entry inside the hospital) in a browser:")
    for number, edc in enumerate(edcs, start=1):
        say(f"  {edc.name}: http://127.0.0.1:{port + number}/")
        for email, role in edc.team.items():
            say(f"    {role.value:<18} {email} / {DEMO_EDC_PASSWORD}")


def _watch(fed: LocalFederation, say: Callable[[str], None]) -> None:
    """Until Ctrl-C: say once if a child process ends on its own (the others go on)."""
    reported: set[str] = set()
    while True:
        for child in [fed.hub, *fed.agents.values(), *fed.edcs.values()]:
            if child is not None and child.process.poll() is not None and child.name not in reported:
                say(f"{child.name} stopped (exit code {child.process.returncode}); see {child.log}")
                reported.add(child.name)
        time.sleep(1)


def run(
    workdir: Path,
    *,
    port: int = DEMO_PORT,
    once: bool = False,
    sites: tuple[DemoSite, ...] = DEMO_SITES,
    say: Callable[[str], None] = print,
) -> DemoOutcome:
    """Prepare the sites, start the hub and one agent per site, ask the demo query through the hub and
    run the worked example of federated analysis in the demo's project.

    Keeps everything running until Ctrl-C unless `once`; returns the query's result and the example's.
    """
    _check_port_free(port)
    stores = prepare_sites(workdir, sites, say=say)
    federation = workdir / "federation"
    # A fresh hub each run. The agents keep their state beside their stores: the same site secret gives
    # the same noise, so the demo answers as before (the hub's task ids never repeat, so old journals
    # cannot be mistaken for new tasks).
    shutil.rmtree(federation, ignore_errors=True)
    federation.mkdir(parents=True)
    hub_env = {"DATENRAUM_HUB_STUDY_KEY_FILE": str(federation / "study.key")}
    with LocalFederation(federation, port=port, hub_env=hub_env) as fed:
        try:
            fed.start_hub()
            secrets = fed.register(
                sites=list(stores),
                users=[(DEMO_USER, "researcher"), (DEMO_ADMIN, "admin"), (DEMO_STATISTICIAN, "researcher")],
                passwords=DEMO_PASSWORDS,
            )
            database_url = fed.hub_env["DATENRAUM_HUB_DATABASE_URL"]
            list_in_directory(database_url, [site for site in sites if site.key in stores])
            project = seed_project(database_url, DEMO_USER, DEMO_ADMIN, list(stores))
            agent_config = federation / "agent.toml"
            agent_config.write_text(AGENT_CONFIG)
            for name, store in stores.items():
                fed.start_agent(name, store, secrets[name], state=store.parent / "agent", config=agent_config)
            token = secrets[DEMO_USER]
            edcs = _start_study(fed, workdir, stores, secrets, port, say)
        except (FederationError, LookupError, DemoStudyError) as error:
            raise DemoError(str(error)) from None
        say(f"\nHub {fed.url} with {len(stores)} site agents (hub database {federation / 'hub.db'}).")

        query_file = federation / "query.json"
        query_file.write_bytes(orjson.dumps({"query": query_to_json(DEMO_QUERY)}, option=orjson.OPT_INDENT_2))
        researcher = Researcher(fed.url, token.read_text().strip())
        try:
            started = time.perf_counter()
            response = researcher.submit(query_to_json(DEMO_QUERY))
            if response.status_code != 201:
                raise DemoError(f"the hub refused the demo query ({response.status_code}): {response.text}")
            result = researcher.result(response.json()["id"])
            seconds = time.perf_counter() - started
            say(f"\nQuery: {DEMO_QUERY.display}")
            _print_result(result, sites, say)
            say(
                f"Answered by the sites through the hub in {seconds:.2f} s. Each site obfuscates its count before"
            )
            say(
                "it leaves: below a threshold only that is said, otherwise noise is added and the count rounded."
            )
            samples = researcher.sample_search(DEMO_SAMPLES)
            say("\nSample search: blood samples (plasma, serum, whole blood, buffy coat) of the same network")
            _print_samples(samples, sites, say)
        finally:
            researcher.close()
        try:
            example = run_example(fed.url, token.read_text().strip(), project)
        except AnalysisError as error:
            raise DemoError(f"the demo's federated analysis failed: {error}") from None
        _print_example(example, say)
        _print_directions(fed, token, query_file, say)
        _print_analysis_directions(fed, token, project, say)
        _print_edc_directions(edcs, port, say)
        if not once:
            say("Press Ctrl-C to stop.")
            try:
                _watch(fed, say)
            except KeyboardInterrupt:
                say("\nStopping the site agents and the hub ...")
    return DemoOutcome(result, example)
