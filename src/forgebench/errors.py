"""User-facing errors: raised for mistakes a user can fix, turned into a message by the CLI."""

from __future__ import annotations


class ForgebenchError(Exception):
    """A mistake in config, input data or environment that the user can fix.

    Bugs keep their traceback; these print as ``ERROR: <message>`` and exit 1 (as asv's
    ``UserError`` does), so the message must say what was found, what was allowed and
    where to fix it.
    """


class SchemaVersionError(ForgebenchError):
    """A results file written by another version of the measurement record."""
