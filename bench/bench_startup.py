"""Start-up cost of the commands: this tree beside an earlier revision, in CPU seconds.

    .venv/bin/python bench/bench_startup.py                 # against 3d04054 (before the architecture step)
    .venv/bin/python bench/bench_startup.py --against REV --runs 15

The earlier revision is checked out into a temporary git worktree and run from there with the same
interpreter (PYTHONPATH puts it before the installed package), so both columns differ only in our code.
Each command runs `--runs` times, alternating between the two trees so that the machine's noise hits both
alike; the table gives the median CPU time (user + system) of one run, the ratio, and whether the site's
stack (DuckDB, pyarrow, msgspec) was loaded.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE_STACK = ("duckdb", "pyarrow", "msgspec")

# What a person or a service manager runs; each ends by printing the modules it loaded.
COMMANDS = {
    "datenraum --help": "from datenraum.cli import main\nmain(['--help'])",
    "datenraum hub --help": "from datenraum.cli import main\nmain(['hub', '--help'])",
    "datenraum hub serve (imports)": "import datenraum.cli, datenraum.hub.app",
}
REPORT = "\nimport atexit, sys\natexit.register(lambda: print('MODULES', ' '.join(sys.modules)))\n"


def _run(tree: Path, code: str) -> tuple[float, set[str]]:
    """CPU seconds of one run of `code` with our package taken from `tree`, and the modules it loaded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", REPORT + code],
        cwd=tree,  # `-c` puts the working folder first on sys.path
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    modules = next(
        (line.split()[1:] for line in done.stdout.splitlines() if line.startswith("MODULES")), None
    )
    if modules is None:
        raise SystemExit(f"{tree}: {code!r} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, set(modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="3d04054", help="the earlier revision (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        earlier = Path(folder) / "earlier"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(earlier), args.against],
            check=True,
        )
        try:
            trees = {args.against: earlier, "this tree": ROOT}
            print(
                f"{'command':<32}{args.against + ' CPU s':>16}{'this tree CPU s':>18}{'ratio':>8}  site stack loaded"
            )
            for name, code in COMMANDS.items():
                times: dict[str, list[float]] = {label: [] for label in trees}
                stack: dict[str, str] = {}
                for _ in range(args.runs):
                    for label, tree in trees.items():
                        cpu, modules = _run(tree, code)
                        times[label].append(cpu)
                        stack[label] = ", ".join(m for m in SITE_STACK if m in modules) or "none"
                old, new = (statistics.median(times[label]) for label in trees)
                print(
                    f"{name:<32}{old:>16.3f}{new:>18.3f}{new / old:>8.2f}  "
                    f"{stack[args.against]} -> {stack['this tree']}"
                )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(earlier)], check=True
            )


if __name__ == "__main__":
    main()
