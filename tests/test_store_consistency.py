"""The store is never seen half-written: not after a killed load, not by a query that runs during one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
import pytest
from conftest import query
from fhir_resources import bundle, condition, delete, observation, patient

from datenraum.site.compact import compact
from datenraum.site.ingest import ingest
from datenraum.site.store import Store, StoreError

STATE_TABLES = ("resource", "patient", "patient_identifier", "observation", "condition")


def state(store: Store) -> tuple:
    """What a reader sees: per table the row count and a digest of the ids, and the sum of lab values."""
    with store.snapshot() as snapshot:
        return read_state(snapshot)


def read_state(snapshot) -> tuple:
    connection = snapshot.connection
    tables = tuple(
        connection.execute(f"SELECT count(*), sum(hash(id)) FROM {table}").fetchone()
        for table in STATE_TABLES
    )
    return (*tables, connection.execute("SELECT sum(value_quantity) FROM observation").fetchone()[0])


def debris(store: Store) -> list[str]:
    """Files and folders of the store that the current generation does not need."""
    with store.snapshot() as snapshot:
        needed = {str(store.path / f) for s in snapshot.manifest.segments for f in s.all_files()}
        generation = snapshot.generation
    found = [str(p) for p in store.staging.iterdir()]
    found += [str(p) for p in store.manifests.iterdir() if p.name != f"manifest-{generation:08d}.json"]
    found += [str(p) for p in store.path.iterdir() if p.name.endswith(".tmp")]
    found += [str(p) for p in store.segments.rglob("*") if p.is_file() and str(p) not in needed]
    found += [str(p) for p in store.segments.rglob("*") if p.is_dir() and not any(p.iterdir())]
    return found


def write_lines(path: Path, resources) -> Path:
    with open(path, "wb") as out:
        for resource in resources:
            out.write(orjson.dumps(resource) + b"\n")
    return path


def small_observation(number: int, patients: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"big{number}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": f"Patient/p{number % patients}"},
        "valueQuantity": {"value": number % 97},
    }


@pytest.fixture
def populated(store, input_dir) -> Store:
    """A store with 200 patients, 2000 observations and 200 conditions from one earlier load."""
    first = [patient(f"p{i}", mrn=str(i)) for i in range(200)]
    first += [observation(f"o{i}", f"Patient/p{i % 200}", value=float(i)) for i in range(2000)]
    first += [condition(f"c{i}", f"Patient/p{i}") for i in range(200)]
    ingest(store, [write_lines(input_dir / "first.ndjson", first)], workers=1)
    return store


def second_load(input_dir: Path) -> list[Path]:
    """A load that replaces half the observations, deletes 20 patients with all theirs, and adds 50."""
    changes = [observation(f"o{i}", f"Patient/p{i % 200}", value=-float(i)) for i in range(0, 2000, 2)]
    changes += [patient(f"n{i}") for i in range(50)]
    changes += [observation(f"n{i}", f"Patient/n{i}", value=1000.0) for i in range(50)]
    deletes = bundle([delete(f"Patient/p{i}") for i in range(180, 200)])
    (input_dir / "deletes.json").write_bytes(orjson.dumps(deletes))
    return [write_lines(input_dir / "changes.ndjson", changes), input_dir / "deletes.json"]


def run_cli(*args: str | Path, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "datenraum", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


# --- readers during a load ------------------------------------------------------------------------


def test_a_reader_during_a_load_sees_the_old_state_or_the_new_never_a_mix(populated, input_dir):
    store = populated
    before = state(store)
    seen: list[tuple] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                seen.append(state(store))
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        load = run_cli("ingest", "--workers", "1", "--store", store.path, *second_load(input_dir))
        _out, err = load.communicate(timeout=120)
        assert load.returncode == 0, err
        time.sleep(0.3)
    finally:
        done.set()
        for thread in readers:
            thread.join()
    after = state(store)

    assert not errors, errors
    assert before != after
    assert after[1][0] == 200 - 20 + 50  # patients
    assert {observed for observed in seen} <= {before, after}
    assert before in seen and after in seen, "the readers did not overlap the load"


def test_a_snapshot_taken_before_a_load_still_reads_its_generation_afterwards(populated, input_dir):
    store = populated
    with store.snapshot() as old:
        before = read_state(old)
        ingest(store, second_load(input_dir), workers=1)
        assert state(store) != before
        assert read_state(old) == before  # its files were not collected under it
    ingest(store, [write_lines(input_dir / "more.ndjson", [patient("late")])], workers=1)
    assert debris(store) == []  # once released, the old generation goes with the next load


def test_a_second_load_on_the_same_store_waits_or_fails_clearly(populated, input_dir):
    store = populated
    with store.writer_lock(), pytest.raises(StoreError, match="another load is running"):
        ingest(store, [write_lines(input_dir / "a.ndjson", [patient("x")])], workers=1)


# --- loads that die half-way ----------------------------------------------------------------------


def big_input(input_dir: Path, patients: int = 200, observations: int = 120_000) -> Path:
    return write_lines(
        input_dir / "big.ndjson", (small_observation(i, patients) for i in range(observations))
    )


def assert_complete(store: Store, before: tuple, observations: int) -> None:
    after = state(store)
    assert after[1:3] == before[1:3]  # patients untouched
    assert after[3][0] == before[3][0] + observations
    assert query(store, "SELECT count(*) FROM observation WHERE id LIKE 'big%'") == [(observations,)]
    assert debris(store) == []


@pytest.mark.slow
def test_a_load_killed_while_it_reads_leaves_the_old_state_and_the_next_load_completes(populated, input_dir):
    store = populated
    before = state(store)
    big = big_input(input_dir)

    load = run_cli("ingest", "--workers", "2", "--store", store.path, big, start_new_session=True)
    deadline = time.monotonic() + 60
    while not any(store.staging.iterdir()) and load.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # into the reading: workers started, staging files begun
    assert load.poll() is None, "the load finished before it could be killed: give it more input"
    os.killpg(load.pid, signal.SIGKILL)  # the load and its worker processes, as a kill of the job would
    load.communicate()

    assert any(store.staging.iterdir()), (
        "the kill left nothing half-written: it came too late to test anything"
    )
    assert state(store) == before

    rerun = run_cli("ingest", "--store", store.path, big)
    _out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert_complete(store, before, 120_000)


CRASH = """
import os, signal, sys
from datenraum.site import store as store_module
from datenraum.site.ingest import ingest

def crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

{patch}
ingest(sys.argv[1], sys.argv[2:], workers=1)
"""

CRASH_POINTS = {
    # every segment file written, no manifest yet
    "before the manifest is written": "store_module.Store.publish = crash",
    # the new manifest written, CURRENT not yet switched to it
    "before CURRENT is switched": textwrap.dedent("""
        write = store_module.write_atomically
        def write_or_crash(path, data):
            if path.name == "CURRENT":
                crash()
            write(path, data)
        store_module.write_atomically = write_or_crash
    """),
}


@pytest.mark.parametrize("moment", CRASH_POINTS)
def test_a_load_that_dies_while_it_commits_leaves_the_old_state_and_the_next_load_completes(
    populated, input_dir, moment
):
    store = populated
    before = state(store)
    big = big_input(input_dir, observations=5000)

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH.format(patch=CRASH_POINTS[moment]), str(store.path), str(big)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert debris(store) != []  # it did die half-way
    assert state(store) == before

    ingest(store, [big], workers=1)
    assert_complete(store, before, 5000)


def test_a_load_killed_while_it_replaces_and_deletes_leaves_the_old_state(populated, input_dir):
    store = populated
    before = state(store)
    paths = second_load(input_dir)
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASH.format(patch=CRASH_POINTS["before CURRENT is switched"]),
            str(store.path),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert state(store) == before

    ingest(store, paths, workers=1)
    expected = Store(input_dir / "reference")
    ingest(expected, [input_dir / "first.ndjson"], workers=1)
    ingest(expected, paths, workers=1)
    assert state(store) == state(expected)
    assert debris(store) == []


def test_debris_of_a_killed_load_never_shadows_the_current_state(populated, input_dir):
    """Leftovers of a dead load (staging, an unpublished manifest, a temporary file) are swept, not read."""
    store = populated
    before = state(store)
    generation = store.current_generation()
    (store.staging / "dead-load").mkdir()
    (store.staging / "dead-load" / "resource.t000001.parquet").write_bytes(b"half a file")
    (store.manifests / f"manifest-{generation + 1:08d}.json").write_bytes(b'{"generation": 99, "segments": [')
    (store.path / ".CURRENT.999.tmp").write_bytes(b"manifest-")
    with contextlib.suppress(FileExistsError):
        (store.segments / "dead-load").mkdir()
    (store.segments / "dead-load" / "resource.parquet").write_bytes(b"")

    assert state(store) == before
    ingest(store, [write_lines(input_dir / "one.ndjson", [patient("one")])], workers=1)
    assert debris(store) == []
    assert state(store)[1][0] == before[1][0] + 1


def test_compaction_leaves_what_readers_see_in_one_segment_and_no_debris(tmp_path):
    store = Store(tmp_path / "store")
    ingest(store, [write_lines(tmp_path / "a.ndjson", [patient("p1"), observation("o1", "Patient/p1")])])
    ingest(store, [write_lines(tmp_path / "b.ndjson", [patient("p2"), observation("o2", "Patient/p2")])])
    before = state(store)
    report = compact(store)
    assert (report.segments_before, state(store)) == (2, before)
    with store.snapshot() as snapshot:
        assert len(snapshot.manifest.segments) == 1
    assert debris(store) == []
