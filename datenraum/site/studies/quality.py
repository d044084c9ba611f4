"""The data-quality rules at the site (`datenraum.studies.quality`), on save and over the whole study.

On every save the rules that judge one form on its own run on it, and their findings are stored with
the instance: B (blank required), C (type, format), D (range), F (hidden with a value), G (choice), H
(calculation). A saved draft keeps its blanks as findings; the server's check has already refused what a
form must not hold. Two rules need more than one form: A (every blank optional value) would flag most
drafts, E (outliers) needs all values of an item. Both run, with the others, in the study's full run the
data-quality page shows: all rules over all the site's instances of each form.
"""

from __future__ import annotations

from collections import defaultdict

from datenraum.protocol.studies import StudyDefinition
from datenraum.site.studies.entry import questionnaire_of, visit_of
from datenraum.site.studies.records import FormInstance, Records
from datenraum.studies.collection import FormEntry
from datenraum.studies.quality import DEFAULT_RULES, Finding, run_rules
from datenraum.studies.questionnaire import Questionnaire

__all__ = ["SAVE_RULES", "findings_on_save", "study_findings"]

SAVE_RULES: tuple[str, ...] = ("B", "C", "D", "F", "G", "H")


def findings_on_save(questionnaire: Questionnaire, entry: FormEntry) -> list[Finding]:
    return run_rules(questionnaire, [entry], defaults=SAVE_RULES)


def study_findings(definition: StudyDefinition, records: Records) -> list[tuple[Finding, FormInstance]]:
    """All rules A-H over every saved instance of the study at this site, per form version."""
    by_form: dict[str, dict[tuple[str, str, int | None], FormInstance]] = defaultdict(dict)
    for participant in records.participants(definition.study_id):
        for instance in records.instances(definition.study_id, participant.pseudonym):
            visit = visit_of(definition, participant, instance.visit)
            url = instance.form.split("|")[0]
            repeating = any(f.repeating for f in visit.forms if f.url == url)
            key = (instance.pseudonym, instance.visit, instance.instance if repeating else None)
            by_form[instance.form][key] = instance
    found = []
    for canonical, instances in sorted(by_form.items()):
        entries = [FormEntry(*key, instance.response) for key, instance in instances.items()]
        questionnaire = questionnaire_of(definition.form(canonical))
        for finding in run_rules(questionnaire, entries, defaults=tuple(DEFAULT_RULES)):
            found.append((finding, instances[(finding.record, finding.event, finding.instance)]))
    return found
