"""Round trip 2 of a fetch: ONE `tar -C RUN -cf - -- <files>` (files as argv, never a shell string),
streamed over a raw channel and unpacked while it arrives.

Headers are decoded by `tarfile.TarInfo.frombuf` (ustar, GNU long names, pax `path`/`size`), every field
checked before it is used: a malformed header is refused at once, never looped on. File data is handed out
as zero-copy slices of the chunks the transport returned to a writer thread that writes every byte (a short
write is completed or fails). Only the members asked for, as regular files, are accepted. A stream that
brings no byte for the instance's `stall_timeout` fails, so a frozen instance never hangs the fetch.
`bench/transfer.py` measures this reader against tarfile's own stream mode and rsync.
"""

from __future__ import annotations

import errno
import os
import queue
import sys
import tarfile
import threading
from pathlib import Path

from ..errors import CheckFailed, OrchError, RemoteError
from ..transport.base import Stalled
from .inspect import safe_relpath

READ_SIZE = 4 << 20                                   # largest read from the stream
TAR_BLOCKING = "256"                                  # 128 KiB tar records: fewer, larger writes
MAX_MEMBER = 1 << 44                                  # 16 TiB: anything larger in a header is garbage
MAX_PAX = 1 << 20                                     # a pax header larger than 1 MiB is not one tar writes


class Interrupted(Exception):
    """The archive ended before it was complete."""


class _Source:
    """The remote tar's stdout; counts the bytes received, for the message when it breaks off."""

    def __init__(self, proc):
        self.proc = proc
        self.bytes = 0

    def read(self, n: int = READ_SIZE) -> bytes:
        data = self.proc.read(n)
        self.bytes += len(data)
        return data


def receive(transport, run_dir: str, members: list[str], partial: Path, where: str, *, stall_timeout: float,
            bar, done_before: int, n_entries: int, total: int, prefix: str = "adapter/") -> set[str]:
    """Stream `members` from the instance into `partial`; the members written."""
    argv = ["tar", "-C", run_dir, "-b", TAR_BLOCKING, "-cf", "-", "--", *members]
    wanted = set(members)
    written: set[str] = set()
    proc = transport.open(argv)
    proc.set_timeout(stall_timeout)
    source = _Source(proc)
    switch = sys.getswitchinterval()
    try:
        # Three threads pass the bytes along (paramiko's reader, this one, the writer): hand the GIL over
        # sooner than the default 5 ms so that none of them idles waiting for it (~10-30% faster here).
        sys.setswitchinterval(min(switch, 0.001))
        unpack(source, wanted, partial, written, bar)
    except (OrchError, KeyboardInterrupt):
        _kill(proc)
        raise
    except Exception as exc:  # the connection or the remote tar went away: keep what is complete
        _kill(proc)
        stderr = _stderr(proc)
        done = done_before + sum(1 for m in written if m.startswith(prefix) and m != f"{prefix}manifest.json")
        if isinstance(exc, Stalled):
            why = f"no data from the instance for {exc.seconds:g} s (stall_timeout)"
        elif isinstance(exc, Interrupted):
            why = str(exc)
        else:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__}: the connection closed"
        raise RemoteError(
            f"{where}: the transfer was interrupted after {source.bytes / 1e6:.1f} MB of about {total / 1e6:.1f} MB "
            f"({why}){' - ' + stderr if stderr else ''}; {done} of {n_entries} files are complete in "
            f"{partial}", hint="run the same command again: it resumes, transferring only what is missing") from None
    finally:
        sys.setswitchinterval(switch)
    try:
        code = proc.wait(60)
    except Exception as exc:
        raise RemoteError(f"{where}: the remote tar did not finish: {exc}",
                          hint="run the same command again: it resumes") from None
    if code != 0:
        raise RemoteError(f"{where}: `tar` on the instance exited with {code}: {_stderr(proc) or '(no stderr)'}",
                          hint="run the same command again: it resumes; if it repeats, check the run "
                               f"folder {run_dir} on the instance")
    missing = sorted(wanted - written)
    if missing:
        raise RemoteError(f"{where}: the transfer ended without {', '.join(missing)}",
                          hint="run the same command again: it resumes")
    return written


def unpack(source: _Source, wanted: set[str], partial: Path, written: set, bar) -> None:
    root = os.path.realpath(partial)
    stream = TarStream(source.read)
    seen: set[str] = set()
    with _Writer(written) as writer:
        for name, kind, size in stream.members():
            if name not in wanted or name in seen or not safe_relpath(name):
                raise CheckFailed(f"the instance sent an unexpected archive member {name!r}; refused",
                                  hint="only the files asked for are accepted; check `tar` on the instance")
            if kind not in tarfile.REGULAR_TYPES or kind == tarfile.GNUTYPE_SPARSE:
                raise CheckFailed(f"the instance sent {name!r} as a link or special file; refused",
                                  hint="adapter files must be regular files")
            target = os.path.join(root, *name.split("/"))
            if os.path.commonpath([root, os.path.realpath(os.path.dirname(target))]) != root:
                raise CheckFailed(f"archive member {name!r} would land outside {partial}; refused")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.islink(target):
                os.unlink(target)
            seen.add(name)
            writer.begin(name, target)
            for piece in stream.data(size):
                writer.put(piece)
                bar.advance(len(piece))
            writer.end()


def _damaged(what: str) -> CheckFailed:
    return CheckFailed(f"the instance sent a damaged archive ({what}); refused",
                       hint="run the same command again; if it repeats, check `tar` on the instance")


