"""Pick one student per scenario under the user's budget, and say why.

A build produces several students (families and compressions); the user wants one. The pick is
made on VALIDATION macro-F1 (`val_macro_f1`), never on test: choosing on test would tune the
choice to the test set and make the reported test F1 optimistic.

Policy, in order:

1. The F1 floor is the user's `min_f1`, or else the teacher's validation macro-F1 minus
   `default_tolerance` (DEFAULT_TOLERANCE, 1 point): without a floor "fastest" would always be
   the tiniest, worst model.
2. Keep the students within `max_latency_ms` (batch-1 p50), `max_size_mb` and the floor.
3. Among those: if the user gave a latency or size budget but no `min_f1`, they said how fast
   or small it must be, so spend the rest on accuracy: the most accurate (ties: faster).
   With `min_f1`, the fastest above it (ties: more accurate): accuracy was pinned by the user.
   With the default floor, the fastest student at or above the teacher's validation macro-F1,
   and only when none reaches it the fastest within the tolerance. Validation macro-F1 on a
   few hundred texts moves by points from one split to the next, so a student measured just
   inside the tolerance is about as likely to be more than a point below the teacher on new
   data as not (measured: static-embedding on interface::, 0.1 point below the teacher on
   validation and 3.7 below on test); one that matches the teacher has that point in hand.
4. If none is left: the most accurate student within the latency/size limits, or if none meets
   those either, the fastest overall. The reason then says which limit was missed, by how much.

Sizes are decimal megabytes (1 MB = 10^6 bytes), as in the report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modelfab.errors import InputError

DEFAULT_TOLERANCE = 0.01  # 1 point of macro-F1 below the teacher still counts as "as good"

LATENCY = "latency_b1_p50_ms"
VAL_F1 = "val_macro_f1"
SIZE = "size_bytes"
MB = 1e6
EPS = 1e-9  # 0.655 - 0.01 is 0.6449999...; a student at 0.645 is within 1 point, not below

POLICY_FASTEST = "fastest-above-f1-floor"
POLICY_FASTEST_AT_PARITY = "fastest-at-teacher-parity"
POLICY_MOST_ACCURATE = "most-accurate-within-budget"
POLICY_FALLBACK_ACCURATE = "fallback-most-accurate-within-limits"
POLICY_FALLBACK_FASTEST = "fallback-fastest"


# --------------------------------------------------------------------------- budget


def _check_positive(name: str, value: Any, unit: str) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a positive number of {unit}, not {value!r}")


@dataclass(frozen=True)
class Budget:
    """What the user will accept; None means "no limit" for that axis.

    `min_f1` is a fraction (0.8 = 80 % macro-F1), checked against validation macro-F1.
    """

    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    min_f1: float | None = None

    def __post_init__(self) -> None:
        if self.max_latency_ms is not None:
            _check_positive("max_latency_ms", self.max_latency_ms, "milliseconds")
        if self.max_size_mb is not None:
            _check_positive("max_size_mb", self.max_size_mb, "megabytes")
        if self.min_f1 is not None:
            value = self.min_f1
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not 0 < value <= 1:
                raise InputError(
                    f"min_f1 must be a fraction in (0, 1] (0.8 = 80 % macro-F1), not {value!r}"
                )

    @property
    def is_set(self) -> bool:
        """True when the user gave at least one limit."""
        return any(v is not None for v in (self.max_latency_ms, self.max_size_mb, self.min_f1))

    @property
    def limits_resources(self) -> bool:
        """True when latency or size is limited (which turns the policy towards accuracy)."""
        return self.max_latency_ms is not None or self.max_size_mb is not None


# --------------------------------------------------------------------------- Pareto front


def finite_or_none(value: Any) -> float | None:
    """A finite float, or None for missing, boolean, non-numeric, NaN or infinite values."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def pareto_front(records: Iterable[dict], x: str = LATENCY, y: str = VAL_F1) -> list[dict]:
    """The records no other record beats: lower `x` is better, higher `y` is better.

    A record is dominated when another is at least as good on both axes and strictly better on
    one. Exact ties (same x and y) do not dominate each other, so both stay. Records with a
    missing or non-finite x or y are left out: they cannot be placed. The result is sorted by
    x ascending (then y descending), i.e. in the order a step line is drawn.
    """
    points = [(r, finite_or_none(r.get(x)), finite_or_none(r.get(y))) for r in records]
    placed = [(r, px, py) for r, px, py in points if px is not None and py is not None]
    placed.sort(key=lambda p: (p[1], -p[2]))  # stable: input order breaks exact ties
    front: list[dict] = []
    best_y = -math.inf  # highest y among the records with a smaller-or-equal x seen so far
    best_at: tuple[float, float] | None = None
    for record, px, py in placed:
        if py > best_y or (px, py) == best_at:
            front.append(record)
            if py > best_y:
                best_y, best_at = py, (px, py)
    return front


