"""Site profiles: the ways the synthetic hospitals of a federation differ from each other.

A federated query has to cope with sites that see different patients and report the same facts
differently, so each generated site follows one of these profiles (``site_profile`` of ``generate``):

0. ``university`` (default): a general university hospital. Age structure of German hospital patients
   (median around 60), 30 % of regular contacts inpatient, HbA1c in % (LOINC 4548-4), eGFR by CKD-EPI
   (LOINC 62238-1), biobank samples from about 18 % of patients.
1. ``oncology``: a university hospital with a comprehensive cancer centre. Breast, lung, colorectal and
   prostate cancer three times as frequent, fewer births, a large biobank (about 30 % of patients).
2. ``geriatric``: a hospital with an older catchment area and a geriatric department. Many more patients
   over 80, more heart failure, kidney disease and hip fractures, more inpatient care, eGFR by MDRD
   (LOINC 33914-3), and a laboratory that reports 30 % of its HbA1c values in mmol/mol (LOINC 59261-8).
3. ``pulmonology``: a metropolitan hospital with a lung centre. More COPD, pneumonia, COVID-19 and lung
   cancer; its laboratory reports every HbA1c value in mmol/mol (IFCC, LOINC 59261-8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class SiteProfile:
    """How one kind of site differs from the default case mix and reporting habits."""

    name: str
    #: Relative weights of the age bands 0-17, 18-39, 40-59, 60-79 and 80+ at the first contact.
    age_bands: tuple[float, float, float, float, float]
    #: Probability that a routine (non-emergency) contact is an inpatient stay.
    inpatient_share: float
    #: Share of HbA1c results reported in mmol/mol instead of %.
    hba1c_ifcc_share: float
    #: Key of the eGFR test (formula) the laboratory reports, see ``codes.LAB_TESTS``.
    egfr_test: str
    #: Share of patients with biobank samples (drawn among those whose consent allowed it).
    biobank_share: float
    #: Multipliers on the prevalence of diagnoses, keyed by ``codes.Diagnosis.key``.
    prevalence: MappingProxyType[str, float] = field(default_factory=lambda: MappingProxyType({}))


_CANCERS = ("breast_cancer", "lung_cancer", "colorectal_cancer", "prostate_cancer")

SITE_PROFILES: tuple[SiteProfile, ...] = (
    SiteProfile(
        name="university",
        age_bands=(0.09, 0.16, 0.24, 0.34, 0.17),
        inpatient_share=0.3,
        hba1c_ifcc_share=0.0,
        egfr_test="egfr_ckdepi",
        biobank_share=0.18,
    ),
    SiteProfile(
        name="oncology",
        age_bands=(0.06, 0.13, 0.28, 0.39, 0.14),
        inpatient_share=0.35,
        hba1c_ifcc_share=0.0,
        egfr_test="egfr_ckdepi",
        biobank_share=0.3,
        prevalence=MappingProxyType({**dict.fromkeys(_CANCERS, 3.0), "birth": 0.5}),
    ),
    SiteProfile(
        name="geriatric",
        age_bands=(0.02, 0.08, 0.18, 0.42, 0.30),
        inpatient_share=0.4,
        hba1c_ifcc_share=0.3,
        egfr_test="egfr_mdrd",
        biobank_share=0.12,
        prevalence=MappingProxyType(
            {"heart_failure": 1.3, "ckd": 1.2, "hip_fracture": 1.5, "hypertension": 1.1, "birth": 0.2}
        ),
    ),
    SiteProfile(
        name="pulmonology",
        age_bands=(0.09, 0.16, 0.24, 0.34, 0.17),
        inpatient_share=0.3,
        hba1c_ifcc_share=1.0,
        egfr_test="egfr_ckdepi",
        biobank_share=0.15,
        prevalence=MappingProxyType({"copd": 1.6, "pneumonia": 1.4, "covid": 1.5, "lung_cancer": 1.5}),
    ),
)


def site_profile(index: int) -> SiteProfile:
    """Return profile ``index``, rejecting numbers that name no profile."""
    if not 0 <= index < len(SITE_PROFILES):
        raise ValueError(f"site_profile must be between 0 and {len(SITE_PROFILES) - 1}, got {index}")
    return SITE_PROFILES[index]
