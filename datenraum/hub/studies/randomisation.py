"""The concealed randomisation service: the statistician's scheme, allocations on a site's request, audit.

The draws are `datenraum.studies.randomisation`'s permuted blocks (strata: the site and up to three
factors), a pure function of (seed, stratum, position). The hub keeps the seed sealed (`seeds`), counts
the allocations per stratum and stores each one with who asked, when, the stratum and the arm: that row
is the audit trail, and its uniqueness per participant makes a repeated request (a lost answer, a retry)
return the same allocation instead of a second draw.

Only the study's statistician sets the scheme, sees it and the allocation list, and reproduces the whole
sequence, and only by typing the seed in (`reproduce`): the hub never hands the seed or a future
allocation to anyone. A site learns the arm of the participant it enrols, nothing more.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.audit import AuditSource, record
from datenraum.hub.accounts.service import Site, User
from datenraum.hub.db import Clock, SiteRow, utcnow
from datenraum.hub.errors import Conflict, Forbidden, Invalid
from datenraum.hub.studies.access import site_study, study_for
from datenraum.hub.studies.seeds import SeedVault, seed_check, seed_matches
from datenraum.hub.studies.tables import AllocationRow, ArmRow, RandomisationRow, StudyRow, StudySiteRow
from datenraum.protocol.messages import ProtocolError
from datenraum.protocol.studies import (
    Allocation,
    AllocationRequest,
    RecruitmentStatus,
    StratificationFactor,
    StudyRole,
)
from datenraum.studies import randomisation
from datenraum.studies.randomisation import RandomisationError, RandomisationScheme

__all__ = ["MIN_SEED_CHARACTERS", "AllocationEntry", "Randomisations", "SchemeView"]

MIN_SEED_CHARACTERS = 32  # a typed seed; 32 characters of a generated hex seed are 128 bits
MAX_SEQUENCE = 10_000  # per stratum in one reproduction
MAX_EXPORT_PLACES = 500_000  # in all strata of one reproduction: a CSV of some tens of megabytes
MAX_BLOCK_SIZE = 64  # a block is drawn whole for each allocation; trials use blocks of 2 to 12


@dataclass(frozen=True)
class SchemeView:
    """The scheme without its seed: what the statistician sees."""

    block_sizes: tuple[int, ...]
    ratio: tuple[tuple[str, int], ...]
    factors: tuple[tuple[str, tuple[str, ...]], ...]
    set_by: str
    set_at: dt.datetime


@dataclass(frozen=True)
class AllocationEntry:
    allocation_id: str
    site: str
    participant: str
    stratum: str
    position: int
    arm: str
    at: dt.datetime
    by: str


def _scheme(row: RandomisationRow, arm_order: Sequence[str]) -> RandomisationScheme:
    return RandomisationScheme(
        tuple(randomisation.Arm(arm, row.ratio[arm]) for arm in arm_order),
        tuple(row.block_sizes),
        tuple(randomisation.Factor(f["name"], tuple(f["levels"])) for f in row.factors),
    )


def _arm_order(session: Session, study_id: int) -> list[str]:
    return list(
        session.scalars(sa.select(ArmRow.code).where(ArmRow.study_id == study_id).order_by(ArmRow.position))
    )


class Randomisations:
    def __init__(self, sessions: sessionmaker[Session], key_file: Path, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._vault = SeedVault(key_file)
        self._clock = clock

    def set_scheme(
        self,
        user: User,
        code: str,
        block_sizes: Sequence[int],
        ratio: Mapping[str, int],
        factors: Sequence[tuple[str, Sequence[str]]],
        seed: str,
        source: AuditSource,
    ) -> str | None:
        """Set the scheme and seed (the statistician's, before the first allocation). An empty seed: the hub
        draws one and returns it, to be shown to the statistician once; a given one is never returned."""
        generated = None
        if not seed:
            seed = generated = randomisation.new_seed().hex()
        for index, size in enumerate(block_sizes):
            if not 1 <= size <= MAX_BLOCK_SIZE:
                raise Invalid(f"block_sizes[{index}]: from 1 to {MAX_BLOCK_SIZE}")
        if len(seed) < MIN_SEED_CHARACTERS:
            raise Invalid(
                f"seed: at least {MIN_SEED_CHARACTERS} characters, so that nobody can find it by trying"
            )
        now = self._clock()
        with self._sessions.begin() as session:
            study = self._statistician_study(session, user, code, lock=True)
            if study.status != RecruitmentStatus.PLANNED.value:
                raise Conflict("randomisation: the scheme is fixed once recruitment started")
            arms = _arm_order(session, study.id)
            if len(arms) < 2:
                raise Conflict("arms: a randomised study needs two arms at least (set them up first)")
            for arm in ratio:
                if arm not in arms:
                    raise Invalid(f"ratio.{arm}: the study has no arm {arm!r}")
            row = RandomisationRow(
                study_id=study.id,
                block_sizes=list(block_sizes),
                ratio={arm: ratio.get(arm, 1) for arm in arms},
                factors=[{"name": name, "levels": list(levels)} for name, levels in factors],
                seed_sealed=b"",
                seed_check="",
                set_by=user.email,
                set_at=now,
            )
            try:
                for index, (name, levels) in enumerate(factors):
                    StratificationFactor.from_json(
                        {"name": name, "levels": list(levels)}, f"factors[{index}]"
                    )
                _scheme(row, arms)
            except (ProtocolError, RandomisationError) as error:
                raise Invalid(str(error)) from None
            row.seed_sealed = self._vault.seal(study.id, seed.encode())
            row.seed_check = seed_check(seed.encode())
            session.merge(row)
            study.definition_version += 1
            record(session, now, source, "study.randomisation", code, f"blocks {list(block_sizes)}")
        return generated

    def scheme(self, user: User, code: str) -> SchemeView | None:
        with self._sessions() as session:
            study = self._statistician_study(session, user, code)
            row = session.get(RandomisationRow, study.id)
            if row is None:
                return None
            return SchemeView(
                tuple(row.block_sizes),
                tuple(row.ratio.items()),
                tuple((f["name"], tuple(f["levels"])) for f in row.factors),
                row.set_by,
                row.set_at,
            )

    def allocations(self, user: User, code: str) -> list[AllocationEntry]:
        with self._sessions() as session:
            study = self._statistician_study(session, user, code)
            rows = session.execute(
                sa.select(AllocationRow, SiteRow.name)
                .join(SiteRow, SiteRow.id == AllocationRow.site_id)
                .where(AllocationRow.study_id == study.id)
                .order_by(AllocationRow.at, AllocationRow.id)
            ).all()
            return [
                AllocationEntry(r.id, site, r.participant, r.stratum, r.position, r.arm, r.at, r.by)
                for r, site in rows
            ]

    def reproduce(self, user: User, code: str, seed: str, length: int, source: AuditSource) -> str:
        """The sequence of every stratum (the study's sites by the factors' levels), its first `length`
        places with their blocks, and the participant drawn at each place so far, as CSV. Only with the seed."""
        if not 1 <= length <= MAX_SEQUENCE:
            raise Invalid(f"length: from 1 to {MAX_SEQUENCE}")
        with self._sessions.begin() as session:
            study = self._statistician_study(session, user, code)
            row = session.get(RandomisationRow, study.id)
            if row is None:
                raise Conflict("randomisation: the study has no scheme")
            if not seed_matches(seed.encode(), row.seed_check):
                record(session, self._clock(), source, "study.randomisation.reproduce.refused", code)
                raise Forbidden("seed: this is not the study's seed")
            scheme = _scheme(row, _arm_order(session, study.id))
            sites = session.scalars(
                sa.select(SiteRow.name)
                .join(StudySiteRow, StudySiteRow.site_id == SiteRow.id)
                .where(StudySiteRow.study_id == study.id)
                .order_by(SiteRow.name)
            ).all()
            drawn = {
                (r.stratum, r.position): r
                for r in session.scalars(sa.select(AllocationRow).where(AllocationRow.study_id == study.id))
            }
            strata = len(sites) * math.prod(len(f.levels) for f in scheme.factors)
            if strata * length > MAX_EXPORT_PLACES:
                raise Invalid(
                    f"length: {strata} strata by {length} places is more than {MAX_EXPORT_PLACES} in all"
                )
            record(session, self._clock(), source, "study.randomisation.reproduce", code, f"length {length}")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["stratum", "position", "block", "block_size", "arm", "participant", "allocated_at"])
        levels = [[(f.name, level) for level in f.levels] for f in scheme.factors]
        for site in sites:
            for combination in itertools.product(*levels):
                stratum = scheme.stratum(site, dict(combination))
                key = stratum.key().decode()
                position = 0
                for number, block in enumerate(randomisation.blocks(scheme, seed.encode(), stratum, length)):
                    for arm in block:
                        if position >= length:
                            break
                        allocated = drawn.get((key, position))
                        writer.writerow(
                            [
                                key,
                                position,
                                number,
                                len(block),
                                arm,
                                "" if allocated is None else allocated.participant,
                                "" if allocated is None else allocated.at.isoformat(),
                            ]
                        )
                        position += 1
        return out.getvalue()

    def allocate(self, site: Site, code: str, request: AllocationRequest) -> Allocation:
        """The participant's arm: drawn at the first request, the same one at every later request."""
        if request.study_id != code:
            raise Invalid(f"study_id: the request is for {request.study_id!r}, not {code!r}")
        if request.site != site.name:
            raise Invalid(f"site: the request names {request.site!r}, but comes from {site.name!r}")
        now = self._clock()
        with self._sessions.begin() as session:
            # The study's row is locked: draws of one study happen one after the other, so two requests
            # cannot take the same place of a stratum, nor the same participant twice.
            study = site_study(session, site, code)
            existing = session.scalars(
                sa.select(AllocationRow).where(
                    AllocationRow.study_id == study.id, AllocationRow.participant == request.participant
                )
            ).first()
            if existing is not None:
                if existing.site_id != site.id:
                    raise Conflict(f"participant: {request.participant!r} was allocated at another site")
                return Allocation(code, existing.participant, existing.arm, existing.id, existing.at)
            if study.status != RecruitmentStatus.RECRUITING.value:
                raise Conflict(f"status: the study is {study.status}, not recruiting")
            row = session.get(RandomisationRow, study.id)
            if row is None:
                raise Conflict("randomisation: the study is not randomised")
            scheme = _scheme(row, _arm_order(session, study.id))
            try:
                stratum = scheme.stratum(site.name, dict(request.factors))
            except RandomisationError as error:
                raise Invalid(f"factors: {str(error).removeprefix('stratum: ')}") from None
            key = stratum.key().decode()
            position = session.scalar(
                sa.select(sa.func.count()).where(
                    AllocationRow.study_id == study.id, AllocationRow.stratum == key
                )
            )
            arm = randomisation.allocate(
                scheme, self._vault.open(study.id, row.seed_sealed), stratum, position
            )
            allocation_id = str(uuid.uuid4())
            session.add(
                AllocationRow(
                    id=allocation_id,
                    study_id=study.id,
                    site_id=site.id,
                    participant=request.participant,
                    stratum=key,
                    position=position,
                    arm=arm,
                    at=now,
                    by=site.name,
                )
            )
            return Allocation(code, request.participant, arm, allocation_id, now)

    @staticmethod
    def _statistician_study(session: Session, user: User, code: str, *, lock: bool = False) -> StudyRow:
        study, mine = study_for(session, user, code, lock=lock)
        if not any(role is StudyRole.STATISTICIAN for role, _ in mine):
            raise Forbidden("only the study's statistician sees and sets the randomisation")
        return study
