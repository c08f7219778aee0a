"""Services metalab can run for a sweep: `metalab postgres start|stop|status`.

`metalab.services.postgres` starts a PostgreSQL server from the installed binaries, on this
machine or as a SLURM job, and lets workers find it (`discover`). Nothing here is imported
by `import metalab`.

The package, from the user's side down:

- `postgres`: start, stop, status and discover a service (the Python API); `cli`: the command.
- `slurm_job`: the service as a SLURM job: its script, submitting, cancelling, and `serve`,
  which runs on the node (`python -m metalab.services.slurm_job`).
- `state`: the state file (`service.json`); `passfile`: the password file; `directory`:
  where both live, its lock, and atomic private writes.
- `server`: the server process (start, stop, readiness); `data_dir`: its data directory;
  `roles`: the role and database clients log in as; `binaries`: where the programs are;
  `programs`: running them as the server `account`; `network`: addresses and ports;
  `listener`: which server listens on a port here.
"""
