"""The layers of the package: which of our packages may import which, as the README's table says.

Every `import` of every module counts, at module level or inside a function, under `TYPE_CHECKING` or not,
because a lazy import is still a dependency (it only moves the failure to run time). The table in the
README ("What may import what") is parsed and must equal `MAY_IMPORT`, so that the two cannot drift apart.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "datenraum"

# Our top-level packages and the others of ours each may import. `cli` (and `__main__`) are the thin
# layer over all of them; `devtools` (demo, local federation, throwaway PostgreSQL) is not product, so no
# product package may import it.
EVERYTHING = frozenset({"everything"})  # every package of ours
MAY_IMPORT: dict[str, frozenset[str]] = {
    "fhir": frozenset(),
    "protocol": frozenset(),
    "query": frozenset({"fhir"}),
    "privacy": frozenset({"query", "protocol"}),
    "analysis": frozenset({"query", "privacy", "protocol"}),
    "synth": frozenset({"fhir"}),
    "indicators": frozenset({"privacy"}),
    "extraction": frozenset({"fhir", "query", "studies"}),
    "studies": frozenset({"fhir", "query"}),
    "deidentify": frozenset(),
    "linkage": frozenset(),
    "linkunit": frozenset({"linkage", "privacy"}),
    "site": frozenset(
        {
            "fhir",
            "query",
            "privacy",
            "protocol",
            "extraction",
            "analysis",
            "deidentify",
            "indicators",
            "linkage",
            "studies",
        }
    ),
    "catalogue": frozenset({"query", "privacy"}),
    "hub": frozenset({"query", "privacy", "protocol", "analysis", "catalogue", "indicators", "studies"}),
    # The slow agent of the fault tests is `datenraum site serve` with a slower counter: it reuses the CLI's.
    "devtools": EVERYTHING,
    "cli": EVERYTHING,
    "__main__": frozenset({"cli"}),
}

# Third-party modules of the site's stack that the hub's process must not load: `datenraum hub ...` and
# `datenraum --help` start without them.
SITE_STACK = ("duckdb", "pyarrow", "msgspec")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import of `path` (the module `module`), relative imports
    resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "datenraum" or len(parts) < 2:
        return None
    return parts[1]


def forbidden_imports(package: Path = PACKAGE) -> list[str]:
    """Each import that breaks `MAY_IMPORT`, as `file:line: a imports b`."""
    broken = []
    root = package.parent
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path, root)
        importer = _layer(module)
        if importer is None:
            continue
        allowed = MAY_IMPORT.get(importer)
        if allowed is EVERYTHING:
            continue
        for line, imported in _imports(path, module):
            target = _layer(imported)
            if target is None or target == importer:
                continue
            if allowed is None or target not in allowed:
                rule = ", ".join(sorted(allowed or ())) or "nothing of ours"
                where = path.relative_to(root)
                broken.append(
                    f"{where}:{line}: {importer} imports {imported} ({importer} may import only {rule})"
                )
    return broken


def test_no_package_imports_a_layer_it_may_not() -> None:
    assert forbidden_imports() == []


def test_every_top_level_package_has_a_rule() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(MAY_IMPORT)


def test_a_planted_forbidden_import_is_found(tmp_path: Path) -> None:
    planted = tmp_path / "datenraum" / "hub"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("")
    (planted / "leak.py").write_text("def f():\n    from datenraum.site.store import Store\n")
    assert forbidden_imports(tmp_path / "datenraum") == [
        "datenraum/hub/leak.py:2: hub imports datenraum.site.store "
        "(hub may import only analysis, catalogue, indicators, privacy, protocol, query, studies)"
    ]


def _readme_table() -> dict[str, frozenset[str]]:
    """The README's "What may import what" table: `| package | may import |` rows."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### What may import what", 1)[1].split("\n#", 1)[0]
    table = {}
    for row in section.splitlines():
        cells = [c.strip().strip("`") for c in row.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("package", "") or set(cells[0]) <= {"-"}:
            continue
        names = cells[1].replace("`", "").split(",")
        table[cells[0]] = frozenset(n.strip() for n in names if n.strip() not in ("", "–", "nothing"))
    return table


def test_the_readme_states_the_same_rules() -> None:
    assert _readme_table() == MAY_IMPORT


@pytest.mark.parametrize("entry", ["datenraum.cli", "datenraum.hub.app"])
def test_the_hub_starts_without_the_site_stack(entry: str) -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {entry}; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [m for m in SITE_STACK if m in loaded] == []
