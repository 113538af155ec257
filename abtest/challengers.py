"""Challengers: a new model version enters production against the current champion.

``POST /v1/experiments/{key}/challengers`` (`register_challenger`) takes a model's name and
version (and a payload: its endpoint, ...) and puts it into a test against the *champion*
of ``key``'s lineage, the same audited way every time:

* The lineage: ``key`` and the experiments that challengers spawned from it, each one's
  successor written in its audit trail (action ``challenged``, ``successor``).  The *head*
  is the newest; `lineage` lists them, root first.
* Idempotent by model version: when a variant of the lineage already carries this model
  name and version (``payload.model`` and ``payload.model_version``), nothing changes and
  that experiment is returned (``created`` false).
* The head is a **draft**: the challenger is added to it as a new variant (a new version,
  action ``challenger``) and the experiment is started.  A draft guarded rollout compares
  one new variant with control, so the challenger takes the plan's variant's place
  (`draft_config`).
* The head is **running**: 409; one challenger is under test at a time per champion (the
  registry watcher retries; the head's outcome decides the next champion).
* The head is **shipped, stopped or rolled back**: the champion is its winner (shipped) or
  its control (otherwise); a new experiment is created from the head's definition (metrics,
  guardrails, targeting, layer, traffic, plan, rollout plan) with two variants, the champion
  (control, its payload) and the challenger, a fresh seed (its key), and started; the head
  gets a version recording its successor.

A rollout plan carries over pointing at the challenger, and starting goes through
`abtest.store.Store.start_experiment`, so the challenger of an experiment with a plan
enters as a guarded rollout at the plan's first step; the monitor advances, ships or rolls
it back like any rollout.  Every write is an audited version under
the caller's key id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import (
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from abtest.errors import Conflict, InvalidInput, NotFound
from abtest.experiment import Experiment, Status
from abtest.schemas import NOT_BLANK, WHOLE_NUMBER, ExperimentKey, Strict, union_message
from abtest.store import Store, StoredExperiment

MAX_MODEL_NAME: Final = 200
MAX_MODEL_VERSION: Final = 64
MAX_INTEGER_VERSION: Final = 2**63 - 1
_NOT_SLUG: Final = re.compile(r"[^a-z0-9_.-]+")


NotBlank = Annotated[str, StringConstraints(pattern=NOT_BLANK)]


class ModelVersion(Strict):
    """The registered model version a challenger serves."""

    name: Annotated[NotBlank, Field(min_length=1, max_length=MAX_MODEL_NAME)]
    version: (
        Annotated[NotBlank, Field(min_length=1, max_length=MAX_MODEL_VERSION)]
        | Annotated[int, Field(ge=0, le=MAX_INTEGER_VERSION), WHOLE_NUMBER]
    ) = Field(description="A version string, or a registry's version number")

    @field_validator("version", mode="wrap")
    @classmethod
    def _one_error(cls, value: object, handler: ValidatorFunctionWrapHandler) -> str | int:
        try:
            checked: str | int = handler(value)
        except ValidationError as exc:
            # One error at the field, rather than one per member of the union.
            message = union_message(value, exc, "must be a string or a whole number")
            raise PydanticCustomError("model_version", message) from None
        return checked


class ChallengerBody(Strict):
    """``POST /v1/experiments/{key}/challengers``: the model version to test, and how."""

    model: ModelVersion
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Extra payload of the variant (e.g. the endpoint)"
    )
    variant: ExperimentKey | None = Field(
        default=None, description="The variant key; default <model>-v<version>"
    )
    experiment: ExperimentKey | None = Field(
        default=None, description="The new experiment's key, when one is created"
    )


@dataclass(frozen=True)
class Challenger:
    """A validated registration: the model, the variant key it becomes, its payload."""

    model: str
    version: str
    variant: str
    payload: Mapping[str, Any]
    experiment: str | None = None  # the new experiment's key, when one is created

    @classmethod
    def from_body(cls, body: ChallengerBody) -> Challenger:
        """The registration a validated request body asks for."""
        version = str(body.model.version)  # registries number their versions
        variant = body.variant or default_variant(body.model.name, version)
        payload = {**body.payload, "model": body.model.name, "model_version": version}
        return cls(body.model.name, version, variant, payload, body.experiment)

    def note(self) -> dict[str, str]:
        """The audit trail's record of this registration."""
        return {"model": self.model, "version": self.version, "variant": self.variant}

    def matches(self, payload: Any) -> bool:
        """True when a variant's payload is this model version's."""
        return (
            isinstance(payload, Mapping)
            and payload.get("model") == self.model
            and str(payload.get("model_version")) == self.version
        )


