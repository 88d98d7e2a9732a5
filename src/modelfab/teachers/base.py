"""The teacher plugin family: a foundation model that turns inputs into feature vectors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Teacher(Protocol):
    """A frozen feature extractor. `id` changes whenever its outputs could change."""

    id: str
    dim: int

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """(N, dim) float32 features, in the order of `texts`."""
        ...


_TEACHERS: dict[str, Callable[..., Teacher]] = {}


def register_teacher(name: str, factory: Callable[..., Teacher]) -> None:
    """Register a teacher factory under `name`; a name can be registered once."""
    if name in _TEACHERS:
        raise ValueError(f"teacher {name!r} is already registered")
    _TEACHERS[name] = factory


def teacher_names() -> list[str]:
    return sorted(_TEACHERS)


def get_teacher_factory(name: str) -> Callable[..., Teacher]:
    from modelfab.errors import InputError

    if name not in _TEACHERS:
        raise InputError(f"unknown teacher kind {name!r}; known: {', '.join(teacher_names())}")
    return _TEACHERS[name]
