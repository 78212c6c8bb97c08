"""The one exception type the CLI turns into a single clear line and a non-zero exit."""


class CellstoreError(Exception):
    """A user-facing error: the message names the file, table or key at fault."""
