"""Statistics for planning and reading experiments.

Pure: functions take numpy arrays or per-variant aggregates (`SampleStats`,
`PairedStats`) and return immutable result objects.  Reading files and frames happens in
one loading module at the edge.
"""

from analysis.aggregates import PairedStats, SampleStats

__all__ = ["PairedStats", "SampleStats"]
