"""CPU time and memory of a process we started, from /proc (Linux only)."""
from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: str) -> list[str]:
    with open(path, "rb") as f:
        raw = f.read().decode()
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), in seconds."""
    fields = _stat_fields(f"/proc/{pid}/stat")
    # After the name: state(3) ppid(4) … utime is field 14, stime field 15 → indexes 11 and 12 here.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def minor_faults(pid: int) -> int:
    """Minor page faults of the whole process so far (each costs microseconds, far more in a VM)."""
    return int(_stat_fields(f"/proc/{pid}/stat")[7])


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds by thread group: 'main' (the thread whose id is the pid: the event loop) and 'other'
    (worker threads: the crypto pool, resolver threads)."""
    out = {"main": 0.0, "other": 0.0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            fields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # the thread ended meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        out["main" if int(tid) == pid else "other"] += seconds
    return out


def _status_kib(pid: int, name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM: the peak resident set size since start or since the last reset_peak_rss()."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0, our own processes only). False if the kernel refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Snapshot:
    """CPU seconds of a process: total, user and system; the event-loop thread and the other threads; and its
    minor page faults."""
    cpu: float
    main: float
    other: float
    faults: int = 0
    user: float = 0.0
    system: float = 0.0

    @classmethod
    def of(cls, pid: int) -> Snapshot:
        threads = thread_cpu_seconds(pid)
        fields = _stat_fields(f"/proc/{pid}/stat")
        user, system = int(fields[11]) / _TICKS, int(fields[12]) / _TICKS
        return cls(user + system, threads["main"], threads["other"], int(fields[7]), user, system)

    def since(self, earlier: Snapshot) -> Snapshot:
        return Snapshot(self.cpu - earlier.cpu, self.main - earlier.main, self.other - earlier.other,
                        self.faults - earlier.faults, self.user - earlier.user, self.system - earlier.system)


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all CPUs, from /proc/stat. Busy excludes
    idle, iowait and steal."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / _TICKS, steal / _TICKS
