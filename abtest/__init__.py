"""abtest: experimentation from "which variant does this user get?" to "which do we ship?".

The core is pure: the experiment model, hashing and assignment do no I/O and import
neither pandas nor Flask, so the assignment hot path stays light.  Redis access lives in
`abtest.store` (the only module that knows key names), HTTP in `service`, statistics in
`analysis`.
"""

from abtest.assignment import Assignment, BatchAssignment, Reason, assign, assign_batch
from abtest.errors import (
    AbtestError,
    Conflict,
    Forbidden,
    InvalidConfig,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Problem,
    StoreUnavailable,
    Unauthorized,
)
from abtest.experiment import (
    Experiment,
    Layer,
    Metric,
    MetricType,
    Status,
    Variant,
    layer_conflicts,
)
from abtest.targeting import Rule

__version__ = "0.1.0"

__all__ = [
    "AbtestError",
    "Assignment",
    "BatchAssignment",
    "Conflict",
    "Experiment",
    "Forbidden",
    "InvalidConfig",
    "InvalidInput",
    "Layer",
    "Metric",
    "MetricType",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "Reason",
    "Rule",
    "Status",
    "StoreUnavailable",
    "Unauthorized",
    "Variant",
    "__version__",
    "assign",
    "assign_batch",
    "layer_conflicts",
]
