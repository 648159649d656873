"""The one exception type for mistakes a user can fix (bad files, bad flags, a changed config),
and the one warning type for what a user should know while the work goes on.

The CLI turns a `UserError` into a single `error: ...` line and exit code 2 (anything else is a bug
and keeps its traceback), and a `SynthWarning` into a single `warning: ...` line.
"""


class UserError(Exception):
    """A problem with the user's input, with a message that names the input and what to do.

    `details` holds further problems found at the same time (shown in full by `synth validate`).
    """

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def one_line(self) -> str:
        """The message, plus how many more problems there are, on one line."""
        if not self.details:
            return self.message
        more = len(self.details)
        plural = "s" if more > 1 else ""
        return f"{self.message} (+{more} more problem{plural}; `synth validate` lists all)"


class SynthWarning(UserWarning):
    """Something that works, but not as well as it could, and what to do about it (a missing
    font, a CPU feature turned off). Raised with `warnings.warn`, so library callers see it too."""
