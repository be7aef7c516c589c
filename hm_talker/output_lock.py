"""One writer per output folder: an exclusive lock file held for the whole run.

Two `preprocess --out X` (or two `fit` of one run.dir/run.name, two `evaluate --out X`) started
together used to both pass the "new, empty or ours" check and then overwrite each other, both
reporting success. The guards of hm_talker.safe_output, hm_talker.training.run_guard and the
preprocess pipeline therefore take this lock before writing and hold it until the run ends.

The lock is the file `LOCK` inside the folder, a JSON record of its holder (pid, host, boot id,
the process's start time, command, start time, SLURM job). It appears atomically, already complete
and already `flock`ed: it is written under a temporary name, locked, then hard-linked to `LOCK`
(link fails when `LOCK` exists, also on NFS); where a filesystem has no hard links it is created
with O_CREAT|O_EXCL instead. A second process finds the file and fails at once with one line
naming the folder and the holder.

A lock whose holder is gone is taken over with a warning when that can be known for certain:
  * on the same host (same hostname and boot): the pid is not running, or runs a different
    program than the one that took the lock (its start time differs: pid reuse), and nobody holds
    the file's flock (where the filesystem supports flock; a held flock always means alive);
  * from a lock of an earlier boot of this host;
  * in SLURM, from an earlier start of the same job (same job id, another restart count: SLURM
    starts a requeued job only after its previous start has ended).
A lock taken on another host is never taken over: whether a pid on another machine still runs
cannot be checked from here (and flock on network filesystems is not reliable everywhere). The
error says so and names the file to delete once that run is known to be gone.

The lock file is not part of a folder's contents: the checks of safe_output ignore it, markers
never list it, and it is removed when the run ends, on success, failure, Ctrl-C or SIGTERM (the
CLI turns SIGTERM into KeyboardInterrupt); a SIGKILL leaves it behind, and the next run on the same
host takes it over. Under DDP only the job's first process (rank zero) takes it, via the guards.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from pathlib import Path

from hm_talker.errors import InputError

log = logging.getLogger("hm_talker")

LOCK = ".hm-talker.lock"  # the lock file inside a locked output folder
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.EBADF}  # fs without flock
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}  # fs without hard links
_TRIES = 50  # attempts to create the lock while concurrent takeovers settle (each waits RETRY_S)
RETRY_S = 0.05


def is_lock_name(name: str) -> bool:
    """The lock file or one of its temporary names (never a folder's content)."""
    return name == LOCK or name.startswith(LOCK + ".")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot ('' where /proc is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name may hold spaces


def _slurm_job() -> tuple[str, str]:
    """(job id, restart count) inside SLURM, ('', '') elsewhere."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")
    return job, os.environ.get("SLURM_RESTART_COUNT", "0") if job else ""


def holder_record(command: str) -> dict:
    pid = os.getpid()
    job, restart = _slurm_job()
    return {"tool": "hm-talker", "command": command, "pid": pid, "host": socket.gethostname(),
            "boot_id": _boot_id(), "proc_start": _proc_start(pid),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "slurm_job": job, "slurm_restart": restart}


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _try_flock(fd: int) -> bool | None:
    """Take the flock of `fd` without waiting: True taken, False held elsewhere, None unsupported."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in _NO_FLOCK:
            return None
        raise


def _describe(h: dict) -> str:
    what = f"{h.get('command')} " if h.get("command") else ""
    return f"{what}pid {h.get('pid', '?')} on host {h.get('host', '?')} since {h.get('started', '?')}"


def _gone(h: dict, me: dict) -> str | None:
    """Why the holder `h` has certainly ended (a phrase for the warning), None when it may run."""
    if not isinstance(h, dict):
        return None
    if me["slurm_job"] and h.get("slurm_job") == me["slurm_job"] \
            and str(h.get("slurm_restart")) != me["slurm_restart"]:
        return f"an earlier start of SLURM job {me['slurm_job']}"
    if h.get("host") != me["host"]:
        return None  # another machine: its pids cannot be checked from here
    if h.get("boot_id") and me["boot_id"] and h.get("boot_id") != me["boot_id"]:
        return "from before this host's last reboot"
    try:
        pid = int(h.get("pid"))
    except (TypeError, ValueError):
        return None
    if pid == me["pid"]:
        return None  # this very process: a nested second guard of one folder is a bug, not stale
    if not _pid_running(pid):
        return "no longer running"
    if h.get("proc_start") and _proc_start(pid) not in ("", h.get("proc_start")):
        return "no longer running (its pid now belongs to another process)"
    return None


def _read_holder(path: Path) -> dict | None:
    """The holder record; None when the file is gone. Waits a moment for a file being written
    (only the O_EXCL fallback shows a file before its content)."""
    for _ in range(20):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            text = ""
        try:
            data = json.loads(text)
            return data if isinstance(data, dict) else {}
        except ValueError:
            time.sleep(RETRY_S)
    return {}


class OutputLock:
    """The exclusive lock of one output folder (see the module docstring).

    `acquire()` creates the folder (and missing parents) when needed; `release()` removes the lock
    file when it is still this lock's, and the folders `acquire()` created when they are empty."""

    def __init__(self, folder, command: str = "", what: str = "--out"):
        self.folder, self.command, self.what = Path(folder), command, what
        self.path = self.folder / LOCK
        self.fd: int | None = None
        self.created: list[Path] = []  # folders acquire() made, innermost first

    # ------------------------------------------------------------------ acquiring
    def acquire(self) -> "OutputLock":
        self._make_folder()
        me = holder_record(self.command)
        try:
            for _ in range(_TRIES):
                if self._create(me):
                    return self
                holder = _read_holder(self.path)
                if holder is None:  # released meanwhile: try again
                    continue
                why = _gone(holder, me)
                if why is None:
                    raise self._busy(holder, me)
                self._take_over(holder, why)
            raise self._busy(_read_holder(self.path) or {}, me)
        except BaseException:
            self._remove_created()
            raise

    def _make_folder(self) -> None:
        missing = []
        p = self.folder.absolute()
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # a concurrent run made it: not ours to remove
                continue
            except OSError as exc:
                raise InputError(self.folder, f"cannot write here ({exc.strerror or exc})") from None
            self.created.insert(0, d)
        if not self.folder.is_dir():
            raise InputError(self.folder, f"{self.what} exists and is not a directory")

    def _create(self, me: dict) -> bool:
        """Make `LOCK` appear complete and flocked; False when it exists already."""
        import tempfile

        data = json.dumps(me, indent=1).encode()
        try:
            fd, tmp = tempfile.mkstemp(prefix=LOCK + ".", dir=self.folder)
        except OSError as exc:
            raise InputError(self.folder, f"cannot write here ({exc.strerror or exc})") from None
        linked = False
        try:
            os.fchmod(fd, 0o644)  # readable by other users' runs, which name the holder from it
            os.write(fd, data)
            _try_flock(fd)  # held from the moment LOCK appears (None: no flock here, pids only)
            os.link(tmp, self.path)
            linked = True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise InputError(self.folder, f"cannot write here ({exc.strerror or exc})") from None
            return self._create_exclusive(data)
        finally:
            if linked:
                self.fd = fd
            else:
                os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return True

    def _create_exclusive(self, data: bytes) -> bool:
        """The fallback for filesystems without hard links: O_CREAT|O_EXCL, then the content."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise InputError(self.folder, f"cannot write here ({exc.strerror or exc})") from None
        try:
            _try_flock(fd)
            os.write(fd, data)
        except OSError as exc:  # e.g. a full disk: no half-written lock left behind
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise InputError(self.folder, f"cannot write here ({exc.strerror or exc})") from None
        self.fd = fd
        return True

    def _take_over(self, holder: dict, why: str) -> None:
        """Remove the stale `LOCK` of `holder`, unless another process got to it first."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            got = _try_flock(fd)
            if got is False:  # held: its holder lives (another pid namespace) or a takeover runs
                time.sleep(RETRY_S)
                return
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            if same and _read_holder(self.path) == holder:
                os.unlink(self.path)
                log.warning("%s: taking over the lock of %s, which is %s (%s)", self.folder,
                            _describe(holder), why, self.path)
        except FileNotFoundError:
            return
        finally:
            os.close(fd)

    def _busy(self, holder: dict, me: dict) -> InputError:
        if not holder.get("pid") or not holder.get("host"):  # not our record (or emptied by a crash)
            return InputError(self.folder, f"holds a lock file that names no hm-talker run ({self.path}): "
                                           "delete it if no hm-talker command is writing here")
        text = f"in use by another hm-talker run ({_describe(holder)})"
        if holder.get("host") != me["host"]:
            text += ("; that host's processes cannot be checked from here: once that run is gone, "
                     f"delete {self.path}")
        else:
            text += f"; wait for it to end or choose another {self.what}"
        return InputError(self.folder, text)

    # ------------------------------------------------------------------ releasing
    def release(self) -> None:
        if self.fd is not None:
            try:
                if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                    os.unlink(self.path)  # only our own file: a removed folder may hold another's
            except OSError:
                pass
            try:  # explicitly: a forked child (a loader worker) may still share this descriptor
                import fcntl

                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for d in self.created:  # innermost first; only while empty (another run may use it now)
            try:
                d.rmdir()
            except OSError:
                break
        self.created = []

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_not_locked(folder, what: str = "--out") -> None:
    """Fail now with the holder's line when `folder` is locked by a run that may still be going
    (so that a busy folder is reported as such, not as a folder with files we did not list)."""
    path = Path(folder) / LOCK
    if not path.is_file():
        return
    holder = _read_holder(path)
    if holder is None:
        return
    me = holder_record("")
    if _gone(holder, me) is None:
        raise OutputLock(folder, what=what)._busy(holder, me)
