"""Services metalab can run for a sweep: `metalab postgres start|stop|status`.

`metalab.services.postgres` starts a PostgreSQL server from the installed binaries, on this
machine or as a SLURM job, and lets workers find it (`discover`). Nothing here is imported
by `import metalab`.
"""
