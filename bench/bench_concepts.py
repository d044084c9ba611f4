"""Criteria search benchmark: search latency on the shipped catalogue and on one scaled to ~100,000 concepts.

The query builder searches on every keystroke, so a search must answer well under 100 ms for any input.
This runs a few hundred realistic inputs (1-3 letters, words, codes, several words, misses, and inputs of
the longest length allowed) against

- the shipped catalogue (`load_catalogue()`), and
- a catalogue scaled up to ~100,000 concepts (each shipped concept copied with a new code and an invented
  word added to its displays, so that the vocabulary grows as in a full official catalogue),

each on a freshly built index, once cold (every prefix seen for the first time) and once warm (the same
inputs again), and prints p50, p95 and max per kind of input, with the CPU seconds of all searches and the
load average beside them (the machine is shared, CPU time is the steadier number).

    .venv/bin/python bench/bench_concepts.py
    .venv/bin/python bench/bench_concepts.py --concepts 200000
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import time

from datenraum.query.catalogue.load import Concept, load_catalogue
from datenraum.query.catalogue.search import MAX_SEARCH_LENGTH, ConceptIndex

SYLLABLES = (
    "ka",
    "lo",
    "mer",
    "ti",
    "sa",
    "pho",
    "ne",
    "ur",
    "vi",
    "dex",
    "an",
    "tro",
    "gal",
    "zen",
    "bu",
    "ri",
)


def scaled(concepts: tuple[Concept, ...], size: int, rng: random.Random) -> list[Concept]:
    """`size` concepts: the shipped ones and copies with new codes and invented words."""
    result = list(concepts)
    while len(result) < size:
        base = concepts[len(result) % len(concepts)]
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        code = f"{base.term.code}x{len(result)}"
        result.append(
            dataclasses.replace(
                base,
                term=dataclasses.replace(base.term, code=code),
                display_de=f"{base.display_de} {word}",
                display_en=f"{base.display_en} {word}",
                weight=rng.randint(1, 3),
            )
        )
    return result


def inputs(concepts: tuple[Concept, ...], rng: random.Random) -> dict[str, list[str]]:
    """What people type, by kind: drawn from the catalogue's own words and codes, plus fixed cases."""
    words = sorted({w for c in concepts for w in c.display_de.split() if len(w) > 3 and w.isalpha()})
    codes = [c.term.code for c in concepts]
    picked = rng.sample(words, 60)
    return {
        "1-3 letters": [*(w[: rng.randint(1, 3)] for w in picked), "a", "d", "e", "s", "hb", "dia"],
        "words": [
            *picked[:40],
            "Diabetes",
            "HbA1c",
            "Krebs",
            "cancer",
            "Frau",
            "Alter",
            "Metformin",
            "Hämoglobin",
        ],
        "codes": [
            *rng.sample(codes, 40),
            "E11",
            "e11",
            "E11.9",
            "4548-4",
            "C00-C97",
            "5-820",
            "A10BA02",
            "c5",
        ],
        "several words": [
            *(" ".join(rng.sample(words, rng.randint(2, 4))) for _ in range(40)),
            "typ 2 diab",
            "bösartige neubildung brust",
            "hba1c blut",
            "diabetes mellitus typ 2",
        ],
        "misses": [
            "xqzjw",
            "qqq zzz",
            "zzzzzzzz",
            "123456789",
            "diabetes xqz",
            *(f"q{i}xz" for i in range(35)),
        ],
        "200 characters": [
            ("diabetes mellitus " * 12)[:MAX_SEARCH_LENGTH],
            ("a b c d e f g h i j k l m n o p q r s t u v w x y z " * 4)[:MAX_SEARCH_LENGTH],
            " ".join(rng.sample(words, 40))[:MAX_SEARCH_LENGTH],
            ("\x00\x01 " * 70)[:MAX_SEARCH_LENGTH],
            ("e11." * 50)[:MAX_SEARCH_LENGTH],
        ],
    }


def timed(index: ConceptIndex, texts: list[str]) -> tuple[list[float], float]:
    """Wall milliseconds of each search, and the CPU seconds of them all."""
    wall = []
    cpu_start = time.process_time()
    for text in texts:
        start = time.perf_counter()
        index.search(text)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, time.process_time() - cpu_start


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", type=int, default=100_000, help="size of the scaled catalogue")
    parser.add_argument("--seed", type=int, default=5)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    shipped = load_catalogue()
    cases = inputs(shipped, rng)
    catalogues = {"shipped": list(shipped), "scaled": scaled(shipped, options.concepts, rng)}

    results: dict[tuple[str, str], dict[str, tuple[list[float], float]]] = {}
    builds = []
    for name, concepts in catalogues.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        index = ConceptIndex(concepts)
        builds.append(
            f"{name} {len(index)} concepts: {time.perf_counter() - start:.2f} s ({time.process_time() - cpu_start:.2f} CPU s)"
        )
        for run in ("cold", "warm"):
            for kind, texts in cases.items():
                results.setdefault((run, kind), {})[name] = timed(index, texts)
            every = [results[(run, kind)][name] for kind in cases]
            results.setdefault((run, "all"), {})[name] = (
                [ms for wall, _ in every for ms in wall],
                sum(cpu for _, cpu in every),
            )

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"criteria search: {sum(len(t) for t in cases.values())} inputs per run, load average {load}")
    print(f"index build: {'; '.join(builds)}")
    print("ms per search (p50 / p95 / max) and CPU s of all searches of the row, per catalogue")
    columns = "".join(f" | {name + ' p50':>12} {'p95':>7} {'max':>7} {'CPU s':>6}" for name in catalogues)
    header = f"{'run':<5} {'input':<15} {'n':>4}{columns}"
    print(header)
    print("-" * len(header))
    for (run, kind), by_catalogue in results.items():
        cells = "".join(
            f" | {statistics.median(wall):>12.3f} {percentile(wall, 0.95):>7.3f} {max(wall):>7.3f} {cpu:>6.3f}"
            for wall, cpu in (by_catalogue[name] for name in catalogues)
        )
        print(f"{run:<5} {kind:<15} {len(next(iter(by_catalogue.values()))[0]):>4}{cells}")
    worst = max(max(wall) for by_catalogue in results.values() for wall, _ in by_catalogue.values())
    print(
        f"slowest search: {worst:.1f} ms (budget 100 ms); load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
