"""The global holdout: a fixed share of units that gets control in every experiment it covers.

Pure: parsing, validation and membership only (the store keeps the definition,
`abtest.holdout_store`; the analysis of the cumulative effect is `analysis.holdout`).

Why a holdout.  Every shipped experiment was judged on its own.  Whether their effects add
up (or cancel, or decay) is measured by keeping a small random share of units away from all
of them: the holdout.  A unit is *in the holdout* when its holdout draw (hash purpose
``holdout`` with the holdout's ``name`` as the salt, `abtest.hashing`) falls below the share.
That draw is its own hash computation, so membership is independent of every experiment's
traffic, layer and variant draws, and of the unit's attributes.

What a member gets.  In an experiment the holdout covers, a member gets the control variant
with reason ``holdout`` (never a treatment): while the experiment runs, after the eligibility
checks (targeting, layer, traffic) that every unit goes through, so members are the same
kind of units as the others; once the experiment is shipped, instead of the winner (shipped
experiments serve the winner to everyone except the holdout).  Units outside the holdout are
assigned as usual.  QA overrides (``forced``) still win.

The holdout's exposure log.  The first time a unit meets a covered, live experiment during
the holdout (an eligible unit of a running one, or any unit of a shipped one), one entry is
written to the holdout stream of that experiment: the unit, whether it is a member, the
time and the holdout's name.  Both sides are logged the same way, so "members" and "the
rest" are comparable groups; `analysis.holdout` compares them on chosen metrics.

Where the definition lives.  One global `Holdout` in Redis (``PUT /v1/holdout``), versioned
and audited like experiments; each covered experiment carries a `HoldoutRef` snapshot
(name and share) in its own config, written as a new, audited version of that experiment,
so assignment stays a pure function of the experiment and the unit, the worker's config
version check covers the holdout too, and the Python client's local evaluation applies it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from abtest import hashing
from abtest.errors import Problem

MAX_SHARE: Final = 0.5  # above it the "holdout" would be the majority: a mistake, not a plan
_SLUG: Final = re.compile(
    r"[a-z0-9][a-z0-9_.-]{0,63}"
)  # with fullmatch: "$" would accept a newline


@dataclass(frozen=True)
class HoldoutRef:
    """What one experiment needs of the holdout to assign: its name (the salt) and share."""

    name: str
    share: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {"name": self.name, "share": self.share}

    @property
    def threshold(self) -> int:
        """Members have a holdout draw below this bucket bound."""
        return hashing.threshold(self.share)

    def contains(self, unit_id: str) -> bool:
        """True when ``unit_id`` is a member of the holdout."""
        return hashing.bucket("holdout", self.name, unit_id) < self.threshold


@dataclass(frozen=True)
class Holdout:
    """The global holdout's definition; build it with `from_dict`.

    ``covers_all`` or the experiment keys and layer names it covers (an experiment is
    covered when its key is listed or its layer is).
    """

    name: str
    share: float
    covers_all: bool = True
    experiments: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Holdout:
        """The stored definition that `to_dict` wrote.  Not a validator: a request's body is
        checked by `abtest.holdout_requests.HoldoutBody`, the one shape the service both
        validates and publishes, before anything is stored."""
        covers = data.get("covers", "all")
        lists = {} if covers == "all" else {
            name: tuple(covers.get(name, ())) for name in ("experiments", "layers")
        }  # fmt: skip
        return cls(str(data["name"]), float(data["share"]), covers == "all",
                   description=str(data.get("description", "")), **lists)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form; `from_dict` restores an equal holdout."""
        covers: Any = "all" if self.covers_all else {
            "experiments": list(self.experiments), "layers": list(self.layers)
        }  # fmt: skip
        return {"name": self.name, "share": self.share, "covers": covers,
                "description": self.description}  # fmt: skip

    @property
    def ref(self) -> HoldoutRef:
        """The snapshot each covered experiment carries."""
        return HoldoutRef(self.name, self.share)

    def covers(self, experiment_key: str, layer: str | None) -> bool:
        """True when the experiment (key, layer name or None) is covered."""
        return (
            self.covers_all
            or experiment_key in self.experiments
            or (layer is not None and layer in self.layers)
        )


def ref_for(holdout: Holdout | None, experiment_key: str, layer: str | None) -> HoldoutRef | None:
    """The snapshot an experiment should carry under ``holdout`` (None: not covered)."""
    if holdout is None or not holdout.covers(experiment_key, layer):
        return None
    return holdout.ref


def moves_assigned_units(old: HoldoutRef | None, new: HoldoutRef | None) -> bool:
    """True when going from ``old`` to ``new`` makes members of units that may already have
    a variant (a new holdout, another name, a larger share): they would now get control."""
    return new is not None and (old is None or old.name != new.name or new.share > old.share)


def parse_ref(value: object, problems: list[Problem]) -> HoldoutRef | None:
    """The `HoldoutRef` of an experiment config (``{name, share}`` or null)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"name", "share"}:
        problems.append(Problem("holdout", "must be {name, share} or null"))
        return None
    name, share = value["name"], value["share"]
    if not isinstance(name, str) or not _SLUG.fullmatch(name):
        problems.append(Problem("holdout.name", "must be a slug"))
        return None
    if not (isinstance(share, int | float) and not isinstance(share, bool)
            and math.isfinite(share) and 0 < share <= MAX_SHARE):  # fmt: skip
        problems.append(Problem("holdout.share", f"must be a fraction in (0, {MAX_SHARE}]"))
        return None
    return HoldoutRef(name, float(share))
