"""The release manager's report: figures and one self-contained HTML file."""
