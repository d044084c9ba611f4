"""GLM families and links (R's and statsmodels' definitions), vectorised over numpy arrays.

A family gives the variance function V(mu), the unit deviance and whether the dispersion is estimated
(Pearson chi^2 / (n - p): gaussian, Gamma and the quasi families) or fixed at 1 (binomial, poisson).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["FAMILIES", "LINKS", "Family", "Link", "family"]

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Link:
    name: str

    def __call__(self, mu: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            match self.name:
                case "identity":
                    return mu
                case "log":
                    return np.log(mu)
                case "logit":
                    return special.logit(mu)
                case "probit":
                    return special.ndtri(mu)
                case "cloglog":
                    return np.log(-np.log1p(-mu))
                case "inverse":
                    return 1.0 / mu
        raise ValueError(self.name)

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            match self.name:
                case "identity":
                    return eta
                case "log":
                    return np.exp(eta)
                case "logit":
                    return special.expit(eta)
                case "probit":
                    return special.ndtr(eta)
                case "cloglog":
                    return -np.expm1(-np.exp(eta))
                case "inverse":
                    return 1.0 / eta
        raise ValueError(self.name)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """d mu / d eta."""
        with np.errstate(all="ignore"):
            match self.name:
                case "identity":
                    return np.ones_like(eta)
                case "log":
                    return np.exp(eta)
                case "logit":
                    p = special.expit(eta)
                    return p * (1.0 - p)
                case "probit":
                    return np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)
                case "cloglog":
                    return np.exp(eta - np.exp(eta))
                case "inverse":
                    return -1.0 / (eta * eta)
        raise ValueError(self.name)


LINKS = ("identity", "log", "logit", "probit", "cloglog", "inverse")


def _xlogy(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return special.xlogy(y, x)


@dataclass(frozen=True)
class Family:
    name: str
    link: Link
    variance_kind: str  # "constant", "mu", "mu(1-mu)", "mu^2"
    estimated_dispersion: bool
    links: tuple[str, ...]

    @property
    def binary_response(self) -> bool:
        return self.variance_kind == "mu(1-mu)"

    @property
    def count_response(self) -> bool:
        return self.variance_kind == "mu"

    def variance(self, mu: np.ndarray) -> np.ndarray:
        match self.variance_kind:
            case "constant":
                return np.ones_like(mu)
            case "mu":
                return mu
            case "mu(1-mu)":
                return mu * (1.0 - mu)
            case _:
                return mu * mu

    def clean_mu(self, mu: np.ndarray) -> np.ndarray:
        if self.variance_kind == "mu(1-mu)":
            return np.clip(mu, _EPS, 1.0 - _EPS)
        if self.variance_kind in ("mu", "mu^2"):
            return np.maximum(mu, _EPS)
        return mu

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            match self.variance_kind:
                case "constant":
                    return (y - mu) ** 2
                case "mu":
                    return 2.0 * (_xlogy(y, y / mu) - (y - mu))
                case "mu(1-mu)":
                    if np.all((y == 0) | (y == 1)):  # 0/1 response: the common case, quicker
                        return -2.0 * np.log(np.where(y == 1, mu, 1.0 - mu))
                    return 2.0 * (_xlogy(y, y / mu) + _xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
                case _:
                    return 2.0 * ((y - mu) / mu - np.log(y / mu))

    def valid_response(self, y: np.ndarray) -> bool:
        match self.variance_kind:
            case "mu":
                return bool(np.all(y >= 0))
            case "mu(1-mu)":
                return bool(np.all((y >= 0) & (y <= 1)))
            case "mu^2":
                return bool(np.all(y > 0))
        return True

    def to_json(self) -> dict[str, str]:
        return {"family": self.name, "link": self.link.name}


# name -> (variance, dispersion estimated, allowed links (first = default))
FAMILIES: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "gaussian": ("constant", True, ("identity", "log", "inverse")),
    "binomial": ("mu(1-mu)", False, ("logit", "probit", "cloglog", "log")),
    "poisson": ("mu", False, ("log", "identity")),
    "Gamma": ("mu^2", True, ("inverse", "log", "identity")),
    "quasibinomial": ("mu(1-mu)", True, ("logit", "probit", "cloglog", "log")),
    "quasipoisson": ("mu", True, ("log", "identity")),
    "quasigamma": ("mu^2", True, ("log", "inverse", "identity")),
}
_ALIASES = {"gamma": "Gamma"}


def family(name: str, link: str | None = None) -> Family:
    """The family `name` with `link` (its default link if None); ValueError naming the choices."""
    name = _ALIASES.get(name, name)
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r} (known: {', '.join(FAMILIES)})")
    variance, estimated, links = FAMILIES[name]
    link = link or links[0]
    if link not in links:
        raise ValueError(f"family {name} takes the links {', '.join(links)}, not {link!r}")
    return Family(name, Link(link), variance, estimated, links)
