"""User-facing errors: the CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user asked for (bad path, bad file, bad option), not a bug.

    A ``ValueError``, as the model's own checks of their arguments are, so that a caller can
    catch both kinds of bad argument the same way.
    """


class OptionError(UserError):
    """A bad value of one named option of a library function.

    ``message`` names the option as ``{option}``: the library's text spells it the Python way
    (``python``: the parameter name, or e.g. ``overwrite=True`` for a switch), and the command
    line spells it as its flag (:meth:`with_flag`), so each reader sees the name they typed::

        raise OptionError("batch", f"{{option}} must be at least 1, got {batch}")
        # Python: "batch must be at least 1, got 0"   CLI: "--batch must be at least 1, got 0"
    """

    def __init__(self, option: str, message: str, *, python: str | None = None) -> None:
        self.option = option
        self.template = message
        super().__init__(message.replace("{option}", python or option))

    def with_flag(self, flag: str) -> str:
        """The message with the option spelled as the command-line ``flag``."""
        return self.template.replace("{option}", flag)
