"""Portal benchmark: how fast the pages and the criteria search answer a person, over real HTTP.

A hub (`datenraum hub serve`, SQLite) runs as a process on this machine; a client signs in like a browser
(session cookie) and measures, per request kind, the time from sending to the complete response:
the criteria search of the query builder for the inputs people type (a few letters, words, codes,
several words, misses), the builder page, the saved-queries page, and sign-in (argon2 on purpose slow).
Target from the portal issue: criteria search under 100 ms.

    .venv/bin/python bench/bench_portal.py
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from datenraum.devtools.federation import LocalFederation

SEARCHES = [
    "d", "di", "dia", "diab", "diabetes", "Diabetes Typ 2", "typ 2 diab", "E11", "e11.9", "E1", "C00-C97",
    "Krebs", "cancer", "HbA1c", "4548-4", "hba", "Kreatinin", "creatinine", "Hämoglobin", "haemoglobin",
    "Geschlecht", "weiblich", "female", "Alter", "age", "Einwilligung", "consent", "Blut", "Serum",
    "Metformin", "A10BA02", "5-820", "Hüft", "Herzinsuffizienz", "I50", "J44", "U07.1", "COVID", "xyzzy",
    "Neubildung bösartig Brust", "Probe", "Vollblut", "Plasma", "Insulin", "Statin", "ACE", "Dialyse",
]  # fmt: skip
PASSWORD = "bench-portal-password"
EMAIL = "bench@datenraum.example"


def timed(client: httpx.Client, method: str, path: str, **kwargs) -> float:
    started = time.perf_counter()
    response = client.request(method, path, **kwargs)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds


def sign_in(client: httpx.Client) -> float:
    client.cookies.pop("dr_session", None)  # signed in already, the sign-in page would send us on
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    started = time.perf_counter()
    response = client.post("/login", data={"csrf": csrf, "email": EMAIL, "password": PASSWORD, "next": "/"})
    seconds = time.perf_counter() - started
    if response.status_code != 303:
        raise RuntimeError(f"sign-in failed ({response.status_code})")
    return seconds


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"| {name} | {len(samples)} | {statistics.median(samples) * 1000:.1f} | {p95 * 1000:.1f} | "
        f"{max(samples) * 1000:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="times each search is asked")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-portal-") as folder:
        workdir = Path(folder)
        with LocalFederation(workdir) as federation:
            federation.register(users=[(EMAIL, "researcher")], passwords={EMAIL: PASSWORD})
            federation.start_hub()
            with httpx.Client(base_url=federation.url, timeout=30, follow_redirects=False) as client:
                logins = [sign_in(client) for _ in range(5)]
                searches = {"de": [], "en": []}
                for language in searches:
                    for text in SEARCHES:  # the first round warms the index; it is not measured
                        timed(client, "GET", "/api/v1/concepts", params={"q": text, "lang": language})
                    for _ in range(args.rounds):
                        for text in SEARCHES:
                            searches[language].append(
                                timed(client, "GET", "/api/v1/concepts", params={"q": text, "lang": language})
                            )
                pages = {
                    path: [timed(client, "GET", path) for _ in range(20)]
                    for path in ("/queries/new", "/queries")
                }
    print(f"\nPortal over HTTP on 127.0.0.1 (load average {os.getloadavg()[0]:.1f})\n")
    print("| request | n | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    print(row("criteria search (German)", searches["de"]))
    print(row("criteria search (English)", searches["en"]))
    for path, samples in pages.items():
        print(row(f"page {path}", samples))
    print(row("sign-in (argon2id)", logins))


if __name__ == "__main__":
    main()
