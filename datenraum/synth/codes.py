"""Terminology tables of the generator: what can happen to a patient and how it is coded.

Codes are real codes of the German catalogues (ICD-10-GM and OPS of the BfArM, ATC German edition,
LOINC, UCUM, SNOMED CT) with their official display texts, so that the output exercises the same value
sets a real MII data integration centre delivers. Prevalences are rough figures for patients of a German
university hospital (not the general population) and exist to give realistic marginal distributions and
correlations, not to support epidemiological conclusions.

PZNs are the one exception: the IFA product register is licensed, so apart from two products taken from
the MII test data, the PZNs are invented numbers that carry a valid PZN-8 check digit.
"""

from __future__ import annotations

from dataclasses import dataclass

ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
PZN = "http://fhir.de/CodeSystem/ifa/pzn"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
EDQM = "http://standardterms.edqm.eu"

#: Upper bounds (exclusive) of the age bands that prevalences are given for: 0-17, 18-39, 40-59, 60-79, 80+.
AGE_BAND_LIMITS = (18, 40, 60, 80)

# Department keys (Fachabteilungsschlüssel of the DKG, used in Encounter.serviceType).
DEPARTMENTS: dict[str, str] = {
    "0100": "Innere Medizin",
    "0200": "Geriatrie",
    "0300": "Kardiologie",
    "0400": "Nephrologie",
    "0500": "Hämatologie und internistische Onkologie",
    "0700": "Gastroenterologie",
    "1000": "Pädiatrie",
    "1400": "Lungen- und Bronchialheilkunde",
    "1500": "Allgemeine Chirurgie",
    "1600": "Unfallchirurgie",
    "2300": "Orthopädie",
    "2400": "Frauenheilkunde und Geburtshilfe",
    "2800": "Neurologie",
    "2900": "Allgemeine Psychiatrie",
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A clinical entity with one risk model, coded by one of several ICD-10-GM codes.

    ``prevalence`` is the probability that a patient of the given age band (see ``AGE_BAND_LIMITS``) has
    the condition recorded in the observation window; ``female`` and ``male`` scale it by sex, and
    ``risk_factors`` multiply it when the patient already has another diagnosis (evaluation follows
    table order, so a risk factor must come earlier). Acute diagnoses are events that cause their own
    encounter; chronic ones are recorded once and then shape labs, procedures and medication.
    """

    key: str
    codes: tuple[tuple[str, str, float], ...]
    prevalence: tuple[float, float, float, float, float]
    female: float = 1.0
    male: float = 1.0
    risk_factors: tuple[tuple[str, float], ...] = ()
    acute: bool = False
    department: str = "0100"
    #: Acute events only: median length of stay in days and the share treated as inpatients.
    stay: float = 0.0
    inpatient: float = 1.0


CHRONIC: tuple[Diagnosis, ...] = (
    Diagnosis(
        "hypertension",
        (
            ("I10.00", "Benigne essentielle Hypertonie: Ohne Angabe einer hypertensiven Krise", 0.55),
            (
                "I10.90",
                "Essentielle Hypertonie, nicht näher bezeichnet: Ohne Angabe einer hypertensiven Krise",
                0.35,
            ),
            (
                "I11.90",
                "Hypertensive Herzkrankheit ohne (kongestive) Herzinsuffizienz: "
                "Ohne Angabe einer hypertensiven Krise",
                0.10,
            ),
        ),
        (0.005, 0.05, 0.25, 0.44, 0.52),
        female=0.95,
    ),
    Diagnosis(
        "diabetes_t2",
        (
            ("E11.90", "Diabetes mellitus, Typ 2: Ohne Komplikationen: Nicht als entgleist bezeichnet", 0.55),
            ("E11.91", "Diabetes mellitus, Typ 2: Ohne Komplikationen: Als entgleist bezeichnet", 0.12),
            (
                "E11.20",
                "Diabetes mellitus, Typ 2: Mit Nierenkomplikationen: Nicht als entgleist bezeichnet",
                0.18,
            ),
            (
                "E11.40",
                "Diabetes mellitus, Typ 2: Mit neurologischen Komplikationen: Nicht als entgleist bezeichnet",
                0.15,
            ),
        ),
        (0.0, 0.012, 0.07, 0.16, 0.17),
        female=0.8,
        risk_factors=(("hypertension", 1.25),),
    ),
    Diagnosis(
        "diabetes_t1",
        (("E10.90", "Diabetes mellitus, Typ 1: Ohne Komplikationen: Nicht als entgleist bezeichnet", 1.0),),
        (0.003, 0.006, 0.005, 0.004, 0.002),
    ),
    Diagnosis(
        "hyperlipidemia",
        (
            ("E78.5", "Hyperlipidämie, nicht näher bezeichnet", 0.6),
            ("E78.2", "Gemischte Hyperlipidämie", 0.4),
        ),
        (0.002, 0.03, 0.13, 0.24, 0.19),
        risk_factors=(("diabetes_t2", 1.5),),
    ),
    Diagnosis(
        "chd",
        (
            ("I25.11", "Atherosklerotische Herzkrankheit: Ein-Gefäß-Erkrankung", 0.3),
            ("I25.13", "Atherosklerotische Herzkrankheit: Drei-Gefäß-Erkrankung", 0.3),
            ("I25.19", "Atherosklerotische Herzkrankheit: Nicht näher bezeichnet", 0.4),
        ),
        (0.0, 0.002, 0.03, 0.09, 0.13),
        female=0.55,
        risk_factors=(("hypertension", 1.3), ("diabetes_t2", 1.5), ("hyperlipidemia", 1.6)),
        department="0300",
    ),
    Diagnosis(
        "afib",
        (
            ("I48.0", "Vorhofflimmern, paroxysmal", 0.5),
            ("I48.2", "Vorhofflimmern, permanent", 0.3),
            ("I48.9", "Vorhofflimmern und Vorhofflattern, nicht näher bezeichnet", 0.2),
        ),
        (0.0, 0.002, 0.02, 0.09, 0.18),
        female=0.8,
        risk_factors=(("hypertension", 1.3),),
        department="0300",
    ),
    Diagnosis(
        "heart_failure",
        (
            ("I50.13", "Linksherzinsuffizienz: Mit Beschwerden bei leichterer Belastung", 0.4),
            ("I50.14", "Linksherzinsuffizienz: Mit Beschwerden in Ruhe", 0.3),
            ("I50.19", "Linksherzinsuffizienz: Nicht näher bezeichnet", 0.3),
        ),
        (0.0, 0.001, 0.012, 0.055, 0.12),
        risk_factors=(("chd", 1.8), ("afib", 1.6), ("hypertension", 1.2)),
        department="0300",
    ),
    Diagnosis(
        "ckd",
        (
            ("N18.3", "Chronische Nierenkrankheit, Stadium 3", 0.6),
            ("N18.4", "Chronische Nierenkrankheit, Stadium 4", 0.25),
            ("N18.5", "Chronische Nierenkrankheit, Stadium 5", 0.15),
        ),
        (0.001, 0.004, 0.025, 0.07, 0.13),
        risk_factors=(("diabetes_t2", 2.0), ("hypertension", 1.4), ("heart_failure", 1.5)),
        department="0400",
    ),
    Diagnosis(
        "copd",
        (
            (
                "J44.99",
                "Chronische obstruktive Lungenkrankheit, nicht näher bezeichnet: FEV1 nicht näher bezeichnet",
                0.55,
            ),
            (
                "J44.19",
                "Chronische obstruktive Lungenkrankheit mit akuter Exazerbation, nicht näher bezeichnet: "
                "FEV1 nicht näher bezeichnet",
                0.25,
            ),
            (
                "J44.10",
                "Chronische obstruktive Lungenkrankheit mit akuter Exazerbation, nicht näher bezeichnet: "
                "FEV1 <35 % des Sollwertes",
                0.2,
            ),
        ),
        (0.0, 0.003, 0.03, 0.08, 0.09),
        female=0.8,
        department="1400",
    ),
    Diagnosis(
        "depression",
        (
            ("F32.1", "Mittelgradige depressive Episode", 0.4),
            ("F32.2", "Schwere depressive Episode ohne psychotische Symptome", 0.2),
            ("F32.9", "Depressive Episode, nicht näher bezeichnet", 0.4),
        ),
        (0.008, 0.04, 0.05, 0.045, 0.04),
        female=1.7,
        department="2900",
    ),
    Diagnosis(
        "reflux",
        (("K21.9", "Gastroösophageale Refluxkrankheit ohne Ösophagitis", 1.0),),
        (0.003, 0.02, 0.05, 0.07, 0.07),
        department="0700",
    ),
    Diagnosis(
        "hypothyroidism",
        (("E03.9", "Hypothyreose, nicht näher bezeichnet", 1.0),),
        (0.002, 0.015, 0.035, 0.045, 0.045),
        female=3.0,
    ),
    Diagnosis(
        "gonarthrosis",
        (
            ("M17.1", "Sonstige primäre Gonarthrose", 0.6),
            ("M17.0", "Primäre Gonarthrose, beidseitig", 0.4),
        ),
        (0.0, 0.003, 0.03, 0.07, 0.07),
        female=1.4,
        department="2300",
    ),
    Diagnosis(
        "coxarthrosis",
        (("M16.1", "Sonstige primäre Koxarthrose", 1.0),),
        (0.0, 0.002, 0.02, 0.05, 0.05),
        female=1.2,
        department="2300",
    ),
    Diagnosis(
        "anemia",
        (
            ("D50.9", "Eisenmangelanämie, nicht näher bezeichnet", 0.5),
            ("D64.9", "Anämie, nicht näher bezeichnet", 0.5),
        ),
        (0.01, 0.015, 0.025, 0.05, 0.08),
        female=1.3,
        risk_factors=(("ckd", 1.8),),
    ),
    Diagnosis(
        "aortic_stenosis",
        (("I35.0", "Aortenklappenstenose", 1.0),),
        (0.0, 0.0, 0.003, 0.02, 0.05),
        department="0300",
    ),
    Diagnosis(
        "parkinson",
        (("G20.90", "Primäres Parkinson-Syndrom, nicht näher bezeichnet: Ohne Wirkungsfluktuation", 1.0),),
        (0.0, 0.0, 0.002, 0.012, 0.02),
        female=0.7,
        department="2800",
    ),
    Diagnosis(
        "alcohol",
        (("F10.2", "Psychische und Verhaltensstörungen durch Alkohol: Abhängigkeitssyndrom", 1.0),),
        (0.0005, 0.02, 0.03, 0.02, 0.005),
        female=0.35,
        department="2900",
    ),
    Diagnosis(
        "cirrhosis",
        (
            ("K70.3", "Alkoholische Leberzirrhose", 0.5),
            ("K74.6", "Sonstige und nicht näher bezeichnete Zirrhose der Leber", 0.5),
        ),
        (0.0, 0.001, 0.008, 0.012, 0.006),
        female=0.5,
        risk_factors=(("alcohol", 6.0),),
        department="0700",
    ),
    Diagnosis(
        "breast_cancer",
        (
            ("C50.4", "Bösartige Neubildung: Oberer äußerer Quadrant der Brustdrüse", 0.55),
            ("C50.9", "Bösartige Neubildung: Brustdrüse, nicht näher bezeichnet", 0.45),
        ),
        (0.0, 0.003, 0.016, 0.022, 0.018),
        male=0.01,
        department="2400",
    ),
    Diagnosis(
        "lung_cancer",
        (
            ("C34.1", "Bösartige Neubildung: Oberlappen (-Bronchus)", 0.6),
            ("C34.3", "Bösartige Neubildung: Unterlappen (-Bronchus)", 0.4),
        ),
        (0.0, 0.0005, 0.006, 0.014, 0.009),
        female=0.6,
        risk_factors=(("copd", 2.5),),
        department="0500",
    ),
    Diagnosis(
        "colorectal_cancer",
        (
            ("C18.7", "Bösartige Neubildung: Colon sigmoideum", 0.5),
            ("C20", "Bösartige Neubildung des Rektums", 0.5),
        ),
        (0.0, 0.0005, 0.005, 0.012, 0.015),
        female=0.8,
        department="0500",
    ),
    Diagnosis(
        "prostate_cancer",
        (("C61", "Bösartige Neubildung der Prostata", 1.0),),
        (0.0, 0.0, 0.006, 0.03, 0.035),
        female=0.0,
        department="0500",
    ),
)

ACUTE: tuple[Diagnosis, ...] = (
    Diagnosis(
        "pneumonia",
        (
            ("J18.9", "Pneumonie, nicht näher bezeichnet", 0.7),
            ("J18.1", "Lobärpneumonie, nicht näher bezeichnet", 0.3),
        ),
        (0.015, 0.008, 0.015, 0.04, 0.08),
        risk_factors=(("copd", 2.5), ("heart_failure", 1.5)),
        acute=True,
        department="1400",
        stay=7,
        inpatient=0.9,
    ),
    Diagnosis(
        "covid",
        (("U07.1", "COVID-19, Virus nachgewiesen", 1.0),),
        (0.01, 0.015, 0.025, 0.045, 0.06),
        risk_factors=(("copd", 1.5), ("diabetes_t2", 1.3)),
        acute=True,
        stay=8,
        inpatient=0.85,
    ),
    Diagnosis(
        "myocardial_infarction",
        (
            ("I21.0", "Akuter transmuraler Myokardinfarkt der Vorderwand", 0.3),
            ("I21.1", "Akuter transmuraler Myokardinfarkt der Hinterwand", 0.25),
            ("I21.9", "Akuter Myokardinfarkt, nicht näher bezeichnet", 0.45),
        ),
        (0.0, 0.0005, 0.005, 0.012, 0.016),
        female=0.55,
        risk_factors=(("chd", 3.0), ("diabetes_t2", 1.5)),
        acute=True,
        department="0300",
        stay=5,
    ),
    Diagnosis(
        "stroke",
        (
            ("I63.9", "Hirninfarkt, nicht näher bezeichnet", 0.6),
            ("I63.4", "Hirninfarkt durch Embolie zerebraler Arterien", 0.4),
        ),
        (0.0, 0.001, 0.005, 0.014, 0.028),
        risk_factors=(("afib", 2.5), ("hypertension", 1.3)),
        acute=True,
        department="2800",
        stay=8,
    ),
    Diagnosis(
        "pulmonary_embolism",
        (("I26.9", "Lungenembolie ohne Angabe eines akuten Cor pulmonale", 1.0),),
        (0.0002, 0.002, 0.004, 0.007, 0.009),
        acute=True,
        stay=7,
    ),
    Diagnosis(
        "sepsis",
        (
            ("A41.9", "Sepsis, nicht näher bezeichnet", 0.7),
            ("A41.51", "Sepsis: Escherichia coli [E. coli]", 0.3),
        ),
        (0.002, 0.001, 0.004, 0.011, 0.022),
        risk_factors=(("diabetes_t2", 1.4), ("ckd", 1.5)),
        acute=True,
        stay=13,
    ),
    Diagnosis(
        "uti",
        (("N39.0", "Harnwegsinfektion, Lokalisation nicht näher bezeichnet", 1.0),),
        (0.008, 0.008, 0.008, 0.02, 0.05),
        female=2.0,
        acute=True,
        stay=5,
        inpatient=0.6,
    ),
    Diagnosis(
        "gastroenteritis",
        (
            (
                "A09.9",
                "Sonstige und nicht näher bezeichnete Gastroenteritis und Kolitis "
                "nicht näher bezeichneten Ursprungs",
                1.0,
            ),
        ),
        (0.03, 0.01, 0.008, 0.01, 0.02),
        acute=True,
        stay=3,
        inpatient=0.5,
    ),
    Diagnosis(
        "hip_fracture",
        (
            ("S72.00", "Schenkelhalsfraktur: Teil nicht näher bezeichnet", 0.6),
            ("S72.10", "Femurfraktur: Trochantär, nicht näher bezeichnet", 0.4),
        ),
        (0.0005, 0.0005, 0.002, 0.008, 0.035),
        female=2.0,
        acute=True,
        department="1600",
        stay=12,
    ),
    Diagnosis(
        "gallstones",
        (("K80.20", "Gallenblasenstein ohne Cholezystitis: Ohne Angabe einer Gallenwegsobstruktion", 1.0),),
        (0.0005, 0.01, 0.015, 0.015, 0.01),
        female=1.8,
        acute=True,
        department="1500",
        stay=3,
    ),
    Diagnosis(
        "appendicitis",
        (("K35.8", "Akute Appendizitis, nicht näher bezeichnet", 1.0),),
        (0.012, 0.008, 0.003, 0.002, 0.001),
        acute=True,
        department="1500",
        stay=3,
    ),
    Diagnosis(
        "birth",
        (("O80", "Spontangeburt eines Einlings", 1.0),),
        (0.0005, 0.08, 0.008, 0.0, 0.0),
        male=0.0,
        acute=True,
        department="2400",
        stay=3,
    ),
)

# --- Laboratory --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabTest:
    """A quantitative laboratory test with its reference range (``*_female`` where it differs)."""

    key: str
    loinc: str
    display: str
    ucum: str
    unit: str
    decimals: int
    low: float
    high: float
    low_female: float | None = None
    high_female: float | None = None


# One test per line, like a laboratory's test catalogue (the formatter would spread each over ten lines).
# fmt: off
_TESTS = (
    LabTest("hemoglobin", "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 1, 13.5, 17.5, 12, 15.5),
    LabTest("leukocytes", "6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", "10³/µL", 1, 3.9, 10.5),
    LabTest("platelets", "777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", "10³/µL", 0, 150, 400),
    LabTest("crp", "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", "mg/L", 1, 0, 5),
    LabTest("sodium", "2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 0, 135, 145),
    LabTest("potassium", "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 1, 3.5, 5.1),
    LabTest("creatinine", "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 2, 0.7, 1.2, 0.5, 0.9),
    LabTest("egfr_ckdepi", "62238-1", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)", "mL/min/{1.73_m2}", "mL/min/1.73 m²", 0, 60, 200),
    LabTest("egfr_mdrd", "33914-3", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma by Creatinine-based formula (MDRD)", "mL/min/{1.73_m2}", "mL/min/1.73 m²", 0, 60, 200),
    LabTest("glucose", "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0, 70, 140),
    LabTest("hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", 1, 4, 5.6),
    LabTest("hba1c_ifcc", "59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol", "mmol/mol", "mmol/mol", 0, 20, 38),
    LabTest("ldl", "13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL", "mg/dL", 0, 0, 115),
    LabTest("troponin", "67151-1", "Troponin T.cardiac [Mass/volume] in Serum or Plasma by High sensitivity method", "ng/L", "ng/L", 0, 0, 14),
    LabTest("ntprobnp", "33762-6", "Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma", "pg/mL", "pg/mL", 0, 0, 300),
    LabTest("tsh", "3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", "mIU/L", 2, 0.27, 4.2),
    LabTest("alt", "1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", "U/L", 0, 0, 45, 0, 35),
    LabTest("procalcitonin", "33959-8", "Procalcitonin [Mass/volume] in Serum or Plasma", "ng/mL", "ng/mL", 2, 0, 0.5),
)
# fmt: on
LAB_TESTS: dict[str, LabTest] = {test.key: test for test in _TESTS}

SARS_COV_2_PCR = (
    "94500-6",
    "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA with probe detection",
)
DETECTED = ("260373001", "Detected (qualifier value)")
NOT_DETECTED = ("260415000", "Not detected (qualifier value)")

#: Tests drawn together; ``egfr`` stands for the eGFR formula the site reports (see ``SiteProfile``) and is
#: computed from the creatinine of the same draw.
ADMISSION_PANEL = (
    "hemoglobin",
    "leukocytes",
    "platelets",
    "crp",
    "sodium",
    "potassium",
    "creatinine",
    "egfr",
    "glucose",
)
FOLLOW_UP_PANEL = ("hemoglobin", "leukocytes", "crp", "creatinine", "potassium")
OUTPATIENT_PANEL = ("hemoglobin", "creatinine", "egfr", "crp")

#: Tests added to a contact's first draw, keyed by diagnosis key (``any`` for every contact):
#: (test key, probability for an inpatient stay, probability for an outpatient visit).
LAB_RULES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "any": (
        ("hba1c", 0.06, 0.02),
        ("ldl", 0.05, 0.03),
        ("troponin", 0.08, 0.0),
        ("ntprobnp", 0.05, 0.0),
        ("tsh", 0.06, 0.03),
        ("alt", 0.5, 0.1),
        ("procalcitonin", 0.02, 0.0),
    ),
    "diabetes_t1": (("hba1c", 0.8, 0.7),),
    "diabetes_t2": (("hba1c", 0.7, 0.6),),
    "hyperlipidemia": (("ldl", 0.3, 0.25),),
    "chd": (("ldl", 0.3, 0.2), ("troponin", 0.3, 0.0)),
    "afib": (("troponin", 0.2, 0.0),),
    "heart_failure": (("ntprobnp", 0.6, 0.3), ("troponin", 0.3, 0.0)),
    "hypothyroidism": (("tsh", 0.5, 0.3),),
    "cirrhosis": (("alt", 0.9, 0.5),),
    "myocardial_infarction": (("troponin", 1.0, 1.0),),
    "pulmonary_embolism": (("troponin", 0.6, 0.0), ("ntprobnp", 0.4, 0.0)),
    "sepsis": (("procalcitonin", 1.0, 0.0),),
    "pneumonia": (("procalcitonin", 0.5, 0.1),),
    "covid": (("procalcitonin", 0.3, 0.0),),
}

# --- Procedures --------------------------------------------------------------------------------------

OPS_DISPLAYS: dict[str, str] = {
    "1-207.0": "Elektroenzephalographie [EEG]: Routine-EEG (10-20-System)",
    "1-275.0": "Transarterielle Linksherz-Katheteruntersuchung: Koronarangiographie ohne weitere Maßnahmen",
    "1-632.0": "Diagnostische Ösophagogastroduodenoskopie: Bei normalem Situs",
    "1-650.2": "Diagnostische Koloskopie: Total, mit Ileoskopie",
    "1-710": "Ganzkörperplethysmographie",
    "3-052": "Transösophageale Echokardiographie [TEE]",
    "3-200": "Native Computertomographie des Schädels",
    "3-222": "Computertomographie des Thorax mit Kontrastmittel",
    "3-225": "Computertomographie des Abdomens mit Kontrastmittel",
    "3-800": "Native Magnetresonanztomographie des Schädels",
    "5-470.11": "Appendektomie: Laparoskopisch: Absetzung durch (Schlingen)ligatur",
    "5-511.11": "Cholezystektomie: Einfach, laparoskopisch: Ohne laparoskopische Revision der Gallengänge",
    "5-820.00": "Implantation einer Endoprothese am Hüftgelenk: Totalendoprothese: Nicht zementiert",
    "5-822.g1": "Implantation einer Endoprothese am Kniegelenk: Bikondyläre Oberflächenersatzprothese: Zementiert",
    "8-020.8": "Therapeutische Injektion: Systemische Thrombolyse",
    "8-542.11": "Nicht komplexe Chemotherapie: 1 Tag: 1 Substanz",
    "8-550.1": "Geriatrische frührehabilitative Komplexbehandlung: Mindestens 14 Behandlungstage und "
    "20 Therapieeinheiten",
    "8-640.0": "Externe elektrische Defibrillation (Kardioversion) des Herzrhythmus: Synchronisiert (Kardioversion)",
    "8-701": "Einfache endotracheale Intubation",
    "8-706": "Anlegen einer Maske zur maschinellen Beatmung",
    "8-800.c0": "Transfusion von Vollblut, Erythrozytenkonzentrat und Thrombozytenkonzentrat: "
    "Erythrozytenkonzentrat: 1 TE bis unter 6 TE",
    "8-831.0": "Legen und Wechsel eines Katheters in periphere und zentralvenöse Gefäße: Legen",
    "8-837.m0": "Perkutan-transluminale Gefäßintervention an Herz und Koronargefäßen: Einlegen eines "
    "medikamentefreisetzenden Stents: Ein Stent in eine Koronararterie",
    "8-854.2": "Hämodialyse: Intermittierend, Antikoagulation mit Heparin oder ohne Antikoagulation",
    "8-930": "Monitoring von Atmung, Herz und Kreislauf ohne Messung des Pulmonalarteriendruckes und des "
    "zentralen Venendruckes",
    "9-260": "Überwachung und Leitung einer normalen Geburt",
    "9-984.7": "Pflegebedürftigkeit: Pflegebedürftig nach Pflegegrad 2",
    "9-984.8": "Pflegebedürftigkeit: Pflegebedürftig nach Pflegegrad 3",
}

#: Procedures that take hours (documented as performedPeriod) rather than an instant.
OPS_WITH_DURATION = frozenset(
    {"5-470.11", "5-511.11", "5-820.00", "5-822.g1", "8-542.11", "8-854.2", "8-550.1"}
)
#: Procedures a patient undergoes at most once in the window (organ removed, joint replaced, ...).
OPS_ONCE = frozenset({"5-470.11", "5-511.11", "5-820.00", "5-822.g1"})

#: The SNOMED CT category the MII procedure profile expects, by OPS chapter (first character).
OPS_CATEGORY: dict[str, tuple[str, str]] = {
    "1": ("103693007", "Diagnostic procedure"),
    "3": ("363679005", "Imaging"),
    "5": ("387713003", "Surgical procedure"),
    "8": ("277132007", "Therapeutic procedure"),
    "9": ("394841004", "Other category"),
}

#: Procedures per inpatient stay, keyed by a diagnosis key or an ICD code: (OPS code, probability).
#: ``inpatient`` applies to every stay, ``elderly`` to stays of patients aged 75 or more.
PROCEDURE_RULES: dict[str, tuple[tuple[str, float], ...]] = {
    "inpatient": (("8-930", 0.15), ("3-200", 0.04), ("8-831.0", 0.03)),
    "elderly": (("9-984.7", 0.2), ("9-984.8", 0.15)),
    "covid": (("3-222", 0.35), ("8-706", 0.12), ("8-930", 0.5), ("8-831.0", 0.08)),
    "pneumonia": (("3-222", 0.3), ("8-930", 0.3), ("8-706", 0.06)),
    "myocardial_infarction": (("1-275.0", 0.95), ("8-837.m0", 0.7), ("8-930", 0.9)),
    "stroke": (("3-200", 0.95), ("3-800", 0.4), ("8-020.8", 0.15), ("8-930", 0.7)),
    "pulmonary_embolism": (("3-222", 0.9), ("8-930", 0.5)),
    "sepsis": (("8-831.0", 0.6), ("8-930", 0.8), ("8-701", 0.15), ("8-800.c0", 0.15)),
    "hip_fracture": (("5-820.00", 0.55), ("8-800.c0", 0.25), ("8-550.1", 0.25)),
    "gallstones": (("5-511.11", 0.85),),
    "appendicitis": (("5-470.11", 0.9),),
    "birth": (("9-260", 1.0),),
    "N18.5": (("8-854.2", 0.7),),
    "afib": (("3-052", 0.1), ("8-640.0", 0.08)),
    "chd": (("1-275.0", 0.12),),
    "copd": (("1-710", 0.15), ("8-706", 0.04)),
    "anemia": (("8-800.c0", 0.2), ("1-632.0", 0.12), ("1-650.2", 0.08)),
    "reflux": (("1-632.0", 0.15),),
    "parkinson": (("1-207.0", 0.1),),
    "gonarthrosis": (("5-822.g1", 0.2),),
    "coxarthrosis": (("5-820.00", 0.2),),
    "breast_cancer": (("8-542.11", 0.4),),
    "lung_cancer": (("8-542.11", 0.4), ("3-222", 0.4)),
    "colorectal_cancer": (("8-542.11", 0.35), ("3-225", 0.35), ("1-650.2", 0.2)),
    "prostate_cancer": (("3-225", 0.15),),
}

#: Procedures during an outpatient visit, keyed like ``PROCEDURE_RULES``.
AMBULATORY_PROCEDURE_RULES: dict[str, tuple[tuple[str, float], ...]] = {
    "breast_cancer": (("8-542.11", 0.3),),
    "lung_cancer": (("8-542.11", 0.3),),
    "colorectal_cancer": (("8-542.11", 0.25), ("1-650.2", 0.05)),
    "reflux": (("1-632.0", 0.05),),
    "anemia": (("1-632.0", 0.05), ("1-650.2", 0.05)),
}

# --- Medication --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drug:
    """One product of the medication catalogue (one Medication resource per ATC code)."""

    atc: str
    name: str
    product: str
    pzn: str
    dose: float
    dose_unit: str
    dosage_text: str
    form: tuple[str, str] | None = None
    #: Given once (a bolus, a single prophylactic dose) rather than over several days.
    single_dose: bool = False


_TABLET = ("10219000", "Tablet")
_FILM_TABLET = ("10221000", "Film-coated tablet")
_INJECTION = ("11201000", "Solution for injection")
_INFUSION = ("11210000", "Solution for infusion")
_CAPSULE = ("10210000", "Capsule, hard")

# One product per line reads like the catalogue it is; the formatter would spread each over nine lines.
# fmt: off
_CATALOGUE = (
    Drug("A10BA02", "Metformin", "Metformin 1000 mg Filmtabletten", "10293836", 1000, "mg", "1-0-1", _FILM_TABLET),
    Drug("A10AB01", "Insulin (human)", "Humaninsulin 100 I.E./ml Injektionslösung", "10358441", 8, "[IU]", "8-6-6 I.E.", _INJECTION),
    Drug("A10AB05", "Insulin aspart", "Insulin aspart 100 E/ml Injektionslösung", "10412873", 6, "[IU]", "nach BE-Schema", _INJECTION),
    Drug("A10AE04", "Insulin glargin", "Insulin glargin 100 E/ml Injektionslösung", "10542216", 20, "[IU]", "0-0-0-20 I.E.", _INJECTION),
    Drug("A10BH01", "Sitagliptin", "Sitagliptin 100 mg Filmtabletten", "11024558", 100, "mg", "1-0-0", _FILM_TABLET),
    Drug("A10BK01", "Dapagliflozin", "Dapagliflozin 10 mg Filmtabletten", "11370421", 10, "mg", "1-0-0", _FILM_TABLET),
    Drug("C09AA05", "Ramipril", "Ramipril 5 mg Tabletten", "10638318", 5, "mg", "1-0-0", _TABLET),
    Drug("C09CA01", "Losartan", "Losartan 50 mg Filmtabletten", "10764968", 50, "mg", "1-0-0", _FILM_TABLET),
    Drug("C08CA01", "Amlodipin", "Amlodipin 5 mg Tabletten", "10891595", 5, "mg", "1-0-0", _TABLET),
    Drug("C07AB07", "Bisoprolol", "Bisoprolol 5 mg Filmtabletten", "11157733", 5, "mg", "1-0-0", _FILM_TABLET),
    Drug("C03AA03", "Hydrochlorothiazid", "Hydrochlorothiazid 25 mg Tabletten", "11284360", 25, "mg", "1-0-0", _TABLET),
    Drug("C03CA01", "Furosemid", "Furosemid 40 mg Tabletten", "11411002", 40, "mg", "1-1-0", _TABLET),
    Drug("C03DA01", "Spironolacton", "Spironolacton 25 mg Tabletten", "11537631", 25, "mg", "1-0-0", _TABLET),
    Drug("C10AA01", "Simvastatin", "Simvastatin 20 mg Filmtabletten", "11664275", 20, "mg", "0-0-1", _FILM_TABLET),
    Drug("C10AA05", "Atorvastatin", "Atorvastatin 40 mg Filmtabletten", "11790904", 40, "mg", "0-0-1", _FILM_TABLET),
    Drug("B01AC06", "Acetylsalicylsäure", "ASS 100 - 1a Pharma TAH Tabletten", "06312077", 100, "mg", "0-1-0", _TABLET),
    Drug("B01AC24", "Ticagrelor", "Ticagrelor 90 mg Filmtabletten", "12043173", 90, "mg", "1-0-1", _FILM_TABLET),
    Drug("B01AF01", "Rivaroxaban", "Rivaroxaban 20 mg Filmtabletten", "12169804", 20, "mg", "1-0-0", _FILM_TABLET),
    Drug("B01AF02", "Apixaban", "Apixaban 5 mg Filmtabletten", "12296448", 5, "mg", "1-0-1", _FILM_TABLET),
    Drug("B01AB01", "Heparin", "Heparin-Natrium 25.000 I.E./5 ml Injektionslösung", "12423088", 25000, "[IU]", "nach Perfusorschema", _INJECTION),
    Drug("B01AB05", "Enoxaparin", "Enoxaparin 40 mg Injektionslösung Fertigspritze", "12549719", 40, "mg", "0-0-1 s.c.", _INJECTION),
    Drug("B01AD02", "Alteplase", "Alteplase 50 mg Pulver zur Herstellung einer Infusionslösung", "12676346", 70, "mg", "einmalig i.v.", _INFUSION, True),
    Drug("R03BB04", "Tiotropiumbromid", "Tiotropium 18 Mikrogramm Hartkapseln mit Inhalationspulver", "12802986", 18, "ug", "1-0-0 inhalativ"),
    Drug("R03AK06", "Salmeterol und Fluticason", "Salmeterol/Fluticason 50/500 µg Pulver zur Inhalation", "12929617", 1, "{Hub}", "1-0-1 inhalativ"),
    Drug("R03AC02", "Salbutamol", "Salbutamol 100 µg Dosieraerosol", "13056249", 2, "{Hub}", "bei Bedarf 2 Hübe"),
    Drug("H02AB02", "Dexamethason", "Dexamethason 6 mg Tabletten", "13182876", 6, "mg", "1-0-0", _TABLET),
    Drug("H03AA01", "Levothyroxin-Natrium", "Levothyroxin 75 µg Tabletten", "13309526", 75, "ug", "1-0-0 nüchtern", _TABLET),
    Drug("L02BA01", "Tamoxifen", "Tamoxifen 20 mg Tabletten", "13436147", 20, "mg", "1-0-0", _TABLET),
    Drug("L02BG03", "Anastrozol", "Anastrozol 1 mg Filmtabletten", "13562780", 1, "mg", "1-0-0", _FILM_TABLET),
    Drug("L02AE02", "Leuprorelin", "Leuprorelin 11,25 mg Implantat", "13689411", 11.25, "mg", "alle 3 Monate s.c.", None, True),
    Drug("L01CD01", "Paclitaxel", "Paclitaxel 6 mg/ml Konzentrat zur Herstellung einer Infusionslösung", "13816051", 175, "mg", "nach Protokoll", _INFUSION, True),
    Drug("L01XA02", "Carboplatin", "Carboplatin 10 mg/ml Konzentrat zur Herstellung einer Infusionslösung", "13942689", 450, "mg", "nach Protokoll", _INFUSION, True),
    Drug("L01BC02", "Fluorouracil", "Fluorouracil 50 mg/ml Injektionslösung", "14069314", 400, "mg", "nach Protokoll", _INJECTION, True),
    Drug("J01CR02", "Amoxicillin und Beta-Lactamase-Inhibitoren", "Amoxicillin/Clavulansäure 875/125 mg Filmtabletten", "14195941", 1000, "mg", "1-1-1", _FILM_TABLET),
    Drug("J01CR05", "Piperacillin und Beta-Lactamase-Inhibitoren", "Piperacillin/Tazobactam 4 g/0,5 g Pulver zur Herstellung einer Infusionslösung", "14322581", 4.5, "g", "1-1-1 i.v."),
    Drug("J01DD04", "Ceftriaxon", "Ceftriaxon 2 g Pulver zur Herstellung einer Infusionslösung", "14449212", 2, "g", "1-0-0 i.v."),
    Drug("J01DB04", "Cefazolin", "Cefazolin 2 g Pulver zur Herstellung einer Injektionslösung", "14575856", 2, "g", "einmalig perioperativ", None, True),
    Drug("J01FA09", "Clarithromycin", "Clarithromycin 500 mg Filmtabletten", "14702496", 500, "mg", "1-0-1", _FILM_TABLET),
    Drug("J01MA02", "Ciprofloxacin", "Ciprofloxacin 500 mg Filmtabletten", "14829110", 500, "mg", "1-0-1", _FILM_TABLET),
    Drug("J05AB16", "Remdesivir", "Remdesivir 100 mg Pulver für ein Konzentrat zur Herstellung einer Infusionslösung", "14955748", 100, "mg", "1-0-0 i.v."),
    Drug("A02BC02", "Pantoprazol", "Pantoprazol 40 mg magensaftresistente Tabletten", "15082386", 40, "mg", "1-0-0"),
    Drug("N02BE01", "Paracetamol", "Paracetamol 500 mg Tabletten", "15209007", 1000, "mg", "bei Bedarf, max. 4 g/d", _TABLET),
    Drug("N02BB02", "Metamizol-Natrium", "Metamizol HEXAL® 500 mg", "00651306", 1000, "mg", "1-1-1-1"),
    Drug("N02AA01", "Morphin", "Morphin 10 mg/ml Injektionslösung", "15335634", 5, "mg", "bei Bedarf i.v.", _INJECTION, True),
    Drug("N06AB06", "Sertralin", "Sertralin 50 mg Filmtabletten", "15462261", 50, "mg", "1-0-0", _FILM_TABLET),
    Drug("N06AB10", "Escitalopram", "Escitalopram 10 mg Filmtabletten", "15588890", 10, "mg", "1-0-0", _FILM_TABLET),
    Drug("N06AX11", "Mirtazapin", "Mirtazapin 15 mg Filmtabletten", "15715532", 15, "mg", "0-0-1", _FILM_TABLET),
    Drug("N04BA02", "Levodopa und Decarboxylasehemmer", "Levodopa/Benserazid 100/25 mg Hartkapseln", "15842176", 125, "mg", "1-1-1", _CAPSULE),
    Drug("B03AA07", "Eisen(II)-sulfat", "Eisen(II)-sulfat 100 mg Retardtabletten", "15968799", 100, "mg", "1-0-0"),
    Drug("M01AE01", "Ibuprofen", "Ibuprofen 400 mg Filmtabletten", "16095422", 400, "mg", "1-1-1", _FILM_TABLET),
    Drug("M04AA01", "Allopurinol", "Allopurinol 300 mg Tabletten", "16222056", 300, "mg", "1-0-0", _TABLET),
    Drug("A06AD11", "Lactulose", "Lactulose 670 mg/ml Lösung zum Einnehmen", "16348685", 10, "g", "1-1-1"),
)
# fmt: on
DRUGS: dict[str, Drug] = {drug.atc: drug for drug in _CATALOGUE}

#: Long-term medication (MedicationStatement) by chronic diagnosis: (ATC code, probability).
HOME_MEDICATION: dict[str, tuple[tuple[str, float], ...]] = {
    "hypertension": (
        ("C09AA05", 0.45),
        ("C08CA01", 0.35),
        ("C07AB07", 0.2),
        ("C03AA03", 0.2),
        ("C09CA01", 0.1),
    ),
    "diabetes_t2": (
        ("A10BA02", 0.7),
        ("A10AB01", 0.15),
        ("A10AE04", 0.15),
        ("A10BK01", 0.15),
        ("A10BH01", 0.12),
    ),
    "diabetes_t1": (("A10AE04", 0.85), ("A10AB05", 0.85)),
    "hyperlipidemia": (("C10AA01", 0.35), ("C10AA05", 0.4)),
    "chd": (("B01AC06", 0.8), ("C10AA05", 0.6), ("C07AB07", 0.5)),
    "afib": (("B01AF02", 0.45), ("B01AF01", 0.3), ("C07AB07", 0.5)),
    "heart_failure": (("C03CA01", 0.6), ("C07AB07", 0.6), ("C09AA05", 0.5), ("C03DA01", 0.4)),
    "ckd": (("C03CA01", 0.3), ("M04AA01", 0.2)),
    "copd": (("R03BB04", 0.6), ("R03AK06", 0.4), ("R03AC02", 0.5)),
    "depression": (("N06AB06", 0.35), ("N06AB10", 0.35), ("N06AX11", 0.25)),
    "reflux": (("A02BC02", 0.8),),
    "hypothyroidism": (("H03AA01", 0.95),),
    "gonarthrosis": (("M01AE01", 0.3), ("N02BB02", 0.2)),
    "coxarthrosis": (("M01AE01", 0.3), ("N02BB02", 0.2)),
    "anemia": (("B03AA07", 0.4),),
    "parkinson": (("N04BA02", 0.9),),
    "cirrhosis": (("C03DA01", 0.4), ("A06AD11", 0.4)),
    "breast_cancer": (("L02BA01", 0.4), ("L02BG03", 0.4)),
    "prostate_cancer": (("L02AE02", 0.5),),
}

#: Drugs given during a stay (MedicationAdministration), keyed like ``PROCEDURE_RULES``.
INPATIENT_MEDICATION: dict[str, tuple[tuple[str, float], ...]] = {
    "inpatient": (("B01AB05", 0.35), ("A02BC02", 0.25), ("N02BE01", 0.2), ("N02BB02", 0.2)),
    "covid": (("H02AB02", 0.6), ("B01AB05", 0.6), ("J05AB16", 0.1)),
    "pneumonia": (("J01CR02", 0.5), ("J01DD04", 0.4), ("J01FA09", 0.2)),
    "sepsis": (("J01CR05", 0.6), ("J01DD04", 0.4), ("N02BB02", 0.4)),
    "uti": (("J01DD04", 0.4), ("J01MA02", 0.3)),
    "myocardial_infarction": (("B01AC06", 0.95), ("B01AC24", 0.7), ("B01AB01", 0.8), ("N02AA01", 0.3)),
    "stroke": (("B01AC06", 0.6), ("B01AD02", 0.15)),
    "pulmonary_embolism": (("B01AB01", 0.85),),
    "hip_fracture": (("B01AB05", 0.85), ("N02BB02", 0.7), ("J01DB04", 0.6), ("N02AA01", 0.3)),
    "gallstones": (("J01DB04", 0.7), ("N02BB02", 0.6)),
    "appendicitis": (("J01DB04", 0.7), ("N02BB02", 0.6)),
    "birth": (("N02BE01", 0.3),),
    "diabetes_t2": (("A10AB01", 0.5),),
    "diabetes_t1": (("A10AB05", 0.9),),
    "heart_failure": (("C03CA01", 0.6),),
}

#: The cytostatic given with a chemotherapy procedure (OPS 8-542.11), by cancer diagnosis key.
CHEMOTHERAPY: dict[str, str] = {
    "breast_cancer": "L01CD01",
    "lung_cancer": "L01XA02",
    "colorectal_cancer": "L01BC02",
}

# --- Biobank -----------------------------------------------------------------------------------------

BLOOD_SPECIMENS: tuple[tuple[str, str, float], ...] = (
    ("119364003", "Serum specimen (specimen)", 0.3),
    ("119361006", "Plasma specimen (specimen)", 0.2),
    ("445295009", "Blood specimen with edetic acid (specimen)", 0.2),
    ("122555007", "Venous blood specimen (specimen)", 0.15),
    ("258580003", "Whole blood sample (specimen)", 0.1),
    ("119297000", "Blood specimen (specimen)", 0.05),
)
TISSUE_SPECIMEN = ("119376003", "Tissue specimen (specimen)")
VENIPUNCTURE_SITES: tuple[tuple[str, str], ...] = (
    ("368208006", "Left upper arm structure (body structure)"),
    ("368209003", "Right upper arm structure (body structure)"),
)
#: Where a tumour sample is taken from, by cancer diagnosis key.
TUMOUR_SITES: dict[str, tuple[str, str]] = {
    "breast_cancer": ("76752008", "Breast structure (body structure)"),
    "lung_cancer": ("39607008", "Lung structure (body structure)"),
    "colorectal_cancer": ("71854001", "Colon structure (body structure)"),
    "prostate_cancer": ("41216001", "Prostatic structure (body structure)"),
}

# --- Consent -----------------------------------------------------------------------------------------

CONSENT_POLICY = "urn:oid:2.16.840.1.113883.3.1937.777.24.2.1791"
CONSENT_PROVISION_SYSTEM = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
#: Modules of the MII broad consent (version 1.6.d) the generator consents or refuses, in the order of
#: the MII test data.
CONSENT_PROVISIONS: tuple[tuple[str, str], ...] = (
    ("2.16.840.1.113883.3.1937.777.24.5.3.6", "MDAT erheben"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.7", "MDAT speichern, verarbeiten"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.8", "MDAT wissenschaftlich nutzen"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.9", "MDAT zusammenfuehren Dritte"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.19", "BIOMAT erheben"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.20", "BIOMAT lagern verarbeiten"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.22", "BIOMAT wissenschaftlich nutzen"),
)
