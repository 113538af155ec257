"""The monitor: scheduled checks of running and shipped experiments (a placeholder until
the runner lands; see `service.monitor.health`, `alerts` and `webhooks`)."""
