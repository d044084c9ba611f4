"""The study data's tables in the site store: two site views the EDC registers (`datenraum.site.views`).

- `site_study_subject`: one row per ResearchSubject: pseudonym, site patient (`patient_id`), study, arm,
  consent. The store's patient compartment reads `subject`/`patient`, and a ResearchSubject names its
  patient in `individual`, so this view is what joins a participant's study data to their routine data;
- `site_study_response`: one row per QuestionnaireResponse, the EDC's and any other (the MII PRO module's
  PHQ-9 or PROMIS responses loaded with `datenraum ingest`): patient, pseudonym (for the EDC's), the
  form's canonical `url|version`, status, authored.

Site SQL then joins study and routine data at the site, e.g.

    SELECT s.pseudonym, c.code FROM site_study_subject s JOIN condition c USING (patient_id)

Registering is idempotent (the same view again changes nothing) and every later load keeps the tables
up to date.
"""

from __future__ import annotations

from pathlib import Path

from datenraum.site.store import Store
from datenraum.site.views import add_views

__all__ = ["VIEW_FILES", "register_study_views"]

VIEW_FILES: tuple[Path, ...] = tuple(
    Path(__file__).with_name("views") / name for name in ("study_subject.json", "study_response.json")
)


def register_study_views(store: Store) -> None:
    add_views(store, list(VIEW_FILES))
