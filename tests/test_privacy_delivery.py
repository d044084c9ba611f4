"""What a site tells the hub about an extraction or a data delivery: counts of the rule's keys only
(`datenraum.privacy.delivery`); whatever else the site's reports hold stays at the site."""

from __future__ import annotations

from datenraum.privacy.delivery import JOB_SUMMARY_KEYS, MAX_TYPES, delivery_counts, extraction_counts
from datenraum.protocol.messages import TaskResult, TaskState


def test_only_the_job_summarys_counts_go_to_the_hub() -> None:
    job_summary = {
        "Job-ID": "j-1",
        "Num-Cohort-Patients": 40,
        "Num-Final-Patients": 37,
        "Patient-Exclusions": {"consent": 3},
        "Resource-Inclusions": {"Observation": 812},
        "Excluded-Patient-Ids": ["p-17", "p-22", "p-31"],
        "Output-Folder": "/data/extraction/project-9/j-1",
    }
    counts = extraction_counts(job_summary)
    assert set(counts) == set(JOB_SUMMARY_KEYS) - {"Resource-Exclusions"}
    assert "p-17" not in str(counts) and "/data" not in str(counts)
    # and what remains is what the protocol carries: counts and names only
    TaskResult("t-1", TaskState.ANSWERED, summary=counts).to_json()


def test_a_delivery_tells_resources_per_type_the_gate_and_the_size_and_nothing_else() -> None:
    report = {
        "resourcesOut": {f"Type{n}": n for n in range(MAX_TYPES + 10)},
        "droppedNoModule": {"Provenance": 4},
        "leakGate": {"verdict": "pass", "findingsTotal": 0, "findings": [{"path": "Patient.name"}]},
        "pseudonyms": {"p-17": "PSN-91A"},
        "profile": "/etc/datenraum/fts",
    }
    counts = delivery_counts(report, 4096)
    assert counts == {
        "Deidentified-Resources": {f"Type{n}": n for n in range(MAX_TYPES)},
        "Dropped-Resources": {"Provenance": 4},
        "Leak-Gate-Findings": 0,
        "Package-Bytes": 4096,
    }
    TaskResult("t-1", TaskState.ANSWERED, summary=counts).to_json()
