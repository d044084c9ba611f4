"""Prospective studies (electronic data capture): a pure library shared by the hub and the site EDC
(no store, no web).

- `questionnaire.py`: FHIR R4 Questionnaires (SDC subset) as frozen values; `parse_questionnaire` refuses
  a bad form with `FormError(path, message)`.
- `responses.py`: `check_response`, the server's check of a submitted QuestionnaireResponse (enablement and
  calculations re-evaluated, every answer checked), as `ResponseProblem(link_id, path, message)`s.
- `fhirpath.py`: strict compilation of FHIRPath (fhirpathpy) and the one answer convention of all forms.
- `lforms.py`: the vendored form renderer (npm lforms) as package data, for both servers' pages.
- `randomisation`: permuted blocks stratified by site and up to three factors, concealed and
  reproducible from the statistician's seed.
- `pseudonyms`: gPAS-like study pseudonym domains per study and site, keyed generation, check characters.
- `consent`: consent records and states for the MII broad-consent policies; the one `is_consented`.
- `quality`: data-quality rules A-H (REDCap's defaults) and custom FHIRPath rules over responses.
- `exports`: the statistician's tables per form: CSV with a data dictionary, SPSS, Stata, SAS, R.
"""
