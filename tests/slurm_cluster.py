"""A real SLURM cluster on this machine for tests: munged, slurmctld and one slurmd per fake node.

`SlurmCluster(root, nodes=("n1", "n2")).start()` writes slurm.conf and a munge key under `root`,
starts the daemons in the foreground as child processes (munged as user munge, the SLURM daemons as
root, as Debian's SLURM 22.05 allows) and `stop()` ends them by process id. Every fake node has
`CPUS_PER_NODE` CPUs and the address 127.0.0.1 with its own slurmd port, so a 2-node job runs both
"nodes" here. `env()` is the environment that points sbatch / squeue / scontrol at this cluster.
`unavailable()` says why the cluster cannot run here (None when it can).
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "munged"]
CPUS_PER_NODE = 1  # 2 fake nodes x 1 CPU = the machine's 2 cores; never ask a job for more
MEM_PER_NODE_MB = 4000  # what each fake node offers; jobs ask for --mem=1G


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_if_missing() -> str | None:
    """apt-get install the SLURM packages when a binary is missing; returns a reason on failure."""
    if all(shutil.which(b) for b in BINARIES):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root"
    if not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:  # stale package lists: refresh once
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not all(shutil.which(b) for b in BINARIES):
        return f"apt-get install {' '.join(PACKAGES)} failed: {(r.stderr or r.stdout).strip()[-200:]}"
    return None


def unavailable() -> str | None:
    """Why a SLURM cluster cannot be started here, or None."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "SLURM tests need a POSIX machine"
    if os.geteuid() != 0:
        return "SLURM tests start slurmctld / slurmd as root (not root here)"
    reason = install_if_missing()
    if reason is None and not _has_user("munge"):
        reason = "the munge package did not create the user munge"
    return reason


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class SlurmCluster:
    def __init__(self, root: Path, nodes: tuple[str, ...] = ("n1", "n2")) -> None:
        self.root, self.nodes = Path(root), nodes
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket.2"
        self.procs: list[subprocess.Popen] = []

    # ---- configuration ------------------------------------------------------------------------
    def _write_munge(self) -> None:
        d = self.root / "munge"
        d.mkdir(parents=True, exist_ok=True)
        key = d / "munge.key"
        key.write_bytes(os.urandom(128))
        m = pwd.getpwnam("munge")
        for p in (d, key):
            os.chown(p, m.pw_uid, m.pw_gid)
        os.chmod(d, 0o755)  # the socket directory must be searchable by all (the key stays 0400)
        os.chmod(key, 0o400)
        os.chmod(self.root, 0o755)  # munge walks the socket's parents: not group/other writable

    def _write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        lines = [
            "ClusterName=hmtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            # cred_expire: how long a requeued job waits before it may start again (default 120 s). Starting it
            # sooner (scontrol update StartTime=now) lands on its own revoked credential: "Job credential revoked"
            f"AuthInfo=socket={self.munge_socket},cred_expire=10",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}/%n",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'slurmd-%n.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "KillWait=5",
            "MinJobAge=600",  # keep finished jobs visible to scontrol for a while
            "SchedulerParameters=defer_batch=0",
        ]
        for n in self.nodes:
            lines.append(f"NodeName={n} NodeAddr=127.0.0.1 Port={_free_port()} CPUs={CPUS_PER_NODE} RealMemory={MEM_PER_NODE_MB} State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP")
        for d in ("state", "spool"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join(lines) + "\n")

    def env(self) -> dict:
        """os.environ plus SLURM_CONF of this cluster (inherited by sbatch, srun and the jobs)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # ---- daemons ------------------------------------------------------------------------------
    def _spawn(self, cmd: list[str], log: str, **kw) -> subprocess.Popen:
        out = open(self.root / log, "ab")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                             start_new_session=True, **kw)
        out.close()
        self.procs.append(p)
        return p

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_munge()
        self._write_conf()
        m = self.root / "munge"
        self._spawn(["munged", "--foreground", f"--socket={self.munge_socket}", f"--key-file={m / 'munge.key'}",
                     f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                     f"--seed-file={m / 'munged.seed'}"], "munged.out", user="munge", group="munge")
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged did not create its socket")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        for n in self.nodes:
            self._spawn(["slurmd", "-D", "-N", n, "-f", str(self.conf)], f"slurmd-{n}.out")
        self._wait(self._nodes_idle, timeout, "SLURM nodes did not become idle")
        return self

    def _nodes_idle(self) -> bool:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode}; see {self.root}")
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env(), capture_output=True, text=True)
        states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
        return r.returncode == 0 and all(states.get(n, "").startswith("idle") for n in self.nodes)

    @staticmethod
    def _wait(cond, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.3)
        raise RuntimeError(what)

    def stop(self) -> None:
        """Cancel leftover jobs, then end the daemons (slurmd first, munged last) by process id."""
        subprocess.run(["scancel", "--user=root"], env=self.env(), capture_output=True, timeout=30)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()

    # ---- jobs ---------------------------------------------------------------------------------
    def sbatch(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> str:
        """Submit with `sbatch --parsable ARGS`; returns the job id."""
        r = subprocess.run(["sbatch", "--parsable", *args], env={**self.env(), **(env or {})}, cwd=cwd,
                           capture_output=True, text=True, timeout=60, check=True)
        return r.stdout.strip().split(";")[0]

    def job_states(self, job_id: str) -> list[str]:
        """States of the job (one per array task) from scontrol; [] once forgotten."""
        r = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=self.env(), capture_output=True,
                           text=True)
        return [w.split("=", 1)[1] for line in r.stdout.splitlines() for w in line.split()
                if w.startswith("JobState=")]

    def wait(self, job_id: str, timeout: float) -> list[str]:
        """Wait until every task of the job has ended; returns their final states."""
        done = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}
        deadline = time.time() + timeout
        while time.time() < deadline:
            states = self.job_states(job_id)
            if states and all(s in done for s in states):
                return states
            time.sleep(1.0)
        raise TimeoutError(f"job {job_id} still {self.job_states(job_id)} after {timeout} s")
