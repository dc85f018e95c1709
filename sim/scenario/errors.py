"""The error for input a user can fix, at the bottom of the layers so that the model,
realnet and calibration can raise it without importing the command line."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (a bad scenario, argument or state): the command line
    prints it as one line and exits 2."""
