"""The decision record: one JSON file that ties a verdict to its inputs, settings and software.

Commit it beside the experiment's config: anyone with the same inputs re-derives the verdict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from abtest.experiment import Experiment
    from analysis.decision.result import AnalysisResult

RECORD_FORMAT = 1


def decision_record(
    result: AnalysisResult,
    *,
    data_sha256: Mapping[str, str],
    experiment: Experiment | None = None,
) -> dict[str, Any]:
    """One JSON object tying the verdict to its inputs, settings and software.

    Anyone with the same input files (checked by ``data_sha256``), the same experiment
    config (``config_sha256``: SHA-256 of `Experiment.to_json`, the canonical form) and
    the same package version re-derives the same verdict by running ``analyze`` with
    ``settings``.
    """
    from abtest import __version__

    config = experiment.to_json() if experiment is not None else None
    body = result.to_dict()
    return {
        "record_format": RECORD_FORMAT,
        "experiment": result.experiment,
        "config_version": ",".join(result.config_versions) or None,
        "config_sha256": hashlib.sha256(config.encode()).hexdigest() if config else None,
        "data_sha256": dict(data_sha256),
        "package": "abtest",
        "package_version": __version__,
        "settings": result.settings.to_dict(),
        "rules": result.settings.rules.to_dict(),
        "control": result.control,
        "variants": body["variants"],
        "excluded_units": result.excluded_units,
        "srm": body["srm"],
        "metrics": [
            {
                k: row.get(k)
                for k in (
                    "metric",
                    "variant",
                    "absolute_effect",
                    "absolute_ci",
                    "p_value",
                    "adjusted_p_value",
                    "significant",
                    "error",
                    "sequential",
                    "sequential_margin",
                )
            }
            for row in body["metrics"]
        ],
        "events": body["events"],
        "undefined_metrics": body["undefined_metrics"],
        "verdict": result.decision.verdict.value,
        "variant": result.decision.variant,
        "reasons": list(result.decision.reasons),
        "warnings": list(result.decision.warnings),
        "unread": list(result.decision.unread),
    }


def write_decision_record(
    result: AnalysisResult,
    path: str | Path,
    *,
    data_sha256: Mapping[str, str],
    experiment: Experiment | None = None,
) -> dict[str, Any]:
    """Write `decision_record` as indented, key-sorted JSON; return the record."""
    record = decision_record(result, data_sha256=data_sha256, experiment=experiment)
    Path(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return record