# --------------------------------------------------------------------------- formatting


def _ms(value: float | None) -> str:
    if value is None:
        return "no latency"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _mb(size_bytes: float | None) -> str:
    if size_bytes is None:
        return "no size"
    mb = size_bytes / MB
    return f"{mb:,.0f} MB" if mb >= 100 else f"{mb:.3g} MB"


def _f1(value: float | None) -> str:
    return "no validation macro-F1" if value is None else f"{value:.3f}"


def _points(delta: float) -> str:
    """A macro-F1 difference (fraction) in points: 0.01 -> "1.0 point"."""
    pts = delta * 100
    return f"{pts:.1f} point" + ("" if round(pts, 1) == 1.0 else "s")


def _limit(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------- choice


@dataclass
class Choice:
    """The picked student and everything needed to explain the pick in the model card."""

    record: dict
    reason: str
    front: list[str]  # variants on the (p50 latency, validation macro-F1) front of the students
    rejected: dict[str, str]  # variant -> why it failed the budget or the F1 floor
    policy: str
    budget: Budget = field(default_factory=Budget)
    f1_floor: float | None = None  # the floor actually applied (min_f1 or teacher - tolerance)


def _students(candidates: Sequence[dict]) -> list[dict]:
    if not candidates:
        raise InputError("no candidates to choose from: the build produced no benchmarked models")
    students = [r for r in candidates if r.get("role") == "student"]
    if not students:
        roles = sorted({str(r.get("role")) for r in candidates})
        raise InputError(f"no student among the {len(candidates)} candidates (roles: {roles})")
    scenarios = sorted({str(r.get("scenario")) for r in students})
    if len(scenarios) > 1:
        raise InputError(f"choose() takes one scenario at a time, got {scenarios}")
    names = [str(r.get("variant")) for r in students]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"variant names must be unique within a scenario: {duplicates}")
    return students


def _fastest_key(record: dict) -> tuple[float, float]:
    """Sort key: lower latency first, then higher validation F1; missing values last."""
    lat, f1 = finite_or_none(record.get(LATENCY)), finite_or_none(record.get(VAL_F1))
    return (math.inf if lat is None else lat, math.inf if f1 is None else -f1)


def _accurate_key(record: dict) -> tuple[float, float]:
    """Sort key: higher validation F1 first, then lower latency; missing values last."""
    lat, f1 = finite_or_none(record.get(LATENCY)), finite_or_none(record.get(VAL_F1))
    return (math.inf if f1 is None else -f1, math.inf if lat is None else lat)


