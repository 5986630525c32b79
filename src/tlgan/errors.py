"""The one exception type that front ends turn into a one-line message."""


class TlganError(Exception):
    """A problem the user can fix (bad input, missing file, mismatched model).

    The CLI prints ``str(error)`` on one line and exits non-zero; the web app
    answers 422 with it. Anything else escaping is a bug in tlgan.
    """
