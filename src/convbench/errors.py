"""The one exception type users see as a single error line instead of a traceback."""


class ConvbenchError(Exception):
    """A problem with the user's input (params, archive, images, environment) they can fix."""
