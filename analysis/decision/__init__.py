"""What an analysis concludes: the rows per metric (fixed-horizon and always-valid), the verdict
with its reasons, the whole result and the decision record."""
