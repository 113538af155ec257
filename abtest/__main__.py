"""``python -m abtest`` runs the CLI."""

from abtest.cli import run

run()
