"""The experiment model: a frozen, validated definition built from a plain dict or JSON.

Teams keep these definitions in git; `Experiment.from_dict` checks every rule and raises
`InvalidConfig` listing every problem with the field it concerns, and never repairs a
definition silently.  `Experiment.to_dict` writes every field, defaults included, so that
``Experiment.from_dict(e.to_dict()) == e`` (a lossless JSON round trip).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from abtest.errors import InvalidConfig, InvalidInput, Problem
from abtest.hashing import BUCKET_SPACE
from abtest.holdout import HoldoutRef, parse_ref
from abtest.json_input import has_surrogate, loads, unsafe_value
from abtest.rollout_plan import RolloutPlan, parse_rollout_plan, rollout_plan_problems
from abtest.targeting import OPERATORS, Rule

# Names are checked with ``fullmatch``: ``re.match`` with ``$`` would accept a trailing
# newline.  The pattern texts are also what the OpenAPI schema publishes.
SLUG_PATTERN: Final = r"[a-z0-9][a-z0-9_.-]{0,63}"
SLUG: Final = re.compile(SLUG_PATTERN)
MAX_UNIT_ID_LENGTH: Final = 256
UNIT_ID_PATTERN: Final = r"[^\x00]*"  # plus 1 to MAX_UNIT_ID_LENGTH characters
METRIC_NAME_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
_METRIC_NAME: Final = re.compile(METRIC_NAME_PATTERN)
_QUANTILE_SUFFIX: Final = re.compile(r"p(\d{1,2}(\.\d+)?)")


class Status(StrEnum):
    """Lifecycle of an experiment: draft -> running -> stopped | shipped | rolled_back.

    ``rolled_back``: a guarded rollout (or a person) took the new variant away; everyone
    is served control and nobody is an exposure any more.  It is final, like shipped.
    """

    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"
    SHIPPED = "shipped"
    ROLLED_BACK = "rolled_back"


class MetricType(StrEnum):
    """How a metric's events become one number per unit (see `analysis`)."""

    BINOMIAL = "binomial"  # unit had at least one event
    COUNT = "count"  # events per unit
    SUM = "sum"  # sum of values per unit
    RATIO = "ratio"  # name "num/den": sum of num over sum of den, per unit
    QUANTILE = "quantile"  # name "metric:p95": a quantile of the event values


@dataclass(frozen=True)
class Variant:
    """One arm: a key, a positive weight and the JSON payload the app receives."""

    key: str
    weight: float
    payload: Any = None


@dataclass(frozen=True)
class Metric:
    """A metric the experiment is judged on.

    ``margin`` is the non-inferiority margin of a guardrail, relative to control (0.05: a
    change of up to 5% in the bad direction is tolerated); ``None`` for plain metrics.
    ``unit``, ``cap`` (each unit's value capped at it: count and sum metrics) and
    ``attribution_window_hours`` (only events this long after a unit's first exposure
    count) come from a catalogue definition (`abtest.catalogue`) when
    ``catalogue_version`` names the version the experiment pinned.
    """

    name: str
    type: MetricType
    higher_is_better: bool = True
    margin: float | None = None
    unit: str = ""
    cap: float | None = None
    attribution_window_hours: float | None = None
    catalogue_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form; the catalogue fields only when one is set (so definitions
        written before the catalogue keep their exact form)."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type.value,
            "higher_is_better": self.higher_is_better,
            "margin": self.margin,
        }
        extra = {"unit": self.unit, "cap": self.cap,
                 "attribution_window_hours": self.attribution_window_hours,
                 "catalogue_version": self.catalogue_version}  # fmt: skip
        if any(extra.values()):
            out.update(extra)
        return out


