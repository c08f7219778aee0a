"""Executors: where runs happen (inline, local Dask, a Dask cluster, SLURM).

Each satisfies `metalab.contracts.Executor`; the core finds them through `metalab.registry`.
"""