class TarStream:
    """A tar archive read from a byte stream as it arrives; every size is checked before it is trusted.

    File data is handed out as zero-copy slices of the chunks the transport returned, so that the only
    per-byte work in Python's hands is one write (in `_Writer`'s thread).
    """

    def __init__(self, read):
        self._read = read
        self._chunk = memoryview(b"")

    def _more(self) -> None:
        data = self._read(READ_SIZE)
        if not data:
            raise Interrupted("the archive ended early: the instance closed the stream before the last file "
                              "(connection closed, or the remote tar was killed)")
        self._chunk = memoryview(data)

    def _exact(self, n: int) -> bytes:
        parts = []
        while n:
            if not self._chunk:
                self._more()
            piece, self._chunk = self._chunk[:n], self._chunk[n:]
            parts.append(bytes(piece))
            n -= len(piece)
        return b"".join(parts)

    def data(self, n: int):
        """The next `n` bytes, as memoryview slices."""
        while n > 0:
            if not self._chunk:
                self._more()
            piece, self._chunk = self._chunk[:n], self._chunk[n:]
            n -= len(piece)
            yield piece

    def _skip(self, n: int) -> None:
        for _ in self.data(n):
            pass

    def members(self):
        """(name, type, size) per member; the caller reads exactly `size` bytes with `data()` before the next."""
        long_name, pax = None, {}
        while True:
            block = self._exact(tarfile.BLOCKSIZE)
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.EOFHeaderError:
                self._drain()
                return
            except tarfile.HeaderError as exc:
                raise _damaged(str(exc)) from None
            if not 0 <= info.size <= MAX_MEMBER:
                raise _damaged(f"a header gives the size {info.size}")
            padding = -info.size % tarfile.BLOCKSIZE
            if info.type == tarfile.GNUTYPE_LONGNAME:
                if info.size > MAX_PAX:
                    raise _damaged(f"a long-name header of {info.size} bytes")
                long_name = self._exact(info.size).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                self._skip(padding)
                continue
            if info.type == tarfile.XHDTYPE:
                if info.size > MAX_PAX:
                    raise _damaged(f"a pax header of {info.size} bytes")
                pax = pax_records(self._exact(info.size))
                self._skip(padding)
                continue
            if info.type in (tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
                self._skip(info.size + padding)
                continue
            name = pax.get("path") or long_name or info.name
            size = info.size
            if "size" in pax:
                text = pax["size"]
                if not text.isdigit() or int(text) > MAX_MEMBER:
                    raise _damaged(f"bad pax size {text[:40]!r}")
                size = int(text)
            if info.type not in tarfile.REGULAR_TYPES:
                size = 0                                   # links and devices carry no data
            long_name, pax = None, {}
            yield name, info.type, size
            self._skip(-size % tarfile.BLOCKSIZE)

    def _drain(self) -> None:
        """Read the end-of-archive padding, so that the remote tar can finish writing and exit."""
        self._chunk = memoryview(b"")
        while self._read(READ_SIZE):
            pass


def pax_records(data: bytes) -> dict[str, str]:
    """Records 'LEN key=value\\n' of a pax extended header; LEN counts the whole record. Anything else is a
    damaged archive (a zero or too large LEN used to loop forever)."""
    records, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos, pos + 21)
        if space <= pos or not data[pos:space].isdigit():
            raise _damaged("bad pax record length")
        length = int(data[pos:space])
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise _damaged(f"pax record of length {length} at byte {pos} does not fit the header")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq or not key:
            raise _damaged("pax record without key=value")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


class _Writer:
    """Writes chunks in a second thread, overlapping the network reads. Every byte handed over is written:
    a short write is continued, and a write error (disk full, a file-size limit) is raised in the reading
    thread at its next call. What was written is verified afterwards by reading it back from disk."""

    def __init__(self, written: set):
        self.written = written
        self.queue: "queue.Queue" = queue.Queue(maxsize=8)
        self.error: OrchError | None = None
        self.thread = threading.Thread(target=self._run, name="fetch-writer", daemon=True)

    def __enter__(self) -> "_Writer":
        self.thread.start()
        return self

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def begin(self, name: str, target: str) -> None:
        self._check()
        self.queue.put(("begin", name, target))

    def put(self, buf) -> None:
        self._check()
        self.queue.put(buf)

    def end(self) -> None:
        self.queue.put(("end",))

    def __exit__(self, *exc) -> None:
        self.queue.put(None)
        self.thread.join()
        if exc[0] is None:
            self._check()

    def _run(self) -> None:
        fd = name = target = None
        while True:
            item = self.queue.get()
            if item is None:
                break
            if self.error is not None:
                continue                           # drain after a failure
            try:
                if isinstance(item, tuple):
                    if item[0] == "begin":
                        _, name, target = item
                        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    else:
                        os.close(fd)
                        fd = None
                        self.written.add(name)
                else:
                    view = memoryview(item)
                    while view:
                        view = view[os.write(fd, view):]
            except OSError as exc:
                self.error = local_error(target, exc)
            except Exception as exc:  # never die silently: the reader would wait on a full queue
                self.error = OrchError(f"writing {target} failed: {type(exc).__name__}: {exc}")
        if fd is not None:
            os.close(fd)


def local_error(path: str, exc: OSError) -> OrchError:
    hint = "free some space or choose another --dest" if exc.errno in (errno.ENOSPC, errno.EFBIG) else \
        "choose a writable destination with --dest"
    return OrchError(f"cannot write {path}: {exc.strerror or exc}", hint=hint)


def _kill(proc) -> None:
    try:
        proc.kill()
    except Exception:
        pass


def _stderr(proc) -> str:
    try:
        lines = proc.stderr_text().strip().splitlines()
    except Exception:
        return ""
    return " / ".join(lines[-3:])
