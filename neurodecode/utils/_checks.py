"""Validation helpers whose messages say what was allowed and what was received."""

from ._errors import UsageError


def check_option(name, value, allowed):
    """Raise :class:`UsageError` unless ``value`` is one of ``allowed``.

    Parameters
    ----------
    name : str
        The parameter's name as the user typed it.
    value : object
        What was received.
    allowed : iterable
        The valid values.
    """
    allowed = list(allowed)
    if value not in allowed:
        if len(allowed) == 1:
            options = repr(allowed[0])
        else:
            options = ", ".join(repr(a) for a in allowed[:-1]) + f" and {allowed[-1]!r}"
        raise UsageError(
            f"Invalid value for the {name!r} parameter. Allowed values are {options}, "
            f"but got {value!r} instead."
        )
    return value
