#!/bin/bash
#SBATCH --job-name=metalab-sweep
#SBATCH --partition=gpu
#SBATCH --time=2:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --gres=gpu:1
#SBATCH --array=0-9999%50
#SBATCH --output='/scratch/runs/my exp/slurm/logs/%A_%a.out'
#SBATCH --error='/scratch/runs/my exp/slurm/logs/%A_%a.err'
#SBATCH --signal=B:USR1@60
#SBATCH --no-requeue

set -e
export METALAB_TASK_START="$(date +%s)"
trap '' USR1
metalab_task() {
    "$@" &
    metalab_child=$!
    trap 'metalab_forwarded=1; kill -USR1 "$metalab_child" 2>/dev/null || :' USR1
    trap 'metalab_forwarded=1; kill -TERM "$metalab_child" 2>/dev/null || :' TERM
    while :; do
        metalab_forwarded=0
        wait "$metalab_child" && metalab_status=0 || metalab_status=$?
        [ "$metalab_forwarded" = 1 ] || break
    done
    trap '' USR1 TERM
    if [ "$metalab_status" -gt 128 ] && [ "${2:-}" = -m ] && [ "${3:-}" = metalab.executors.slurm.entry ]; then
        "$@" --post-mortem "$metalab_status" --child "$metalab_child" || true
    fi
    trap - USR1 TERM
    if [ "$metalab_status" -gt 128 ]; then
        kill -$((metalab_status - 128)) "$$" 2>/dev/null || true
    fi
    exit "$metalab_status"
}
export PYTHONUNBUFFERED=1
metalab_task /opt/py/bin/python -m metalab.executors.slurm.entry --job '/scratch/runs/my exp/slurm/3f2a9c1e/job.pkl' --offset 10000 --runs-per-task 1 --total 40000 --attempt 1