@dataclass(frozen=True)
class Layer:
    """A namespace: the experiment owns the layer slots in ``[start, end)`` of ``[0, 1)``.

    Experiments of one layer whose ranges do not overlap never share a unit.
    """

    name: str
    start: float
    end: float

    def overlaps(self, other: Layer) -> bool:
        """True when both are in one layer and their slot ranges intersect."""
        return self.name == other.name and self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Experiment:
    """A validated experiment definition; build it with `from_dict` or `from_json_file`."""

    key: str
    variants: tuple[Variant, ...]
    seed: str = ""
    description: str = ""
    owner: str = ""
    hypothesis: str = ""
    status: Status = Status.DRAFT
    winner: str | None = None
    control: str = ""
    traffic: float = 1.0
    targeting: tuple[Rule, ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)
    layer: Layer | None = None
    primary_metric: Metric | None = None
    guardrail_metrics: tuple[Metric, ...] = ()
    secondary_metrics: tuple[Metric, ...] = ()
    planned_units_per_variant: int | None = None
    # Relative change of the primary metric the plan is powered for (0.03: 3%); the
    # console's power line and the verdict's sample-size check use it.
    minimum_detectable_effect: float | None = None
    # A guarded rollout of the new variant (`abtest.rollout_plan`); None: none.
    rollout: RolloutPlan | None = None
    # The global holdout covering this experiment, as the service wrote it (`abtest.holdout`);
    # the holdout endpoint owns it: create and update keep the store's, not the body's.
    holdout: HoldoutRef | None = None

    def __post_init__(self) -> None:
        problems = _check(self)
        if problems:
            raise InvalidConfig(problems)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        """Build and validate; raise `InvalidConfig` with every problem found."""
        problems: list[Problem] = []
        if not isinstance(data, Mapping):
            raise InvalidConfig([Problem("$", "an experiment must be a JSON object")])
        unsafe = unsafe_value(data)
        if unsafe is not None:  # nothing that cannot be stored and shown back gets in
            problems.append(unsafe)
        known = set(_FIELDS)
        problems.extend(Problem(str(name), "unknown field") for name in data if name not in known)
        key = data.get("key")
        if not isinstance(key, str):
            problems.append(Problem("key", "required: a slug such as 'ranker-v2'"))
            key = ""
        kwargs: dict[str, Any] = {"key": key}
        for name in ("seed", "description", "owner", "hypothesis", "control"):
            value = data.get(name, "")
            if not isinstance(value, str):
                problems.append(Problem(name, "must be a string"))
            else:
                kwargs[name] = value
        kwargs["variants"] = _parse_variants(data.get("variants"), problems)
        kwargs["status"] = _parse_enum(Status, data.get("status", "draft"), "status", problems)
        winner = data.get("winner")
        if winner is not None and not isinstance(winner, str):
            problems.append(Problem("winner", "must be a variant key or null"))
        else:
            kwargs["winner"] = winner
        traffic = data.get("traffic", 1.0)
        if not _is_number(traffic):
            problems.append(Problem("traffic", "must be a number in (0, 1]"))
        else:
            kwargs["traffic"] = float(traffic)
        kwargs["targeting"] = _parse_rules(data.get("targeting", []), problems)
        kwargs["overrides"] = _parse_overrides(data.get("overrides", {}), problems)
        kwargs["layer"] = _parse_layer(data.get("layer"), problems)
        primary = data.get("primary_metric")
        kwargs["primary_metric"] = (
            None if primary is None else _parse_metric(primary, "primary_metric", problems)
        )
        for name in ("guardrail_metrics", "secondary_metrics"):
            kwargs[name] = _parse_metrics(data.get(name, []), name, problems)
        planned = data.get("planned_units_per_variant")
        if isinstance(planned, float) and planned.is_integer():
            planned = int(planned)  # JSON has one number type: 2.0 is the integer 2
        if planned is not None and (
            isinstance(planned, bool) or not isinstance(planned, int) or planned <= 0
        ):
            problems.append(Problem("planned_units_per_variant", "must be a positive integer"))
        else:
            kwargs["planned_units_per_variant"] = planned
        mde = data.get("minimum_detectable_effect")
        if mde is not None and not _is_number(mde):
            problems.append(Problem("minimum_detectable_effect", _MDE_RULE))
        else:
            kwargs["minimum_detectable_effect"] = None if mde is None else float(mde)
        kwargs["rollout"] = parse_rollout_plan(data.get("rollout"), problems)
        kwargs["holdout"] = parse_ref(data.get("holdout"), problems)
        try:
            experiment = cls(**kwargs)
        except InvalidConfig as exc:
            # Report rule violations too, but only for fields that parsed cleanly.
            blamed = {p.field for p in problems}
            problems.extend(p for p in exc.problems if p.field not in blamed)
        if problems:
            raise InvalidConfig(problems)
        return experiment

    @classmethod
    def from_json(cls, text: str) -> Experiment:
        """Parse JSON text, then `from_dict`."""
        return cls.from_dict(_parse_json(text))

    @staticmethod
    def read_json_file(path: str | Path) -> dict[str, Any]:
        """A config file's JSON object as written (catalogue references unresolved);
        `InvalidConfig` when it is not JSON or not an object."""
        data = _parse_json(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise InvalidConfig([Problem("$", "an experiment must be a JSON object")])
        return data

    @classmethod
    def from_json_file(cls, path: str | Path) -> Experiment:
        """Read a JSON file, then `from_dict`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types; `from_dict` restores an equal experiment."""
        return {
            "key": self.key,
            "seed": self.seed,
            "description": self.description,
            "owner": self.owner,
            "hypothesis": self.hypothesis,
            "status": self.status.value,
            "winner": self.winner,
            "control": self.control,
            "variants": [
                {"key": v.key, "weight": v.weight, "payload": v.payload} for v in self.variants
            ],
            "traffic": self.traffic,
            "targeting": [rule.to_dict() for rule in self.targeting],
            "overrides": dict(self.overrides),
            "layer": None
            if self.layer is None
            else {"name": self.layer.name, "range": [self.layer.start, self.layer.end]},
            "primary_metric": None
            if self.primary_metric is None
            else self.primary_metric.to_dict(),
            "guardrail_metrics": [m.to_dict() for m in self.guardrail_metrics],
            "secondary_metrics": [m.to_dict() for m in self.secondary_metrics],
            "planned_units_per_variant": self.planned_units_per_variant,
            "minimum_detectable_effect": self.minimum_detectable_effect,
            "rollout": None if self.rollout is None else self.rollout.to_dict(),
            "holdout": None if self.holdout is None else self.holdout.to_dict(),
        }

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys), suitable for hashing and diffs."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, indent=2)

    # -- queries ------------------------------------------------------------------------
    def variant(self, key: str) -> Variant:
        """The variant with this key; `KeyError` when there is none."""
        for candidate in self.variants:
            if candidate.key == key:
                return candidate
        raise KeyError(key)

    @property
    def variant_keys(self) -> tuple[str, ...]:
        """Variant keys in definition order."""
        return tuple(v.key for v in self.variants)

    @property
    def weights(self) -> dict[str, float]:
        """Normalised weights by variant key (they sum to 1)."""
        total = sum(v.weight for v in self.variants)
        return {v.key: v.weight / total for v in self.variants}

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """Primary, then guardrail, then secondary metrics."""
        primary = () if self.primary_metric is None else (self.primary_metric,)
        return primary + self.guardrail_metrics + self.secondary_metrics

    def with_changes(self, **changes: Any) -> Experiment:
        """A validated copy with some fields replaced (the original is untouched)."""
        return replace(self, **changes)


