"""Where the commands may write: never over a user's files, never a partial result left behind.

Rule for every output directory (preprocess --out, fit's run dir, evaluate / compare --out): it must
be new, empty, or one this tool wrote before, recognised by its marker file `MARKER` (a JSON list of
the entries the tool wrote there) or, for an identity, by our own manifest / partial state. Anything
else is refused with one line before any work starts. On failure the entries this run added are
removed again (and the directory itself when this run created it); only names the tool wrote are
ever deleted. Output files (infer --out) must not be directories and their folder must be writable.

One writer per folder: `output_dir` holds the folder's lock (hm_talker.output_lock) for the whole
run, so a second command on the same folder fails at once naming the first; `check_writable_dir`
reports a folder that a running command holds as such, and takes a folder with the lock of a dead
run (killed before it could write its marker) as ours. The lock file is never part of a folder's
entries (not listed in markers, ignored by the checks, not removed as a "new entry").
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hm_talker.errors import InputError
from hm_talker.output_lock import LOCK, OutputLock, check_not_locked, is_lock_name

MARKER = ".hm-talker-output.json"  # names the entries hm-talker wrote into an output directory


def read_marker(out: Path) -> list[str] | None:
    """Entries listed in OUT's marker, or None when OUT has no (readable) marker."""
    try:
        data = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return [f for f in files if _plain_name(f)]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or not at all: written under a temporary name beside it (per process), then
    renamed, so a concurrent reader (another rank, compare) never sees a partial or empty file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """`path` holds `text` (UTF-8) whole or not at all (:func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_marker(out: Path, command: str, names) -> None:
    """Record `names` (entries directly inside OUT) as written by `command`, atomically."""
    out = Path(out)
    names = sorted({n for n in names if _plain_name(n) and n != MARKER and not is_lock_name(n)}
                   | set(read_marker(out) or []))
    tmp = out / (MARKER + ".partial")
    tmp.write_text(json.dumps({"tool": "hm-talker", "command": command, "files": names}, indent=1))
    os.replace(tmp, out / MARKER)


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def check_writable_dir(out: Path, owned=lambda entries: False, what: str = "--out") -> Path | None:
    """Refuse an output directory that is a file, unwritable, or holds files that are not ours.

    `owned(entries)` may accept a non-empty directory by its content (e.g. our manifest). Returns
    the outermost folder that does not exist yet (OUT or a parent the caller will create with it),
    None when OUT exists: on failure exactly that folder is removed again."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, f"{what} exists and is not a directory")
    if out.is_dir():
        check_not_locked(out, what)  # a running command's folder: say who holds it
        listing = set(os.listdir(out))
        entries = {e for e in listing if not is_lock_name(e)}
        # a lock left by a killed run: that run found the folder new, empty or ours and wrote the rest
        stale = LOCK in listing
        if entries and MARKER not in entries and not stale and not owned(entries):
            raise InputError(out, f"{what} is a non-empty directory that hm-talker did not write "
                                  "(choose a new or empty directory)")
        _probe_write(out)
        return None
    parent = _existing_parent(out)
    if not parent.is_dir():
        raise InputError(out, f"{what} is inside {parent}, which is not a directory")
    _probe_write(parent)
    top = out.absolute()
    while top.parent != parent:
        top = top.parent
    return top


def _existing_parent(p: Path) -> Path:
    p = p.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_write(folder: Path) -> None:
    """Fail now (not after the work) when `folder` cannot take a new file: read-only, no permission."""
    try:
        fd, name = tempfile.mkstemp(prefix=".hm-talker-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise InputError(folder, f"cannot write here ({exc.strerror or exc})") from None


def check_output_file(path, suffixes: tuple[str, ...] = (".mp4",), what: str = "--out") -> Path:
    """An output file path: not a directory, a known suffix, in a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, f"{what} is a directory; give a file name such as out.mp4")
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(path, f"{what} must end in {' or '.join(suffixes)}")
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise InputError(path, f"{what} is inside {parent}, which is not a directory")
    _probe_write(parent)
    return path


@contextmanager
def output_dir(out, command: str, owned=lambda entries: False, what: str = "--out") -> Iterator[Path]:
    """Guard a command writing into directory OUT (see the module docstring).

    OUT's lock is held from the check to the end (OUT is created for it when new). On success the
    entries added are recorded in OUT's marker; on any error (an interrupt too) they are removed,
    and OUT as well when this run created it."""
    out = Path(out)
    created = check_writable_dir(out, owned, what)
    lock = OutputLock(out, command, what).acquire()
    try:
        before = set(os.listdir(out))
        try:
            yield out
        except OSError as exc:  # a full or read-only disk while writing: name the output, not a temp file
            remove_new_entries(out, before, created)
            raise InputError(out, f"writing failed ({exc.strerror or exc})") from None
        except BaseException:
            remove_new_entries(out, before, created)
            raise
        if out.is_dir():
            write_marker(out, command, set(os.listdir(out)) - {MARKER})
    finally:
        lock.release()


def remove_new_entries(out: Path, before: set[str], created: Path | None) -> None:
    """Delete what appeared in OUT since `before` (the folder `created`, OUT or a new parent of
    it, when this run created it); nothing else."""
    out = Path(out)
    if created is not None:
        shutil.rmtree(out, ignore_errors=True)
        p = out.absolute().parent
        top = Path(created).absolute()
        while p == top or top in p.parents:  # new parents go only while empty (another job may use them)
            try:
                p.rmdir()
            except OSError:
                break
            p = p.parent
        return
    if not out.is_dir():
        return
    for name in set(os.listdir(out)) - before:
        if is_lock_name(name):  # the lock goes when its holder releases it
            continue
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
