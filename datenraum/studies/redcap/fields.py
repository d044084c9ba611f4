"""What both directions of the REDCap dictionary conversion share: the 18 columns, how REDCap's field
types and text validations correspond to Questionnaire item types, and the extensions we define.

Our extensions (documented in the README, "REDCap dictionaries"):
- `redcap-field` on an item: REDCap's own details that FHIR has no element for, as sub-extensions
  (valueString each): `fieldType`, `validation` (e.g. `date_dmy`: the date order is presentation only),
  `alignment`, `questionNumber`, `matrixGroup`, `matrixRanking`, `sliderLabels`, and the source texts
  `branchingLogic`, `calculation`, `annotation`. The export writes a source text back only while it still
  converts to what the item now says (else the form was edited, and the export writes the item's own
  meaning), so the round trip is exact without ever exporting stale logic.
- `study-item-copied-from` (valueCanonical: the other form's url): a hidden item holding the value of a
  field of another form that a calculation or branching logic of this form reads (REDCap evaluates
  across forms of one record and event; a QuestionnaireResponse answers one form). Whoever builds the
  response (record import, the site EDC) fills it from the same participant's and event's other form.
- `study-identifier-item` (valueBoolean, `datenraum.studies.questionnaire.EXT_IDENTIFIER`): REDCap's
  "Identifier? y".
"""

from __future__ import annotations

import re

from datenraum.studies.redcap.logic import (
    BOOLEAN,
    CHECKBOX,
    CHOICE,
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    STRING,
    TIME,
)

COLUMNS = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)
(
    FIELD,
    FORM,
    SECTION,
    TYPE,
    LABEL,
    CHOICES,
    NOTE,
    VALIDATION,
    MINIMUM,
    MAXIMUM,
    IDENTIFIER,
    BRANCHING,
    REQUIRED,
    ALIGNMENT,
    QUESTION_NUMBER,
    MATRIX_GROUP,
    MATRIX_RANKING,
    ANNOTATION,
) = range(18)

EXT_REDCAP_FIELD = "https://datenraum.de/fhir/StructureDefinition/redcap-field"
EXT_ENTRY_FORMAT = "http://hl7.org/fhir/StructureDefinition/entryFormat"
EXT_MAX_DECIMAL_PLACES = "http://hl7.org/fhir/StructureDefinition/maxDecimalPlaces"
ITEM_CONTROL_SYSTEM = "http://hl7.org/fhir/questionnaire-item-control"
DEFAULT_BASE_URL = "https://datenraum.de/fhir/Questionnaire/redcap/"
SECTION_SUFFIX = "-section"  # the display item of a section header: "<field>-section" (REDCap has no "-")

FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
FORM_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

# Text validations: the item type, and a pattern where the type itself does not say it.
DATE_VALIDATIONS = ("date_dmy", "date_mdy", "date_ymd")
DATETIME_VALIDATIONS = (
    *("datetime_dmy", "datetime_mdy", "datetime_ymd"),
    *("datetime_seconds_dmy", "datetime_seconds_mdy", "datetime_seconds_ymd"),
)
NUMBER_VALIDATIONS = (
    *("number", "number_1dp", "number_2dp", "number_3dp", "number_4dp"),
    *("number_comma_decimal", "number_1dp_comma_decimal", "number_2dp_comma_decimal"),
    *("number_3dp_comma_decimal", "number_4dp_comma_decimal"),
)
PATTERNS = {
    "email": r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$",
    "phone": r"^(\([0-9]{3}\) ?|[0-9]{3}-?)[0-9]{3}-?[0-9]{4}$",
    "zipcode": r"^[0-9]{5}(-[0-9]{4})?$",
    "postalcode_germany": r"^[0-9]{5}$",
    "alpha_only": r"^[A-Za-z]+$",
    "mrn_10d": r"^[0-9]{10}$",
    "time_mm_ss": r"^[0-5][0-9]:[0-5][0-9]$",
    "ssn": r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$",
}
# REDCap types whose choices column holds "code, label | ..." options.
CHOICE_TYPES = ("dropdown", "radio", "checkbox")
ITEM_CONTROLS = {
    "dropdown": "drop-down",
    "radio": "radio-button",
    "checkbox": "check-box",
    "slider": "slider",
}


def decimal_places(validation: str) -> int | None:
    match = re.match(r"number_(\d)dp", validation)
    return int(match.group(1)) if match else None


def logic_kind(item_type: str, repeats: bool) -> str:
    """The kind a logic expression sees for a field of this item type (`datenraum.studies.redcap.logic`)."""
    if item_type in ("choice", "open-choice"):
        return CHECKBOX if repeats else CHOICE
    return {
        "boolean": BOOLEAN,
        "integer": INTEGER,
        "decimal": DECIMAL,
        "date": DATE,
        "dateTime": DATETIME,
        "time": TIME,
    }.get(item_type, STRING)
