"""How often the page reads stores and how much it reads, keeps and draws (set them here)."""

REFRESH_SECONDS = 1.5
"""Least time between two reads of one sweep's store."""
REFRESH_SPACING = 3.0
"""A read that took t seconds is followed by the next no sooner than `REFRESH_SPACING * t`
after it ended (and `REFRESH_SECONDS` at least): the reading thread spends at most about a
quarter of its time on one sweep, and reads of a large store never queue up."""
MAX_READS = 5000
"""Records read per refresh of a store without columns; a large store fills in over a few
refreshes (stores with columns are read as one table per refresh)."""
MAX_SAMPLE = 5000
"""Completed runs whose parameters and metrics the page keeps per sweep for its plot: every
completed run of a smaller sweep, a uniform sample (the smallest run ids) of a larger one."""
MAX_POINTS = 5000
"""Runs drawn as dots on the page."""
INLINE_ROWS = 5000
"""Sampled runs up to which the page aggregates on the event loop; beyond, in the thread."""
MAX_RUN_IDS = 4_000_000
"""Run ids sent with a registration (16 bytes each: 64 MB at most); a larger sweep is counted
by experiment id instead."""
MAX_FINISHED = 20
"""Finished sweeps kept on the page, newest first."""
