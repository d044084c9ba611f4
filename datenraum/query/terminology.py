"""Code hierarchies of ICD-10-GM, OPS and ATC: a criterion on a parent code matches its descendants.

The three classifications encode their hierarchy in the code itself: an ICD-10-GM subcategory extends
its category (E11 > E11.9 > E11.90), an OPS code extends its parent (5-820 > 5-820.0 > 5-820.00), an ATC
code extends its group (A10 > A10B > A10BA > A10BA02). So "descendant of" is "extends the code", which
works for every code a site has, even one newer than any code list we ship. ICD-10-GM blocks written as
ranges (E10-E14) match every category in the range.

`CodeMatch` states this rule once, as data (a prefix or a category range), so that the SQL compiler
and the reference evaluator read the same rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CodeMatch", "code_match"]

_ICD_RANGE = re.compile(r"([A-Z]\d{2})-([A-Z]\d{2})\Z")


@dataclass(frozen=True)
class CodeMatch:
    """Which codes of one system a term code stands for: equal to `code`, or descendants of it."""

    system: str
    code: str
    hierarchical: bool
    # For ICD-10-GM block ranges: the first and last three-character category, inclusive.
    category_range: tuple[str, str] | None = None

    def matches(self, system: str | None, code: str | None) -> bool:
        if system != self.system or code is None:
            return False
        if self.category_range is not None:
            return self.category_range[0] <= code[:3] <= self.category_range[1]
        # Codes of different categories never share a prefix (ICD categories are three characters, OPS
        # and ATC levels have fixed lengths), so extending the code is being below it.
        return code == self.code or (self.hierarchical and code.startswith(self.code))


def code_match(system: str, code: str, hierarchies: dict[str, str]) -> CodeMatch:
    """How to match `system|code` given the hierarchical systems (system URL -> classification)."""
    classification = hierarchies.get(system)
    if classification == "icd-10-gm":
        found = _ICD_RANGE.match(code)
        if found:
            return CodeMatch(system, code, True, (found.group(1), found.group(2)))
    return CodeMatch(system, code, classification is not None)
