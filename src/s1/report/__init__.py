"""Reports drawn from an evaluation's summary: tables, plots, side-by-side, HTML."""
