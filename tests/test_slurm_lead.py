"""One process leads a SLURM sweep that several follow (its submitter, reconnected handles):
only the lead submits runs again, so a retry is submitted once and recorded in the one
`submission.json` every follower reads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from metalab.executors.slurm.config import SlurmConfig
from metalab.executors.slurm.lead import Lead
from metalab.executors.slurm.retries import split_errors
from metalab.executors.slurm.submission import Submission
from metalab.outcome import Outcome

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from metalab.executors.slurm.lead import Lead
    lead = Lead(Path(sys.argv[1]))
    print(lead.held(), flush=True)
    sys.stdin.readline()  # hold the lead until told to end
    """
)


def test_one_process_leads_and_the_next_takes_over_when_it_ends(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        follower = Lead(tmp_path)
        assert not follower.held()  # the other process leads
        assert not follower.held()
    finally:
        holder.communicate("\n", timeout=30)  # it ends: its lock goes with it
    assert follower.held() and follower.held()
    other = Lead(tmp_path)
    assert not other.held()  # a second follower, even in this process, watches
    follower.release()
    assert other.held()
    other.release()


def _failed(index: int, attempt: int = 1) -> Outcome:
    record = {
        "run_id": f"r{index}",
        "status": "failed",
        "attempt": attempt,
        "error": {"type": "ValueError", "message": "boom", "traceback": ""},
    }
    return Outcome(index, f"r{index}", "failed", record)


def test_a_follower_that_does_not_lead_waits_for_the_lead_to_retry(tmp_path: Path):
    config = SlurmConfig(retries=1, retry_on_error=True)
    submission = Submission(tmp_path / "submission.json", {"jobs": []})
    final, again = split_errors([_failed(0)], submission, config, decide=False)
    assert (final, again) == ([], [])  # within its retries: the lead submits it again
    assert submission.tries(0) == {}  # and notes it, not this process
    final, again = split_errors([_failed(0)], submission, config)
    assert (final, again) == ([], [0]) and submission.tries(0) == {"error": 1}
    # its retry spent: final for every follower
    final, again = split_errors([_failed(0, attempt=2)], submission, config, decide=False)
    assert [o.index for o in final] == [0] and again == []
