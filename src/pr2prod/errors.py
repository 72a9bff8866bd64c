"""The one exception type the CLI turns into a readable message instead of a traceback."""


class Pr2prodError(Exception):
    """A problem the user can fix: `str(error)` says what is wrong; `hint` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint
