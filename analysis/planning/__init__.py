"""Before the test: sample size, power, minimum detectable effect, duration, sensitivity.

Pure numpy; importing it loads neither pandas nor DuckDB.
"""
