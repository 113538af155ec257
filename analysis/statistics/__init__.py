"""Pure statistics on per-variant sufficient statistics (`SampleStats`, `PairedStats`).

No I/O: every function takes aggregates or arrays and returns a frozen result object.
"""