_FIELDS: Final = (
    "key", "seed", "description", "owner", "hypothesis", "status", "winner", "control",
    "variants", "traffic", "targeting", "overrides", "layer", "primary_metric",
    "guardrail_metrics", "secondary_metrics", "planned_units_per_variant",
    "minimum_detectable_effect", "rollout", "holdout",
)  # fmt: skip
# A relative effect above 100% is far more often "3" meant as 3% than a planned doubling.
_MDE_RULE: Final = "must be a relative effect in (0, 1], e.g. 0.03 for 3%"


def layer_conflicts(experiments: Iterable[Experiment]) -> list[Problem]:
    """Pairs of experiments whose slot ranges overlap in one layer (they would share units)."""
    layered = [e for e in experiments if e.layer is not None]
    problems = []
    for i, first in enumerate(layered):
        for second in layered[i + 1 :]:
            assert first.layer is not None and second.layer is not None
            if first.key != second.key and first.layer.overlaps(second.layer):
                problems.append(
                    Problem(
                        "layer.range",
                        f"'{first.key}' [{first.layer.start}, {first.layer.end}) overlaps "
                        f"'{second.key}' [{second.layer.start}, {second.layer.end}) "
                        f"in layer '{first.layer.name}'",
                    )
                )
    return problems


def validate_unit_id(unit_id: object, field_name: str = "unit_id") -> Problem | None:
    """A problem when ``unit_id`` is not a usable unit id, else None."""
    if not isinstance(unit_id, str) or not unit_id:
        return Problem(field_name, "must be a non-empty string")
    if len(unit_id) > MAX_UNIT_ID_LENGTH:
        return Problem(field_name, f"longer than {MAX_UNIT_ID_LENGTH} characters")
    if "\x00" in unit_id:
        return Problem(field_name, "must not contain the NUL character")
    if has_surrogate(unit_id):
        return Problem(field_name, "must be valid Unicode text (a lone surrogate is not)")
    return None


