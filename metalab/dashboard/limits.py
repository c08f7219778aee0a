"""How often the page reads stores and how much it reads and draws (set them here)."""

REFRESH_SECONDS = 1.5
"""Least time between two reads of one sweep's store."""
MAX_READS = 5000
"""Records read per refresh of one sweep; a large store fills in over a few refreshes."""
MAX_POINTS = 5000
"""Runs drawn as dots on the page; means use every run."""
INLINE_ROWS = 5000
"""Completed runs up to which the page aggregates on the event loop; beyond, in the thread."""
MAX_RUN_IDS = 100_000
"""Run ids sent with a registration; a larger sweep is counted by experiment id instead."""
MAX_FINISHED = 20
"""Finished sweeps kept on the page, newest first."""
