"""How a benchmark ends when run as a command: like `pr2prod`, a readable error and status 2."""

from __future__ import annotations

from collections.abc import Callable

from pr2prod.errors import Pr2prodError, print_error


def exit_status(run: Callable[[], object]) -> int:
    """Run `run`; 0 when it returns, 2 (with the error and its hint on stderr) when it
    fails with a problem the user can fix."""
    try:
        run()
    except Pr2prodError as error:
        return print_error(error)
    return 0
