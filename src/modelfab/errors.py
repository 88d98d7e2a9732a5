"""User-facing errors: one clear line and a specific exit code, never a deep traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


class ModelfabError(Exception):
    """Base class for errors that the CLI prints as one line and exits with `exit_code`."""

    exit_code = 1


class InputError(ModelfabError):
    """Bad user input: missing file or field, empty or undecodable data, unusable labels."""

    exit_code = 2


class NotFoundError(ModelfabError):
    """A named dataset, scenario, model or bundle does not exist."""

    exit_code = 3


class IntegrityError(ModelfabError):
    """An artifact does not match its manifest or checksum."""

    exit_code = 4


class EnvironmentProblem(ModelfabError):
    """Something the machine lacks (a model package, an apt index) that the user can fix."""

    exit_code = 5


def validated(model: type[M], data: object, what: str, show_input: bool = False) -> M:
    """`model.model_validate(data)`, its first problem turned into one InputError line:
    "<what> <field path>[=<input>]: <message>"."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        value = f"={first.get('input')!r}" if show_input and where else ""
        raise InputError(f"{what} {where}{value}: {first['msg']}".replace(" :", ":")) from None