def _limit_misses(record: dict, budget: Budget) -> list[str]:
    """Why `record` fails the latency and size limits, with the amount; empty if it meets them."""
    misses = []
    if budget.max_latency_ms is not None:
        lat = finite_or_none(record.get(LATENCY))
        if lat is None:
            misses.append(
                f"no p50 latency measured (max_latency_ms {_limit(budget.max_latency_ms)})"
            )
        elif lat > budget.max_latency_ms:
            misses.append(
                f"p50 {_ms(lat)} is {_ms(lat - budget.max_latency_ms)} over "
                f"max_latency_ms {_limit(budget.max_latency_ms)}"
            )
    if budget.max_size_mb is not None:
        size = finite_or_none(record.get(SIZE))
        if size is None:
            misses.append(f"no size measured (max_size_mb {_limit(budget.max_size_mb)})")
        elif size > budget.max_size_mb * MB:
            misses.append(
                f"size {_mb(size)} is {_mb(size - budget.max_size_mb * MB)} over "
                f"max_size_mb {_limit(budget.max_size_mb)}"
            )
    return misses


@dataclass(frozen=True)
class _Floor:
    """The F1 floor in force and how to name it in a sentence."""

    value: float
    min_f1: float | None  # set when the user gave it
    teacher_f1: float | None = None
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def name(self) -> str:
        if self.min_f1 is not None:
            return f"min_f1 {_limit(self.min_f1)}"
        return (
            f"the F1 floor {self.value:.3f} (the teacher's {_f1(self.teacher_f1)} "
            f"minus {_points(self.tolerance)})"
        )

    def met_by(self, f1: float | None) -> str:
        """How a passing validation F1 relates to the floor, e.g. "is within 1.0 point of ..."."""
        if self.min_f1 is not None:
            return f"is at or above min_f1 {_limit(self.min_f1)}"
        assert self.teacher_f1 is not None and f1 is not None
        if f1 >= self.teacher_f1:
            return f"is at or above the teacher's {_f1(self.teacher_f1)}"
        return f"is within {_points(self.tolerance)} of the teacher's {_f1(self.teacher_f1)}"

    def at_parity(self, records: list[dict]) -> list[dict]:
        """The records whose validation F1 is at or above the teacher's; none under min_f1,
        where the user's floor replaces the teacher's."""
        if self.teacher_f1 is None:
            return []
        teacher_f1 = self.teacher_f1
        return [
            r
            for r in records
            if (f1 := finite_or_none(r.get(VAL_F1))) is not None and f1 >= teacher_f1 - EPS
        ]

    def miss(self, record: dict) -> str | None:
        """Why `record` fails the floor, with the shortfall in points; None if it meets it."""
        f1 = finite_or_none(record.get(VAL_F1))
        if f1 is None:
            return f"no validation macro-F1 to check against {self.name}"
        if f1 < self.value - EPS:
            return f"validation macro-F1 {_f1(f1)} is {_points(self.value - f1)} below {self.name}"
        return None


def _floor(budget: Budget, teacher: dict, tolerance: float) -> _Floor:
    if budget.min_f1 is not None:
        return _Floor(float(budget.min_f1), float(budget.min_f1))
    teacher_f1 = finite_or_none((teacher or {}).get(VAL_F1))
    if teacher_f1 is None:
        raise InputError(
            "the teacher has no val_macro_f1, so there is no default F1 floor; "
            "benchmark the teacher on the validation split or give min_f1"
        )
    return _Floor(teacher_f1 - tolerance, None, teacher_f1, float(tolerance))


def _versus_teacher(record: dict, teacher: dict) -> str:
    """ "0.21 ms vs 27.1 ms for the teacher" (batch-1 p50), or what is known of it."""
    mine = finite_or_none(record.get(LATENCY))
    if mine is None:
        return "its latency was not measured"
    theirs = finite_or_none((teacher or {}).get(LATENCY))
    return _ms(mine) if theirs is None else f"{_ms(mine)} vs {_ms(theirs)} for the teacher"


def _budget_text(budget: Budget) -> str:
    parts = []
    if budget.max_latency_ms is not None:
        parts.append(f"max_latency_ms {_limit(budget.max_latency_ms)}")
    if budget.max_size_mb is not None:
        parts.append(f"max_size_mb {_limit(budget.max_size_mb)}")
    return " and ".join(parts)


