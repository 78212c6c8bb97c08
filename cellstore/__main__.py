"""`python -m cellstore` runs the CLI."""

from cellstore.cli import main

main()
