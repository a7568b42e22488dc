"""The one base class of errors a user can fix (config, input, weights, output folder).

The CLI prints these as one line and exits with their `exit_code` (2, or 4 when writing the
output failed); anything else is a bug and keeps its traceback.
Every package raises its own subclass, so no module has to import another's errors.
"""


class UserError(ValueError):
    """A problem with what the user asked for or pointed at, reported before any work is lost."""

    exit_code = 2


class MissingWeightsError(UserError):
    """Model weights (ChronoEdit, a LoRA, CLIP) are not on this machine; the message says how to get them."""
