"""Where outputs go, and writing them so that no run ever leaves a truncated file or loses an input."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .errors import OutputError, ReaderGoneError, UgicmError

STDIO = "-"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def read_input(name: str) -> bytes:
    if name == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except IsADirectoryError:
        raise UgicmError("is a directory") from None
    except OSError as e:
        raise UgicmError(f"cannot read: {e.strerror or e}") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Writes to a temporary file beside ``path``, syncs it, then renames it over ``path``:
    readers see the old file or the complete new one, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the permissions any new file would get.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class OutputPlan:
    """Maps each input to its output: a named file, files in a directory, stdout, or (no -o) a file
    next to the input with ``suffix`` in place of its own."""

    def __init__(self, inputs: list[str], output: str | None, suffix: str):
        self.suffix = suffix
        self.output = output
        self.writes_stdout = output == STDIO or (output is None and inputs == [STDIO])
        if self.writes_stdout and len(inputs) > 1:
            raise OutputError("several inputs cannot all be written to stdout; give -o a directory")
        self.directory: Path | None = None
        if output not in (None, STDIO):
            out = Path(output)
            if len(inputs) > 1 or out.is_dir() or output.endswith(("/", os.sep)):
                self.directory = out
            # `-o out.ugc` with a glob that matched two files is a slip, not a request for a
            # directory named out.ugc: as cp does, several inputs want a directory.
            if len(inputs) > 1 and out.suffix and not out.is_dir() and not output.endswith(("/", os.sep)):
                raise OutputError(
                    f"{len(inputs)} inputs need -o to be a directory, and {output} "
                    f"names a file (create the directory first, or end it with /)"
                )
        if STDIO in inputs and not self.writes_stdout and self.directory is not None:
            raise OutputError("stdin input needs a named output file or -o -")
        targets = [self.target(i) for i in inputs]
        for source, target in zip(inputs, targets):
            if STDIO not in (source, target) and Path(target).resolve() == Path(source).resolve():
                raise OutputError(f"output {target} is the input itself; refusing to overwrite it")
        named = [str(Path(t).resolve()) for t in targets if t != STDIO]
        if len(set(named)) != len(named):
            raise OutputError(
                "two inputs would be written to the same output (rename one, or run them apart)"
            )

    def target(self, name: str) -> str | Path:
        if self.writes_stdout:
            return STDIO
        if self.directory is not None:
            return self.directory / (Path(name).stem + self.suffix)
        if self.output is not None:
            return Path(self.output)
        if name == STDIO:
            return STDIO
        return Path(name).parent / (Path(name).stem + self.suffix)

    def write(self, target: str | Path, data: bytes, source: str | None = None) -> None:
        if target == STDIO:
            try:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                raise ReaderGoneError("the reader of stdout closed the pipe") from None
            return
        target = Path(target)
        if source not in (None, STDIO) and target.exists() and target.resolve() == Path(source).resolve():
            raise OutputError("refusing to overwrite the input file")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(target, data)
        except OSError as e:
            raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
