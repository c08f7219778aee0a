#!/bin/bash
#SBATCH --job-name=metalab-sweep
#SBATCH --partition=gpu
#SBATCH --time=2:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --gres=gpu:1
#SBATCH --account=lab
#SBATCH --qos=high
#SBATCH --array=0-9,20%5
#SBATCH --output='/scratch/runs/my exp/slurm/logs/%A_%a.out'
#SBATCH --error='/scratch/runs/my exp/slurm/logs/%A_%a.err'
#SBATCH --constraint=v100
#SBATCH --exclusive
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
module load gcc/12
module load 'cuda 12'
eval "$(conda shell.bash hook)"
conda activate ml
export OMP_NUM_THREADS=4
metalab_task /opt/py/bin/python -m metalab.executors.slurm.entry --job '/scratch/runs/my exp/slurm/3f2a9c1e/job.pkl' --offset 20000 --runs-per-task 2 --total 40000 --attempt 1
