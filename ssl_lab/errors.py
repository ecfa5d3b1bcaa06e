"""The one exception type that means "the user's input is wrong".

The command line reports it as a single line naming the cause, without a traceback; everything
else is a bug and keeps its traceback.
"""


class SslLabError(Exception):
    """A bad config, a missing file or an incompatible choice, found before long work starts."""
