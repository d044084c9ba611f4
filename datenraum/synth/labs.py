"""Laboratory values that follow a patient's diagnoses.

Each patient gets stable personal baselines (a diabetic keeps a high HbA1c, a patient with stage 4
kidney disease keeps a high creatinine) and every measurement adds noise on top, so that values are
correlated within a patient and with the coded diagnoses, as real cohort queries expect. Acute events
raise inflammation and cardiac markers on admission, decaying over the stay.
"""

from __future__ import annotations

import math
from random import Random

#: Peak CRP (mg/L) on admission for an acute event, by diagnosis key; missing keys mean no inflammation.
_CRP_PEAK = {
    "pneumonia": 120.0,
    "covid": 70.0,
    "sepsis": 220.0,
    "uti": 60.0,
    "appendicitis": 80.0,
    "gallstones": 20.0,
    "gastroenteritis": 30.0,
    "hip_fracture": 40.0,
    "pulmonary_embolism": 30.0,
    "myocardial_infarction": 10.0,
    "birth": 15.0,
}
#: Extra leukocytes (10³/µL) on admission for an acute event.
_LEUKOCYTOSIS = {
    "pneumonia": 6.0,
    "sepsis": 10.0,
    "uti": 4.0,
    "appendicitis": 6.0,
    "covid": -1.5,
    "hip_fracture": 3.0,
}
_CKD_CREATININE = {"N18.3": 1.9, "N18.4": 3.2, "N18.5": 6.0}
_CANCERS = frozenset({"breast_cancer", "lung_cancer", "colorectal_cancer", "prostate_cancer"})


def lognormal(rng: Random, median: float, sigma: float) -> float:
    """Draw from a log-normal distribution given by its median (faster than ``Random.lognormvariate``)."""
    return median * math.exp(rng.gauss(0.0, sigma))


