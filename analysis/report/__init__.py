"""The release manager's report: figures, one self-contained HTML file, and the number
formatting it shares with the web console."""
