"""Prospective studies (electronic data capture): a pure library shared by the hub and the site EDC.

- `questionnaire.py`: FHIR R4 Questionnaires (SDC subset) as frozen values; `parse_questionnaire` refuses
  a bad form with `FormError(path, message)`.
- `responses.py`: `check_response`, the server's check of a submitted QuestionnaireResponse (enablement and
  calculations re-evaluated, every answer checked), as `ResponseProblem(link_id, path, message)`s.
- `fhirpath.py`: strict compilation of FHIRPath (fhirpathpy) and the one answer convention of all forms.
- `lforms.py`: the vendored form renderer (npm lforms) as package data, for both servers' pages.
"""
