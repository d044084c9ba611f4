"""The disclosure rule for what a site tells the hub about an extraction or a data delivery.

An extraction runs only for an approved project, and the project receives the records themselves,
pseudonymized. What the hub learns about them is the job's *sizes*, so that the project's team can follow
its delivery and the site's custodian can decide to release it: counts per name, never an id, a file
name or a value of a patient. These counts are exact, unlike feasibility counts, because only those who
may see the records see them: the hub shows a part's summary to the project's team and to that site's
own custodians, never to the coordination office or another site (`hub.delivery.service`). The rule
here is what may be in the summary at all:

- of the job's summary (`reports/job-summary.json`), the keys of `JOB_SUMMARY_KEYS` only (patients in the
  cohort and in the extraction, exclusions and inclusions per reason or resource type; and the job id);
- of the de-identification report, the resources out and the resources dropped per resource type (at
  most `MAX_TYPES` of each), the leak gate's number of findings, and the sealed package's size in bytes.

Whatever else a report holds (paths, pseudonyms, the gate's findings themselves) stays at the site.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["JOB_SUMMARY_KEYS", "MAX_TYPES", "delivery_counts", "extraction_counts"]

JOB_SUMMARY_KEYS = (
    "Job-ID",
    "Num-Cohort-Patients",
    "Num-Final-Patients",
    "Patient-Exclusions",
    "Resource-Exclusions",
    "Resource-Inclusions",
)
MAX_TYPES = 50


def extraction_counts(job_summary: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an extraction job's summary that may go to the hub."""
    return {key: job_summary[key] for key in JOB_SUMMARY_KEYS if key in job_summary}


def delivery_counts(report: Mapping[str, Any], sealed_bytes: int) -> dict[str, Any]:
    """The part of a de-identification report (with the leak gate's under `leakGate`) and the sealed
    package's size that may go to the hub."""
    return {
        "Deidentified-Resources": {k: int(v) for k, v in list(report["resourcesOut"].items())[:MAX_TYPES]},
        "Dropped-Resources": {k: int(v) for k, v in list(report["droppedNoModule"].items())[:MAX_TYPES]},
        "Leak-Gate-Findings": int(report["leakGate"]["findingsTotal"]),
        "Package-Bytes": int(sealed_bytes),
    }
