"""The two kinds of declared model every contract builds on, and one way of reporting what is wrong with one.

- :class:`StrictModel`: unknown fields are errors. Bundles, settings and configuration files are written by
  this code or by a person, so an unknown field is a typo, a hand edit or a foreign file, and is refused by name.
- :class:`Message`: unknown fields are kept. A wire message from a newer runtime still reads in an older display.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Unknown fields are errors; values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class Message(BaseModel):
    """A wire message: readers keep fields they do not know, so displays survive a newer runtime."""

    model_config = ConfigDict(extra="allow")


def validation_problems(exc: ValidationError) -> str:
    """One line per problem: the dotted field and what is wrong with it."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
    )
