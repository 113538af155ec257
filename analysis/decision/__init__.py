"""What an analysis concludes: the rows per metric, the verdict with its reasons, the record."""