class LabModel:
    """Draws laboratory values for one patient."""

    __slots__ = (
        "_alt",
        "_creatinine",
        "_female",
        "_glucose_shift",
        "_hba1c",
        "_hemoglobin",
        "_ldl",
        "_ntprobnp",
        "_platelets",
        "_potassium",
        "_rng",
        "_sodium",
        "_troponin",
        "_tsh",
        "diabetic",
    )

    def __init__(self, rng: Random, female: bool, age: int, diagnoses: dict[str, str]) -> None:
        """``diagnoses`` maps the patient's diagnosis keys to the ICD code chosen for them."""
        self._rng = rng
        self._female = female
        gauss = rng.gauss
        has = diagnoses.__contains__

        if has("diabetes_t1"):
            hba1c = gauss(7.8, 1.0)
        elif has("diabetes_t2"):
            hba1c = gauss(7.3, 1.1)
        else:
            hba1c = gauss(5.4, 0.3)
        self._hba1c = max(4.3, hba1c)
        self.diabetic = has("diabetes_t1") or has("diabetes_t2")
        # Without diabetes, random plasma glucose sits below the HbA1c-derived average glucose.
        self._glucose_shift = 0.0 if self.diabetic else -12.0

        # Children's creatinine grows with muscle mass.
        creatinine = 0.3 + 0.025 * age if age < 18 else (0.75 if female else 0.95)
        creatinine *= _CKD_CREATININE.get(diagnoses.get("ckd", ""), 1.0)
        self._creatinine = creatinine * max(0.6, gauss(1.0, 0.12))

        hemoglobin = 13.2 if female else 14.6
        if age < 18:
            hemoglobin = 12.8
        if has("ckd"):
            hemoglobin -= 1.0 if diagnoses["ckd"] == "N18.3" else 2.0
        if has("anemia"):
            hemoglobin -= 3.0
        if not _CANCERS.isdisjoint(diagnoses):
            hemoglobin -= 0.8
        self._hemoglobin = gauss(hemoglobin, 0.8)

        if has("chd") or has("myocardial_infarction"):
            self._ldl = gauss(95.0, 25.0)
        elif has("hyperlipidemia"):
            self._ldl = gauss(160.0, 35.0)
        else:
            self._ldl = gauss(120.0, 28.0)

        # Treated hypothyroidism scatters widely around a slightly higher TSH.
        self._tsh = lognormal(rng, 2.5, 0.6) if has("hypothyroidism") else lognormal(rng, 1.6, 0.4)
        cardiorenal = (2.0 if has("ckd") else 1.0) * (2.0 if has("heart_failure") else 1.0)
        self._ntprobnp = (
            lognormal(rng, 2200.0, 0.8) if has("heart_failure") else lognormal(rng, 50.0 + 2.0 * age, 0.6)
        ) * (2.0 if has("ckd") else 1.0)
        self._troponin = lognormal(rng, 4.0 + 0.12 * age, 0.4) * cardiorenal
        liver = 1.8 if has("cirrhosis") or has("alcohol") else 1.0
        self._alt = lognormal(rng, 20.0 if female else 26.0, 0.3) * liver
        self._platelets = gauss(130.0 if has("cirrhosis") else 250.0, 45.0)
        self._sodium = 137.0 if has("heart_failure") or has("cirrhosis") else 139.5
        self._potassium = 4.2 + (0.5 if diagnoses.get("ckd") in ("N18.4", "N18.5") else 0.0)

    def measure(self, key: str, event: str | None, stay_day: int) -> float:
        """Draw one value of test ``key`` on day ``stay_day`` of a contact caused by ``event`` (if any)."""
        rng = self._rng
        if key == "hemoglobin":
            return max(5.0, rng.gauss(self._hemoglobin - (0.8 if event == "hip_fracture" else 0.0), 0.5))
        if key == "leukocytes":
            rise = _LEUKOCYTOSIS.get(event, 0.0) * math.exp(-0.3 * stay_day) if event else 0.0
            return max(0.8, rng.gauss(7.0 + rise, 1.6))
        if key == "crp":
            value = lognormal(rng, 1.8, 0.8)
            peak = _CRP_PEAK.get(event) if event else None
            if peak:
                value += peak * math.exp(-0.35 * stay_day) * lognormal(rng, 1.0, 0.45)
            return value
        if key == "creatinine":
            kidney_injury = 1.4 * math.exp(-0.4 * stay_day) if event == "sepsis" else 0.0
            return max(0.2, self._creatinine * (1.0 + kidney_injury) * rng.gauss(1.0, 0.06))
        if key == "glucose":
            average = 28.7 * self._hba1c - 46.7 + self._glucose_shift
            return max(40.0, rng.gauss(average + (10.0 if event else 0.0), 22.0 if self.diabetic else 12.0))
        if key == "sodium":
            return rng.gauss(self._sodium, 2.6)
        if key == "potassium":
            return max(2.5, rng.gauss(self._potassium, 0.35))
        if key == "platelets":
            return max(10.0, rng.gauss(self._platelets, 20.0))
        if key == "hba1c":
            return max(4.0, rng.gauss(self._hba1c, 0.25))
        if key == "ldl":
            return max(20.0, rng.gauss(self._ldl, 12.0))
        if key == "troponin":
            value = self._troponin * lognormal(rng, 1.0, 0.2)
            if event == "myocardial_infarction":
                value += lognormal(rng, 600.0, 0.9) * math.exp(-0.25 * stay_day)
            return value
        if key == "ntprobnp":
            return self._ntprobnp * lognormal(rng, 1.0, 0.3)
        if key == "tsh":
            return self._tsh * lognormal(rng, 1.0, 0.2)
        if key == "alt":
            return self._alt * lognormal(rng, 1.0, 0.25)
        if key == "procalcitonin":
            if event == "sepsis":
                return lognormal(rng, 6.0, 1.0) * math.exp(-0.3 * stay_day)
            if event == "pneumonia":
                return lognormal(rng, 0.4, 0.8)
            return lognormal(rng, 0.05, 0.4)
        raise KeyError(key)


def egfr(test_key: str, creatinine: float, age: int, female: bool) -> float:
    """Estimate GFR (mL/min/1.73 m²) from serum creatinine (mg/dL) with the site's formula."""
    if test_key == "egfr_mdrd":
        return 175.0 * creatinine**-1.154 * age**-0.203 * (0.742 if female else 1.0)
    # CKD-EPI 2009 without the ethnicity coefficient, as German laboratories report it.
    kappa, alpha = (0.7, -0.329) if female else (0.9, -0.411)
    ratio = creatinine / kappa
    value = 141.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.209 * 0.993**age
    return value * 1.018 if female else value


def hba1c_ifcc(percent: float) -> float:
    """Convert an HbA1c value from NGSP/DCCT % to IFCC mmol/mol."""
    return (percent - 2.15) * 10.929
