"""The body of ``PUT /v1/holdout`` as a pydantic model: the service validates with it and
publishes its JSON Schema, and ``abtest holdout set`` checks a file with it before the call.

Kept apart from `abtest.holdout`, which the assignment hot path imports without pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, ConfigDict, Field, JsonValue, model_validator

from abtest.holdout import MAX_SHARE, Holdout
from abtest.schemas import ExperimentKey, Strict

MAX_DESCRIPTION: Final = 2000

# "Covers something": the rule `Covers` enforces, stated so the schema publishes it too.
_LISTS_ONE: Final[list[JsonValue]] = [
    {"required": [name], "properties": {name: {"minItems": 1}}}
    for name in ("experiments", "layers")
]


class Covers(Strict):
    """The experiments (by key) and layers (by name) a holdout covers; at least one."""

    model_config = ConfigDict(json_schema_extra={"anyOf": _LISTS_ONE})

    experiments: list[ExperimentKey] = Field(default_factory=list)
    layers: list[ExperimentKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _covers_something(self) -> Covers:
        if not self.experiments and not self.layers:
            raise ValueError('lists no experiment and no layer; use "all" to cover everything')
        return self


def _all_is_none(value: object) -> object:
    # "all" is None below, so that an error inside the lists is named covers.experiments[0]
    # rather than after a member of a "all" | Covers union.
    if value == "all":
        return None
    if value is None or isinstance(value, str):
        raise ValueError('must be "all" or {experiments: [keys], layers: [names]}')
    return value


CoversAll = Annotated[
    Covers | None, BeforeValidator(_all_is_none, json_schema_input_type=Literal["all"] | Covers)
]


class HoldoutBody(Strict):
    """``PUT /v1/holdout``: the global holdout's definition (`abtest.holdout.Holdout`)."""

    name: ExperimentKey = Field(description="A slug; the salt of the holdout draw")
    share: Annotated[float, Field(gt=0, le=MAX_SHARE, allow_inf_nan=False)] = Field(
        description="The fraction of units held out, e.g. 0.03"
    )
    covers: CoversAll = Field(default="all", validate_default=True)
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] = ""

    def holdout(self) -> Holdout:
        """The definition this body sets (duplicate keys in the lists dropped, order kept)."""
        if self.covers is None:
            return Holdout(self.name, self.share, description=self.description)
        lists: dict[str, Any] = {
            name: tuple(dict.fromkeys(getattr(self.covers, name)))
            for name in ("experiments", "layers")
        }
        return Holdout(self.name, self.share, False, description=self.description, **lists)
