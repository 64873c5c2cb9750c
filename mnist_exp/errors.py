"""The one error type for mistakes a user can fix.

Hydra prints a ``CompactHydraException`` as its message alone, without a traceback
(``HYDRA_FULL_ERROR=1`` still shows the full one), so raising ``UserError`` anywhere in a
run gives the user one clear line and a non-zero exit. In a multirun sweep the failed job is
recorded and the other jobs still run.
"""

from difflib import get_close_matches

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """A mistake in the user's input: a config value, a file, a name. The message says how to fix it."""


def did_you_mean(name: str, choices) -> str:
    """' Did you mean 'cnn'?' for the closest choice, or '' when nothing is close."""
    match = get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""
