#!/bin/bash
#SBATCH --job-name=metalab-sweep
#SBATCH --time=1:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --array=0-9
#SBATCH --output='/scratch/runs/my exp/slurm/logs/%A_%a.out'
#SBATCH --error='/scratch/runs/my exp/slurm/logs/%A_%a.err'
#SBATCH --signal=B:USR1@60

set -e
export METALAB_TASK_START="$(date +%s)"
trap '' USR1
export PYTHONUNBUFFERED=1
exec /opt/py/bin/python -m metalab.executors.slurm.entry --job '/scratch/runs/my exp/slurm/3f2a9c1e/job.pkl' --offset 0 --runs-per-task 1 --total 40000 --attempt 1