# -- validation of a built experiment -----------------------------------------------------
def _check(exp: Experiment) -> list[Problem]:
    problems = []
    if not SLUG.fullmatch(exp.key):
        problems.append(Problem("key", f"'{exp.key}' is not a slug (a-z, 0-9, '_', '-', '.')"))
    if exp.seed and not SLUG.fullmatch(exp.seed):
        problems.append(Problem("seed", f"'{exp.seed}' is not a slug"))
    if not exp.seed and SLUG.fullmatch(exp.key):
        object.__setattr__(exp, "seed", exp.key)  # the default seed is the key, stored explicitly
    if len(exp.variants) < 2:
        problems.append(Problem("variants", "an experiment needs at least two variants"))
    seen: set[str] = set()
    for i, variant in enumerate(exp.variants):
        if not SLUG.fullmatch(variant.key):
            problems.append(Problem(f"variants[{i}].key", f"'{variant.key}' is not a slug"))
        elif variant.key in seen:
            problems.append(Problem(f"variants[{i}].key", f"duplicate variant key '{variant.key}'"))
        seen.add(variant.key)
        if (
            not _is_number(variant.weight)
            or not math.isfinite(variant.weight)
            or variant.weight <= 0
        ):
            problems.append(Problem(f"variants[{i}].weight", "must be a positive finite number"))
    problems.extend(_weight_share_problems(exp.variants))
    keys = {v.key for v in exp.variants}
    if not exp.control and exp.variants:
        object.__setattr__(exp, "control", exp.variants[0].key)  # the first variant by default
    elif exp.control and exp.control not in keys:
        problems.append(Problem("control", f"'{exp.control}' is not a variant"))
    if not (_is_number(exp.traffic) and 0.0 < exp.traffic <= 1.0):
        problems.append(Problem("traffic", "must be a number in (0, 1]"))
    if exp.status is Status.SHIPPED:
        if exp.winner is None:
            problems.append(Problem("winner", "a shipped experiment needs a winner"))
        elif exp.winner not in keys:
            problems.append(Problem("winner", f"'{exp.winner}' is not a variant"))
    elif exp.winner is not None:
        problems.append(Problem("winner", "only a shipped experiment has a winner"))
    for unit_id, variant_key in exp.overrides.items():
        problem = validate_unit_id(unit_id, f"overrides.{unit_id}")
        if problem:
            problems.append(problem)
        if variant_key not in keys:
            problems.append(Problem(f"overrides.{unit_id}", f"'{variant_key}' is not a variant"))
    if exp.layer is not None:
        layer = exp.layer
        if not SLUG.fullmatch(layer.name):
            problems.append(Problem("layer.name", f"'{layer.name}' is not a slug"))
        if not (_is_number(layer.start) and _is_number(layer.end)) or not (
            0.0 <= layer.start < layer.end <= 1.0
        ):
            problems.append(
                Problem("layer.range", "must be [start, end] with 0 <= start < end <= 1")
            )
    mde = exp.minimum_detectable_effect
    if mde is not None and not (_is_number(mde) and 0.0 < mde <= 1.0):
        problems.append(Problem("minimum_detectable_effect", _MDE_RULE))
    names: set[str] = set()
    for path, metric in _metric_paths(exp):
        if metric.name in names:
            problems.append(Problem(f"{path}.name", f"metric '{metric.name}' is listed twice"))
        names.add(metric.name)
    if exp.rollout is not None and not problems:  # its rules read the variants and metrics
        plan, found = rollout_plan_problems(
            exp.rollout, variants=exp.variant_keys, weights=exp.weights, control=exp.control,
            guardrail_margins={m.name: m.margin for m in exp.guardrail_metrics},
        )  # fmt: skip
        problems.extend(found)
        object.__setattr__(exp, "rollout", plan)  # defaults stored explicitly, like the seed
    return problems


