"""The one exception type that means "the user's input is wrong".

The command line reports it as a single line naming the cause, without a traceback; everything
else is a bug and keeps its traceback.
"""


class SslLabError(Exception):
    """A bad config, a missing file or an incompatible choice, found before long work starts."""


def user_error(err: BaseException) -> SslLabError | None:
    """The ``SslLabError`` that ``err`` is or was raised from, if any: Hydra's ``instantiate``
    wraps what a constructor raises in its own exception."""
    while err is not None and not isinstance(err, SslLabError):
        err = err.__cause__
    return err


class Interrupted(SystemExit):
    """A job stopped by a signal (SIGTERM, or SIGUSR1 before a cluster's time limit or a
    preemption) after saving what its rerun needs. A SystemExit, not an Exception: it ends the
    process with one line and a non-zero status, and a sweep stops instead of starting its next
    job."""

    def __init__(self, message: str) -> None:
        super().__init__(f"ssl-lab: stopped: {message}")
