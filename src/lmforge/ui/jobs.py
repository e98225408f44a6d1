"""Training processes the UI started: each is a normal `python -m lmforge <command> ...` process,
so a run started in the browser is the same as one started in a terminal (and survives nothing
the terminal one would not). The UI keeps their last output lines to show why one failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.errors import LmforgeError

OUTPUT_LINES = 40
CANCEL_GRACE_S = 15.0  # after Ctrl-C (SIGINT), how long a run may take to stop before it is killed


@dataclass
class Job:
    process: subprocess.Popen[str]
    output: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES))

    def alive(self) -> bool:
        return self.process.poll() is None


class Jobs:
    """Processes by run folder; one live process per folder."""

    def __init__(self) -> None:
        self.jobs: dict[Path, Job] = {}
        self.lock = threading.Lock()

    def start(self, folder: Path, args: list[str]) -> Job:
        """Run `python -m lmforge ARGS` for the run in `folder`, its output collected in the background."""
        with self.lock:
            if folder in self.jobs and self.jobs[folder].alive():
                raise LmforgeError(f"a process is already running for {folder.name}")
            process = subprocess.Popen([sys.executable, "-m", "lmforge", *args], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                       encoding="utf-8", errors="replace", start_new_session=True)
            job = self.jobs[folder] = Job(process)
        threading.Thread(target=_collect, args=(job,), daemon=True).start()
        return job

    def alive(self, folder: Path) -> bool | None:
        """Whether the UI's process for `folder` lives; None when it started none."""
        job = self.jobs.get(folder)
        return None if job is None else job.alive()

    def output(self, folder: Path) -> list[str]:
        job = self.jobs.get(folder)
        return list(job.output) if job else []

    def cancel(self, folder: Path) -> None:
        """Stop a run as Ctrl-C would (its last checkpoint stays resumable); kill it if it lingers."""
        job = self.jobs.get(folder)
        if job is None or not job.alive():
            raise LmforgeError(f"no process of this UI is running for {folder.name}")
        os.killpg(job.process.pid, signal.SIGINT)
        try:
            job.process.wait(CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(job.process.pid, signal.SIGKILL)
            job.process.wait()

    def stop_all(self) -> None:
        """On shutdown. A run's output goes to this process, so it would die at its next line anyway;
        stopped as by Ctrl-C, it stays resumable."""
        for folder, job in list(self.jobs.items()):
            if job.alive():
                self.cancel(folder)


def _collect(job: Job) -> None:
    assert job.process.stdout is not None
    for line in job.process.stdout:  # text mode: tqdm's carriage returns end lines too
        if line.strip():
            job.output.append(line.rstrip())
