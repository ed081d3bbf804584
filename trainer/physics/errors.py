"""The one exception type for bad physical input, so the command line can tell a user's
mistake (exit code 2, one line) from a bug (a traceback)."""


class PhysicsInputError(ValueError):
    """A parameter is outside what the physics can model; the message names the field."""
