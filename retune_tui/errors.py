"""Errors a user can cause and fix; the CLI and the app show their message as one line."""

from __future__ import annotations


class UserError(Exception):
    """An expected failure: the message says what happened and what to do."""

    exit_code = 1


class InputError(UserError, ValueError):
    """Bad input: text that does not parse, an unknown name, a value out of range."""

    exit_code = 2
