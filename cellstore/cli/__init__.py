"""The `cellstore` command line: `app` (typer) and `main` (the console-script entry point)."""

from cellstore.cli.app import app, main

__all__ = ["app", "main"]
