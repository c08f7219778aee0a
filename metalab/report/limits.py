"""What a report draws at most (set them here, e.g. `limits.MAX_TABLE_ROWS = 10_000`)."""

MAX_TABLE_ROWS = 5000
"""Rows of the runs table; further runs are counted in a note."""
MAX_POINTS = 2000
"""Individual runs drawn as dots in one metric-against-parameter plot."""
MAX_CURVES = 50
"""Runs drawn as curves in one stepped-metric plot."""
MAX_CURVE_POINTS = 1000
"""Points kept of one curve; longer series are thinned evenly."""
MAX_PLOTS = 60
"""Metric-against-parameter plots on one page."""
MAX_LINES = 6
"""Combinations of the other swept parameters drawn as separate lines in one plot."""
MAX_FAILURE_GROUPS = 50
"""Distinct (error type, message) groups listed under failures."""
MAX_LISTED = 20
"""Values listed in one provenance row or run indices in one failure group."""
TRACEBACK_LINES = 400
"""Lines of a traceback shown for a failure group; of a longer one, its first and last lines."""
MAX_ERROR_CHARS = 300
"""Characters of an error message shown in the runs table."""
MAX_SAMPLED_RUNS = 5000
"""Runs whose whole records are read for the stepped-metric curves and provenance; of more
runs, this many spread evenly over them (the page says so). Counts, tables, metric summaries
and plots read every run's columns, never its record."""
MAX_ERRORS_READ = 5000
"""Runs that did not complete whose records are read for the failures section; of more,
this many spread evenly over them (the page says so)."""
