"""REDCap interoperability: data dictionaries <-> Questionnaires, flat record exports <-> responses.

- `csvtext.py`: REDCap's CSV read strictly (`RedcapError` names file, line and column).
- `logic.py`: REDCap branching logic and calculations -> enableWhen or FHIRPath.
- `fields.py`: the 18 columns, type and validation correspondences, our extensions.
- `dictionary.py`: `dictionary_to_questionnaires` (one Questionnaire per form, a report per field).
- `export.py`: `questionnaires_to_dictionary`, the way back.
- `records.py`: flat records <-> QuestionnaireResponses (events, repeat instances, form status).
"""

from datenraum.studies.redcap.csvtext import RedcapError
from datenraum.studies.redcap.dictionary import (
    DictionaryConversion,
    FieldReport,
    dictionary_to_questionnaires,
)
from datenraum.studies.redcap.export import DictionaryExport, questionnaires_to_dictionary
from datenraum.studies.redcap.records import RecordImport, records_to_responses, responses_to_records

__all__ = [
    "DictionaryConversion",
    "DictionaryExport",
    "FieldReport",
    "RecordImport",
    "RedcapError",
    "dictionary_to_questionnaires",
    "questionnaires_to_dictionary",
    "records_to_responses",
    "responses_to_records",
]
