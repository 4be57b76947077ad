"""Errors with a one-line message and the exit status the command line returns for them.

Importing this module imports nothing heavy.

The command line's exit statuses, in one place for every command: 0 success; 1 one or more
inputs failed (unreadable, corrupt, other model, an output that cannot be written); 2 usage
error; 3 model weights missing or altered (or a library of the wrong version); 130 interrupted;
141 the reader of our output closed the pipe.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WEIGHTS = 3
EXIT_INTERRUPTED = 130
EXIT_READER_GONE = 141  # 128 + SIGPIPE, as cat exits when its reader leaves


class UgicmError(Exception):
    """Base class: ``str(error)`` is the one-line message shown to users."""

    exit_code = EXIT_FAILED


class FormatError(UgicmError):
    """A .ugc file is truncated, corrupt or not a .ugc file at all."""


class LimitError(FormatError):
    """A .ugc header asks for more than the configured limits (pixels, sizes)."""


class ModelMismatchError(UgicmError):
    """A .ugc file was made with another model or other weights than the ones loaded."""


class ImageError(UgicmError):
    """An input image cannot be read or is of a kind ugicm does not handle."""


class WeightsError(UgicmError):
    """Model weights are missing, altered or unreadable: a set-up problem, not a bad input."""

    exit_code = EXIT_WEIGHTS


class OutputError(UgicmError):
    """An output cannot be written (or would overwrite an input)."""


class ReaderGoneError(UgicmError):
    """The program reading our stdout or stderr closed its end of the pipe (``| head``): stop
    quietly, as ``cat`` does when SIGPIPE kills it, whose exit status 128 + 13 this is."""

    exit_code = EXIT_READER_GONE
