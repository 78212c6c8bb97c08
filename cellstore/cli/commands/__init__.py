"""CLI sub-commands: module `foo.py` defines function `foo`, registered as `cellstore foo`."""
