"""Synthetic German identity data with known truth: the same persons at several sites, with typos,
umlaut spellings, moves and name changes. Frequencies are rough shares of the most common German
surnames, given names and cities (public rankings), enough to make frequency attacks realistic."""

from __future__ import annotations

import random
from collections.abc import Sequence

# The most frequent German surnames, most frequent first (Müller ≈ 0.3 % of the population).
SURNAMES = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Schmitz",
    "Krause",
    "Meier",
    "Lehmann",
    "Schmid",
    "Schulze",
    "Maier",
    "Köhler",
    "Herrmann",
    "König",
    "Walter",
    "Mayer",
    "Huber",
    "Kaiser",
    "Fuchs",
    "Peters",
    "Lang",
    "Scholz",
    "Möller",
    "Weiß",
    "Jung",
    "Hahn",
    "Schubert",
    "Vogel",
    "Friedrich",
    "Keller",
    "Günther",
    "Frank",
    "Berger",
    "Winkler",
    "Roth",
    "Beck",
    "Lorenz",
    "Baumann",
    "Franke",
    "Albrecht",
    "Schuster",
    "Simon",
    "Ludwig",
    "Böhm",
    "Winter",
    "Kraus",
    "Martin",
    "Schumacher",
    "Krämer",
    "Vogt",
    "Stein",
    "Jäger",
    "Otto",
    "Sommer",
    "Groß",
    "Seidel",
    "Heinrich",
    "Brandt",
    "Haas",
    "Schreiber",
    "Graf",
    "Schulte",
    "Dietrich",
    "Ziegler",
    "Kuhn",
    "Kühn",
    "Pohl",
    "Engel",
    "Horn",
    "Busch",
    "Bergmann",
    "Thomas",
    "Voigt",
    "Sauer",
    "Arnold",
    "Wolff",
    "Pfeiffer",
]
GIVEN_F = [
    "Maria",
    "Ursula",
    "Monika",
    "Petra",
    "Elisabeth",
    "Sabine",
    "Renate",
    "Helga",
    "Karin",
    "Brigitte",
    "Ingrid",
    "Erika",
    "Andrea",
    "Gisela",
    "Claudia",
    "Susanne",
    "Gabriele",
    "Christa",
    "Christine",
    "Hildegard",
    "Anna",
    "Emma",
    "Sophie",
    "Lea",
    "Hannah",
    "Jürgen",
][:-1]
GIVEN_M = [
    "Peter",
    "Wolfgang",
    "Michael",
    "Klaus",
    "Thomas",
    "Jürgen",
    "Hans",
    "Günter",
    "Werner",
    "Manfred",
    "Andreas",
    "Stefan",
    "Frank",
    "Uwe",
    "Bernd",
    "Christian",
    "Horst",
    "Dieter",
    "Ralf",
    "Helmut",
    "Lukas",
    "Felix",
    "Jonas",
    "Maximilian",
    "Paul",
]
CITIES = (
    ("Berlin", "10115"),
    ("Hamburg", "20095"),
    ("München", "80331"),
    ("Köln", "50667"),
    ("Frankfurt am Main", "60311"),
    ("Stuttgart", "70173"),
    ("Düsseldorf", "40213"),
    ("Leipzig", "04109"),
    ("Dortmund", "44135"),
    ("Essen", "45127"),
    ("Bremen", "28195"),
    ("Dresden", "01067"),
    ("Hannover", "30159"),
    ("Nürnberg", "90402"),
    ("Duisburg", "47051"),
    ("Bochum", "44787"),
    ("Wuppertal", "42103"),
    ("Bielefeld", "33602"),
    ("Bonn", "53111"),
    ("Münster", "48143"),
    ("Göttingen", "37073"),
    ("Würzburg", "97070"),
    ("Lübeck", "23552"),
    ("Gießen", "35390"),
)
_UMLAUT = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}


def _zipf(rng: random.Random, items: Sequence, s: float = 1.0):
    weights = [1 / (i + 1) ** s for i in range(len(items))]
    return rng.choices(items, weights)[0]


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.random()
    if kind < 0.4:
        return text[:i] + rng.choice("aeinrstlmou") + text[i + 1 :]
    if kind < 0.7:
        return text[:i] + text[i + 1 :]
    return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]


def person(rng: random.Random, pid: int) -> dict[str, str]:
    female = rng.random() < 0.5
    city, plz = _zipf(rng, CITIES, 0.7)
    return {
        "patient_id": str(pid),
        "given_name": _zipf(rng, GIVEN_F if female else GIVEN_M, 0.6),
        "family_name": _zipf(rng, SURNAMES, 0.8),
        "birth_date": f"{rng.randint(1935, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "sex": "female" if female else "male",
        "postal_code": plz[:3] + f"{rng.randint(0, 99):02d}",
        "city": city,
    }


def corrupt(rng: random.Random, rec: dict[str, str], rate: float) -> dict[str, str]:
    """One site's copy of a person: a typo in a name, an umlaut spelt out, a move, a married name, a
    transposed birth day, each with a probability scaled by `rate`."""
    out = dict(rec)
    for field in ("given_name", "family_name"):
        if rng.random() < rate:
            out[field] = _typo(rng, out[field])
        if rng.random() < rate and any(c in out[field] for c in _UMLAUT):
            out[field] = "".join(_UMLAUT.get(c, c) for c in out[field])
    if rng.random() < rate / 2:
        out["city"], plz = _zipf(rng, CITIES, 0.7)
        out["postal_code"] = plz[:3] + f"{rng.randint(0, 99):02d}"
    if out["sex"] == "female" and rng.random() < rate / 2:
        out["family_name"] = _zipf(rng, SURNAMES, 0.8) + "-" + out["family_name"]
    if rng.random() < rate / 2:
        y, m, d = out["birth_date"].split("-")
        out["birth_date"] = (
            f"{y}-{m}-{d[::-1]}"
            if 1 <= int(d[::-1]) <= 28
            else f"{y}-{d}-{m}"
            if int(d) <= 12
            else out["birth_date"]
        )
    if rng.random() < rate / 4:
        out["postal_code"] = ""
    return out


def sites(
    n_persons: int, n_sites: int, *, presence: float = 0.5, rate: float = 0.1, seed: int = 1
) -> tuple[list[list[dict[str, str]]], int]:
    """Per site a list of records (`patient_id` = the true person); each person is at each site with
    probability `presence` (at least one site). Returns the sites and the true number of distinct persons."""
    rng = random.Random(seed)
    out: list[list[dict[str, str]]] = [[] for _ in range(n_sites)]
    for pid in range(n_persons):
        rec = person(rng, pid)
        at = [s for s in range(n_sites) if rng.random() < presence] or [rng.randrange(n_sites)]
        for s in at:
            out[s].append(corrupt(rng, rec, rate))
    for records in out:
        rng.shuffle(records)
    return out, n_persons
