"""The data edge: loading exposures and outcomes, the per-unit join, per-variant aggregates.

The only room of `analysis` that reads files and frames; it hands `Aggregates` to the
statistics.
"""
