"""The MII PRO module's test bundle (PHQ-9 and PROMIS depression responses) loads into a site store like
any data, and its QuestionnaireResponses appear in the study data table with their patient and the
canonical of the Questionnaire they answer, ready to be joined with the patient's routine data."""

from __future__ import annotations

from pathlib import Path

from datenraum.site.ingest import ingest
from datenraum.site.store import Store
from datenraum.site.studies.study_views import register_study_views

PRO = "https://www.medizininformatik-initiative.de/fhir/ext/modul-pro/Questionnaire/"


def test_the_pro_bundles_responses_link_to_their_questionnaire_canonicals(
    mii_kds_testdata: Path, tmp_path: Path
) -> None:
    (bundle,) = mii_kds_testdata.rglob("Bundle-mii-exa-test-data-bundle-pro-1.json")
    store = Store(tmp_path / "store")
    report = ingest(store, [bundle], workers=1)
    assert not report.rejects
    register_study_views(store)  # after the load: the views are built from what is stored, too
    with store.snapshot() as snapshot:
        rows = snapshot.connection.execute(
            "SELECT r.id, r.patient_id, split_part(r.questionnaire, '|', 1) AS form, r.status, p.gender "
            "FROM site_study_response r JOIN patient p ON p.id = r.patient_id ORDER BY r.id"
        ).fetchall()
    patient = "mii-exa-test-data-pro-patient-1"
    assert [(row[1], row[2], row[3]) for row in rows] == [
        (patient, PRO + "mii-qst-pro-phq-9", "completed"),
        (patient, PRO + "mii-qst-pro-promis-depression-sf4a", "completed"),
    ]
