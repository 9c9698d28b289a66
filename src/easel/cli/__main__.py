"""`python -m easel.cli`, as the `easel` command."""

from easel.cli import main

main()