def choose(
    candidates: list[dict],
    budget: Budget,
    teacher: dict,
    default_tolerance: float = DEFAULT_TOLERANCE,
) -> Choice:
    """Pick one student of one scenario under `budget` (see the module docstring for the policy).

    `candidates` may hold the teacher and baseline too; only role "student" records compete.
    `teacher` supplies the default F1 floor (its `val_macro_f1`) and the latency the reason is
    compared with. The records are not changed: marking `chosen` is the caller's job.
    """
    if not (isinstance(default_tolerance, int | float) and 0 <= default_tolerance < 1):
        raise InputError(
            f"default_tolerance must be a fraction in [0, 1), not {default_tolerance!r}"
        )
    students = _students(candidates)
    floor = _floor(budget, teacher, default_tolerance)
    front = [str(r.get("variant")) for r in pareto_front(students)]

    limit_misses = {id(r): _limit_misses(r, budget) for r in students}
    floor_misses = {id(r): floor.miss(r) for r in students}
    rejected: dict[str, str] = {}
    for r in students:
        why = limit_misses[id(r)] + [m for m in [floor_misses[id(r)]] if m]
        if why:
            rejected[str(r.get("variant"))] = "; ".join(why)
    passing = [r for r in students if str(r.get("variant")) not in rejected]

    def done(record: dict, policy: str, reason: str) -> Choice:
        return Choice(record, reason, front, rejected, policy, budget, floor.value)

    limits = _budget_text(budget)
    if passing:
        if budget.limits_resources and budget.min_f1 is None:
            best = min(passing, key=_accurate_key)
            f1 = finite_or_none(best.get(VAL_F1))
            reason = (
                f"most accurate student within {limits}: validation macro-F1 {_f1(f1)} "
                f"{floor.met_by(f1)}; {_versus_teacher(best, teacher)}"
            )
            return done(best, POLICY_MOST_ACCURATE, reason)
        at_parity = floor.at_parity(passing)
        best = min(at_parity or passing, key=_fastest_key)
        f1 = finite_or_none(best.get(VAL_F1))
        reason = (
            f"fastest student whose validation macro-F1 {_f1(f1)} {floor.met_by(f1)}"
            + (f", within {limits}" if limits else "")
            + ("" if at_parity or floor.min_f1 is not None else " (none reaches the teacher's)")
            + f"; {_versus_teacher(best, teacher)}"
        )
        return done(best, POLICY_FASTEST_AT_PARITY if at_parity else POLICY_FASTEST, reason)

    within_limits = [r for r in students if not limit_misses[id(r)]]
    if within_limits:
        best = min(within_limits, key=_accurate_key)
        f1 = finite_or_none(best.get(VAL_F1))
        short = (
            "no validation macro-F1"
            if f1 is None
            else f"validation macro-F1 {_f1(f1)}, {_points(floor.value - f1)} short"
        )
        reason = (
            f"no student meets {floor.name}; picked the most accurate"
            + (f" within {limits}" if limits else "")
            + f": {short}; {_versus_teacher(best, teacher)}"
        )
        return done(best, POLICY_FALLBACK_ACCURATE, reason)

    best = min(students, key=_fastest_key)
    misses = limit_misses[id(best)] + [m for m in [floor_misses[id(best)]] if m]
    reason = f"no student is within {limits}; picked the fastest overall: " + "; ".join(misses)
    return done(best, POLICY_FALLBACK_FASTEST, reason)


def card_entry(choice: Choice) -> dict:
    """The choice as a JSON-ready dict for the model card: what was asked, what was picked, why."""
    budget: dict[str, Any] = asdict(choice.budget)
    budget["f1_floor"] = None if choice.f1_floor is None else float(choice.f1_floor)
    return {
        "policy": choice.policy,
        "reason": choice.reason,
        "budget": budget,
        "front": list(choice.front),
        "rejected": dict(choice.rejected),
        "chosen_variant": str(choice.record.get("variant")),
    }