def _weight_share_problems(variants: tuple[Variant, ...]) -> list[Problem]:
    """Weights that are each fine but cannot be normalised: their sum overflows (1e308 +
    1e308), or a variant's share is too small to own a single bucket of 2**32."""
    weights = [v.weight for v in variants]
    if not weights or not all(_is_number(w) and w > 0 for w in weights):
        return []  # reported per variant already
    total = sum(weights)  # the sum `abtest.hashing.variant_boundaries` divides by
    if not math.isfinite(total):
        return [Problem("variants", "the weights add up to more than a float holds; scale them")]
    return [
        Problem(f"variants[{i}].weight", "too small beside the others to get any unit")
        for i, weight in enumerate(weights)
        if weight / total * BUCKET_SPACE < 1
    ]


def _metric_paths(exp: Experiment) -> list[tuple[str, Metric]]:
    paths = [] if exp.primary_metric is None else [("primary_metric", exp.primary_metric)]
    paths += [(f"guardrail_metrics[{i}]", m) for i, m in enumerate(exp.guardrail_metrics)]
    paths += [(f"secondary_metrics[{i}]", m) for i, m in enumerate(exp.secondary_metrics)]
    return paths


# -- parsing helpers (collect problems, never raise) --------------------------------------
def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_enum(enum: type[StrEnum], value: object, name: str, problems: list[Problem]) -> Any:
    if isinstance(value, str) and value in enum._value2member_map_:
        return enum(value)
    choices = ", ".join(member.value for member in enum)
    problems.append(Problem(name, f"{value!r} is not one of: {choices}"))
    return next(iter(enum))


def _parse_variants(value: object, problems: list[Problem]) -> tuple[Variant, ...]:
    if not isinstance(value, list):
        problems.append(Problem("variants", "required: a list of {key, weight, payload}"))
        return ()
    variants = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            problems.append(Problem(f"variants[{i}]", "must be an object"))
            continue
        for extra in set(item) - {"key", "weight", "payload"}:
            problems.append(Problem(f"variants[{i}].{extra}", "unknown field"))
        key = item.get("key")
        weight = item.get("weight", 1)
        if not isinstance(key, str):
            problems.append(Problem(f"variants[{i}].key", "required: a slug"))
            continue
        if not _is_number(weight) or weight <= 0:
            problems.append(Problem(f"variants[{i}].weight", "must be a positive finite number"))
            continue
        variants.append(Variant(key, float(weight), item.get("payload")))
    return tuple(variants)


def _parse_rules(value: object, problems: list[Problem]) -> tuple[Rule, ...]:
    if not isinstance(value, list):
        problems.append(Problem("targeting", "must be a list of {attribute, op, value}"))
        return ()
    rules = []
    for i, item in enumerate(value):
        where = f"targeting[{i}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(where, "must be an object"))
            continue
        attribute, op = item.get("attribute"), item.get("op")
        if not isinstance(attribute, str) or not attribute:
            problems.append(Problem(f"{where}.attribute", "required: an attribute name"))
            continue
        if op not in OPERATORS:
            problems.append(Problem(f"{where}.op", f"{op!r} is not one of: {', '.join(OPERATORS)}"))
            continue
        try:
            rules.append(Rule.build(attribute, op, item.get("value")))
        except ValueError as exc:
            problems.append(Problem(f"{where}.value", str(exc)))
    return tuple(rules)


def _parse_overrides(value: object, problems: list[Problem]) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        problems.append(Problem("overrides", "must map unit ids to variant keys"))
        return {}
    return dict(value)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = Problem("$", f"not valid JSON: {exc.msg} at line {exc.lineno}")
        raise InvalidConfig([problem]) from None
    except ValueError:  # an integer longer than Python reads: say where it is
        try:
            return loads(text)
        except InvalidInput as exc:
            raise InvalidConfig([Problem(exc.field or "$", exc.message)]) from None


def _parse_layer(value: object, problems: list[Problem]) -> Layer | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(Problem("layer", "must be {name, range: [start, end]} or null"))
        return None
    name, bounds = value.get("name"), value.get("range")
    if not isinstance(name, str):
        problems.append(Problem("layer.name", "required: a slug"))
        return None
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)):
        problems.append(Problem("layer.range", "must be [start, end] with 0 <= start < end <= 1"))
        return None
    return Layer(name, float(bounds[0]), float(bounds[1]))


def _parse_metric(value: object, where: str, problems: list[Problem]) -> Metric | None:
    if isinstance(value, str):  # shorthand "name:type"
        short_name, _, type_name = value.rpartition(":")
        value = {"name": short_name, "type": type_name}
    if not isinstance(value, Mapping):
        problems.append(Problem(where, "must be {name, type, higher_is_better?, margin?}"))
        return None
    if "catalogue" in value:
        problems.append(Problem(f"{where}.catalogue", "a catalogue reference is resolved by "
                                "the service when the experiment is stored (abtest push), or "
                                "with a catalogue file (abtest analyze --catalogue)"))  # fmt: skip
        return None
    name = value.get("name")
    if not isinstance(name, str):
        problems.append(Problem(f"{where}.name", "required: a metric name"))
        return None
    count = len(problems)
    metric_type = _parse_enum(MetricType, value.get("type"), f"{where}.type", problems)
    higher = value.get("higher_is_better", True)
    if not isinstance(higher, bool):
        problems.append(Problem(f"{where}.higher_is_better", "must be true or false"))
    margin = value.get("margin")
    if margin is not None and not (_is_number(margin) and margin >= 0):
        problems.append(Problem(f"{where}.margin", "must be a non-negative number or null"))
    problem = metric_name_problem(name, metric_type)
    if problem:
        problems.append(Problem(f"{where}.name", problem))
    extra = _catalogue_fields(value, metric_type, where, problems)
    if len(problems) > count:
        return None
    return Metric(name, metric_type, higher, None if margin is None else float(margin), **extra)


def _catalogue_fields(
    value: Mapping[str, Any], metric_type: MetricType | None, where: str, problems: list[Problem]
) -> dict[str, Any]:
    """unit, cap, attribution_window_hours and catalogue_version of a metric, checked."""
    out: dict[str, Any] = {}
    unit = value.get("unit", "")
    if not isinstance(unit, str) or len(unit) > 32:
        problems.append(Problem(f"{where}.unit", "must be a string of at most 32 characters"))
    else:
        out["unit"] = unit
    for name in ("cap", "attribution_window_hours"):
        number = value.get(name)
        if number is None:
            continue
        if not (_is_number(number) and math.isfinite(number) and number > 0):
            problems.append(Problem(f"{where}.{name}", "must be a finite number > 0 or null"))
        else:
            out[name] = float(number)
    if "cap" in out and metric_type not in (MetricType.COUNT, MetricType.SUM):
        problems.append(Problem(f"{where}.cap", "only count and sum metrics can be capped"))
    version = value.get("catalogue_version")
    if isinstance(version, float) and version.is_integer():
        version = int(version)  # JSON has one number type: 2.0 is the integer 2
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            problems.append(Problem(f"{where}.catalogue_version", "must be a whole number >= 1"))
        else:
            out["catalogue_version"] = version
    return out


def metric_name_problem(name: str, metric_type: MetricType) -> str | None:
    """Why ``name`` is not a valid name for a metric of this type, or None."""
    if metric_type is MetricType.RATIO:
        parts = name.split("/")
        if len(parts) != 2 or not all(_METRIC_NAME.fullmatch(p) for p in parts):
            return f"'{name}' is not a ratio name 'numerator/denominator'"
        return None
    if metric_type is MetricType.QUANTILE:
        base, _, suffix = name.rpartition(":")
        match = _QUANTILE_SUFFIX.fullmatch(suffix)
        valid_base = bool(base) and _METRIC_NAME.fullmatch(base) is not None
        if not valid_base or not match or not 0 < float(match[1]) < 100:
            return f"'{name}' is not a quantile name such as 'latency_ms:p95'"
        return None
    if not _METRIC_NAME.fullmatch(name):
        return f"'{name}' is not a metric name (letters, digits, '_', '-', '.')"
    return None


def _parse_metrics(value: object, where: str, problems: list[Problem]) -> tuple[Metric, ...]:
    if not isinstance(value, list):
        problems.append(Problem(where, "must be a list of metrics"))
        return ()
    parsed = (_parse_metric(item, f"{where}[{i}]", problems) for i, item in enumerate(value))
    return tuple(m for m in parsed if m is not None)
