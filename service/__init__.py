"""The HTTP service: a thin Flask layer over `abtest` and `analysis` (see `create_app`).

Views parse and validate, call the store, and serialise; nothing is created at import
time.  Adding a resource is one line in `BLUEPRINTS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Final

from flask import Flask

from service import settings

__all__ = ["BLUEPRINTS", "create_app"]

# "module:attribute" of each blueprint, imported by the factory (keeps imports lazy).
BLUEPRINTS: Final = (
    "service.system:bp",  # /healthz, /metrics, /openapi.json
    "service.assignments:bp",  # /v1/assign, /v1/assignments
    "service.events:bp",  # /v1/events
    "service.experiments:bp",  # /v1/experiments...
    "service.keys:bp",  # /v1/keys
    "service.catalogue:bp",  # /v1/metrics
    "service.results:bp",  # /v1/experiments/<key>/results
    "service.rollouts:bp",  # /v1/experiments/<key>/rollout...
    "service.clock:bp",  # /v1/clock (the controlled clock of demo and test mode)
    "service.alerts:bp",  # /v1/alerts, /v1/experiments/<key>/alerts
    "service.webhooks:bp",  # /v1/webhooks...
    "service.holdout:bp",  # /v1/holdout...
    "service.challengers:bp",  # /v1/experiments/<key>/challengers, /lineage
    "service.console:bp",  # / (the web console)
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from defaults, then ``ABTEST_*`` env vars, then ``config``."""
    # Imported here, not at the top: it loads prometheus_client, which picks its storage
    # (per-process files or memory) from PROMETHEUS_MULTIPROC_DIR once, at import, and
    # `abtest serve` sets that variable after importing `service.settings`.
    from service.extension import Abtest

    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(settings.load(config))  # InvalidInput names a bad setting
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep documented field order
    Abtest(app)
    for spec in BLUEPRINTS:
        module, _, name = spec.partition(":")
        app.register_blueprint(getattr(importlib.import_module(module), name))
    return app
