"""`python -m metalab`: the `metalab` command."""

from metalab.cli import run

run()
