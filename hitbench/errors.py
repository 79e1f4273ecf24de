"""The one exception type for errors a user can cause.

Its message is a single line that names the file or field at fault and says what to do.
The CLI prints it without a traceback and exits non-zero.
"""


class HitbenchError(Exception):
    """A user-facing error: one line naming the file/field and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
