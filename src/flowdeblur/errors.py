"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad file, bad option), not a bug."""
