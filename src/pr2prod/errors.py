"""The one exception type the CLI turns into a readable message instead of a traceback."""

import sys


class Pr2prodError(Exception):
    """A problem the user can fix: `str(error)` says what is wrong; `hint` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# The exit status of a command stopped by a Pr2prodError (argparse uses 2 for bad usage too).
EXIT_USER_ERROR = 2


def print_error(error: Pr2prodError) -> int:
    """Tell the user what went wrong and what to do, on stderr; the exit status to return."""
    print(f"error: {error}", file=sys.stderr)
    if error.hint:
        print(f"what to do: {error.hint}", file=sys.stderr)
    return EXIT_USER_ERROR