@dataclass(frozen=True)
class Registration:
    """What `register_challenger` did: the experiment that tests (or tested) the challenger."""

    stored: StoredExperiment
    created: bool  # False: this model version was registered before; nothing changed
    variant: str
    champion: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (the endpoint's answer)."""
        return {"created": self.created, "experiment": self.stored.experiment.key,
                "variant": self.variant, "champion": self.champion,
                "stored": self.stored.to_dict()}  # fmt: skip


def default_variant(model: object, version: object) -> str:
    """``ranker`` version ``7`` -> ``ranker-v7`` (lower case; other characters become '-')."""
    text = _NOT_SLUG.sub("-", f"{model}-v{version}".lower()).strip("-._")
    return text[:64].rstrip("-._") or "challenger"


def champion_of(experiment: Experiment) -> str:
    """The variant every unit gets outside the test: the winner once shipped, else control."""
    if experiment.status is Status.SHIPPED and experiment.winner is not None:
        return experiment.winner
    return experiment.control


def lineage(store: Store, key: str) -> list[StoredExperiment]:
    """``key`` and its successors, oldest first (the last is the head).

    A successor named in the trail but not stored yet (a registration interrupted between
    its two writes) ends the chain; `register_challenger` completes it when called again.
    """
    chain = [store.get_experiment(key)]
    seen = {key}
    while True:
        entry = _last_challenged(store, chain[-1].experiment.key)
        successor = None if entry is None else entry.get("successor")
        if not isinstance(successor, str) or successor in seen:
            return chain
        try:
            chain.append(store.get_experiment(successor))
        except NotFound:
            return chain
        seen.add(successor)


def register_challenger(
    store: Store, key: str, body: ChallengerBody, *, key_id: str
) -> Registration:
    """Put a model version into a test against ``key``'s champion (see the module docstring).

    Each step is written so that repeating the call after an interruption finishes the
    registration instead of repeating it: the head's ``challenged`` entry is written first
    (its version check also makes two concurrent registrations one winner and one 409),
    then the new experiment is created, then started.

    Raises
    ------
    InvalidInput
        A variant key that is the champion's, or one the draft head has already.
    Conflict
        A challenger is already under test in the head, or the new experiment's key exists.
    """
    challenger = Challenger.from_body(body)
    chain = lineage(store, key)
    for stored in reversed(chain):
        for variant in stored.experiment.variants:
            if challenger.matches(variant.payload):
                return _finish(store, stored, challenger, variant.key, key_id=key_id)
    head = chain[-1]
    experiment = head.experiment
    champion = champion_of(experiment)
    if challenger.variant == champion:
        raise InvalidInput(f"'{champion}' is the champion's variant key; name the challenger "
                           "another way", "variant")  # fmt: skip
    note: dict[str, Any] = {"challenger": challenger.note()}
    if experiment.status is Status.RUNNING:
        raise Conflict(f"'{experiment.key}' is testing a challenger now; register again once "
                       "it ships, rolls back or stops", "experiment")  # fmt: skip
    if experiment.status is Status.DRAFT:
        if challenger.variant in experiment.variant_keys:
            raise InvalidInput(f"'{experiment.key}' already has a variant "
                               f"'{challenger.variant}'", "variant")  # fmt: skip
        config, replaced = draft_config(experiment, champion, challenger)
        if replaced is not None:
            note["replaces"] = replaced
        store.write_version(head, Experiment.from_dict(config), key_id=key_id,
                             action="challenger", note=note)  # fmt: skip
        started = store.start_experiment(experiment.key, key_id=key_id)
        return Registration(started, True, challenger.variant, champion)
    pending = _last_challenged(store, experiment.key)
    if pending is not None and pending.get("successor") not in {s.experiment.key for s in chain}:
        if pending.get("challenger") != challenger.note():
            raise Conflict(f"the registration of {pending.get('challenger')} into "
                           f"'{pending.get('successor')}' was interrupted; repeat it first",
                           "experiment")  # fmt: skip
        child_key = str(pending["successor"])
    else:
        child_key = challenger.experiment or f"{experiment.key}.{challenger.variant}"[:64]
        _require_free(store, child_key)
        store.write_version(head, experiment, key_id=key_id, action="challenged",
                             note={**note, "successor": child_key})  # fmt: skip
    config = successor_config(experiment, child_key, champion, challenger)
    created = store.create_experiment(config, key_id=key_id,
                                      note={**note, "parent": experiment.key})  # fmt: skip
    started = store.start_experiment(created.experiment.key, key_id=key_id)
    return Registration(started, True, challenger.variant, champion)


def _finish(
    store: Store, stored: StoredExperiment, challenger: Challenger, variant: str, *, key_id: str
) -> Registration:
    """A known model version: nothing changes, unless this registration created the
    experiment and was interrupted before starting it, which it then starts."""
    champion = champion_of(stored.experiment)
    key = stored.experiment.key
    if stored.experiment.status is Status.DRAFT and any(
        entry.get("challenger") == challenger.note() for entry in store.history(key)
    ):
        started = store.start_experiment(key, key_id=key_id)
        return Registration(started, True, variant, champion)
    return Registration(stored, False, variant, champion)


def _require_free(store: Store, key: str) -> None:
    """`Conflict` (field ``key``) when an experiment ``key`` exists."""
    try:
        store.get_experiment(key)
    except NotFound:
        return
    raise Conflict(f"experiment '{key}' already exists", "key")


def _last_challenged(store: Store, key: str) -> dict[str, Any] | None:
    """The newest ``challenged`` audit entry of ``key`` (names its successor), if any."""
    for entry in reversed(store.history(key)):
        if entry.get("action") == "challenged":
            return dict(entry)
    return None


def draft_config(
    draft: Experiment, champion: str, challenger: Challenger
) -> tuple[dict[str, Any], str | None]:
    """The draft's next definition and the variant the challenger replaced, if any.

    Without a rollout plan the challenger is added beside the draft's variants, with the
    champion's weight.  A guarded rollout compares one new variant with control, so there
    the challenger takes the place (and weight) of the plan's variant, which never served
    anyone (the experiment is a draft), and the plan ramps the challenger instead.
    """
    config = draft.to_dict()
    entry = {"key": challenger.variant, "payload": dict(challenger.payload)}
    if draft.rollout is None:
        config["variants"].append({**entry, "weight": draft.variant(champion).weight})
        return config, None
    replaced = draft.rollout.variant
    config["variants"] = [
        {**entry, "weight": v["weight"]} if v["key"] == replaced else v for v in config["variants"]
    ]
    config["overrides"] = {u: v for u, v in config["overrides"].items() if v != replaced}
    config["rollout"] = {**config["rollout"], "variant": challenger.variant}
    return config, replaced


def successor_config(
    head: Experiment, key: str, champion: str, challenger: Challenger
) -> dict[str, Any]:
    """The new experiment's definition: the head's, with the champion as control and the
    challenger beside it, a fresh seed, no overrides and no lifecycle.

    The two weigh the same, unless the head is a guarded rollout: then the plan carries
    over to the challenger, and the champion and the challenger keep the weights of the
    head's control and new variant, so every step of the plan stays servable (the new
    variant's share can only grow without the head's other variants).
    """
    weights = {"champion": 1.0, "challenger": 1.0}
    if head.rollout is not None:
        weights = {"champion": head.variant(head.control).weight,
                   "challenger": head.variant(head.rollout.variant).weight}  # fmt: skip
    config = head.to_dict()
    config.update(
        key=key,
        seed=key,
        status="draft",
        winner=None,
        control=champion,
        overrides={},
        description=f"challenger {challenger.model} version {challenger.version} against "
        f"the champion '{champion}' of '{head.key}'",
        variants=[
            {
                "key": champion,
                "weight": weights["champion"],
                "payload": head.variant(champion).payload,
            },
            {
                "key": challenger.variant,
                "weight": weights["challenger"],
                "payload": dict(challenger.payload),
            },
        ],
    )
    if config.get("rollout"):
        config["rollout"] = {**config["rollout"], "variant": challenger.variant}
    return config
