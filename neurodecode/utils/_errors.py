"""Exception types that the command line turns into one sentence and an exit code."""

import logging
import warnings

logger = logging.getLogger("neurodecode")


class NeurodecodeError(Exception):
    """Base class of every error neurodecode raises on purpose."""

    exit_code = 1


class InputFileError(NeurodecodeError, ValueError):
    """An input file is missing, unreadable or not what was expected (exit code 1)."""

    exit_code = 1


class UsageError(NeurodecodeError, ValueError):
    """A parameter or option has an invalid value (exit code 2)."""

    exit_code = 2


class RecoverableDamageWarning(UserWarning):
    """A file was damaged in a way that could be worked around; the data may be incomplete."""


def record_warning(message, problems=None, *, category=RecoverableDamageWarning, stacklevel=2):
    """Warn, log and append ``message`` to ``problems`` (a list kept by the caller's report).

    Parameters
    ----------
    message : str
        One sentence naming the file and what was worked around.
    problems : list of str | None
        Where the run's report collects problems; ``None`` to only warn.
    """
    if problems is not None:
        problems.append(message)
    logger.warning(message)
    warnings.warn(message, category, stacklevel=stacklevel + 1)
