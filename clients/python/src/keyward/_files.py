"""The one place the package writes a secret to disk: credential files (Vertex).

Google's libraries read a service account only from a file named by
``GOOGLE_APPLICATION_CREDENTIALS``, so for an ``env`` entry marked ``"file": true`` the secret is
written to a file that only this user can read:

* one private directory per process, made by :func:`tempfile.mkdtemp` (mode 0700) under
  ``$XDG_RUNTIME_DIR`` when set (a per-user tmpfs on most Linux systems), else the temporary
  directory;
* each file created with ``O_CREAT | O_EXCL`` and mode 0600, never following a link;
* one file per distinct content (named by a keyed hash, so the name says nothing about it), reused
  while it exists;
* the directory and its files removed when the interpreter exits (``atexit``), by the process that
  made them only (a forked child leaves its parent's files alone);
* and on SIGTERM and SIGHUP, whose default handlers end the process without ``atexit``: when a
  file is written in the main thread, each of the two whose handler is still the default gets
  one that removes the directory, restores the default and sends the signal again, so the
  process still ends killed by that signal. A handler the program installed is left alone (it
  may call :func:`remove_private_files`). SIGINT raises ``KeyboardInterrupt``, which runs
  ``atexit``; nothing can be done on SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import signal
import tempfile
import threading
from types import FrameType

__all__ = ["private_file", "remove_private_files"]

_log = logging.getLogger("keyward")

_lock = threading.RLock()  # re-entered by a signal handler that runs while it is held
_name_key = secrets.token_bytes(32)  # keys the file names: no stable fingerprint of a secret
_directory: str | None = None
_owner_pid: int | None = None
_files: dict[str, str] = {}
_signals_handled = False


def private_file(content: str) -> str:
    """The path of a 0600 file holding ``content``, made on first use and reused after."""
    digest = hmac.new(_name_key, content.encode("utf-8"), hashlib.sha256).hexdigest()
    with _lock:
        path = _files.get(digest)
        if path is not None and os.path.exists(path):
            return path
        path = os.path.join(_private_directory(), f"{digest[:32]}.json")
        if os.path.lexists(path):  # removed by someone, or left half-written: start again
            os.unlink(path)
        _write_new(path, content.encode("utf-8"))
        _files[digest] = path
        _log.debug("wrote a credential file in the private directory")
        _handle_signals()
        return path


def remove_private_files() -> None:
    """Removes the private directory and the credential files in it, now.

    They are removed at exit anyway (``atexit``, and on SIGTERM or SIGHUP when the program left
    their handlers as they were); call this from a signal handler of your own, or once the
    credentials are no longer needed. A variable pointing at a removed file points at nothing,
    until the next provisioning writes the file again.
    """
    global _directory
    with _lock:
        _remove_all()
        _directory = None
        _files.clear()


def _private_directory() -> str:
    """This process's private directory (mode 0700), made on first use."""
    global _directory, _owner_pid
    if _directory is None or _owner_pid != os.getpid() or not os.path.isdir(_directory):
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        parent = runtime if runtime and os.path.isdir(runtime) else None
        _directory = tempfile.mkdtemp(prefix="keyward-", dir=parent)
        os.chmod(_directory, 0o700)
        _owner_pid = os.getpid()
        _files.clear()
    return _directory


def _write_new(path: str, data: bytes) -> None:
    """Creates ``path`` (it must not exist) with mode 0600 and writes ``data``."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


@atexit.register
def _remove_all() -> None:
    """Removes the private directory and its files (only in the process that made them)."""
    if _directory is not None and _owner_pid == os.getpid():
        shutil.rmtree(_directory, ignore_errors=True)


def _handle_signals() -> None:
    """Installs :func:`_on_signal` for SIGTERM and SIGHUP where their handler is the default
    (once, from the main thread: Python sets handlers nowhere else)."""
    global _signals_handled
    if _signals_handled or threading.current_thread() is not threading.main_thread():
        return
    _signals_handled = True
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)  # no SIGHUP on Windows
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            with contextlib.suppress(ValueError, OSError):  # e.g. in a subinterpreter
                signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Removes the private directory, then dies of the signal as the default handler would."""
    _remove_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
