"""Errors a user can cause and fix; the CLI and the app show their message as one line."""

from __future__ import annotations


class UserError(Exception):
    """An expected failure: the message says what happened and what to do."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type name if it has none); a first
    line that ends in a colon introduces the rest, so then the whole message, on one line."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    first = text.splitlines()[0].strip()
    return " ".join(text.split()) if first.endswith(":") else first


class Stopped(UserError):
    """Ctrl-C stopped a long job after it kept what it had made; the message says where."""

    exit_code = 130  # as for any interrupt


class InputError(UserError, ValueError):
    """Bad input: text that does not parse, an unknown name, a value out of range, or a path
    on the command line that is missing, of the wrong kind, unreadable, or (an output) already
    there without --overwrite. What goes wrong once the input is taken (a file's contents, a
    model that will not load, a device, a write) is a plain UserError, exit code 1."""

    exit_code = 2
