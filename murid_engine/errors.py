"""The one exception type for a user's mistake: the command line prints its message, exits 2."""


class UserError(Exception):
    """A problem the user can fix (a path, a file, an option); the message is one sentence."""

    exit_code = 2
