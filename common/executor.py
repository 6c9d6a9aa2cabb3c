"""Where chunked work runs: in this process (``local``, the default; Dask is never imported) or as tasks on a
Dask cluster (``dask``: a running scheduler at ``tcp://host:8786``, or ``local:N``, a ``LocalCluster`` of N
single-threaded worker processes on this machine).

A task is a module-level function called with plain arguments (ids, paths, settings; never a model object).
The scheduler may run a task twice (a worker dies, a result is lost), so every task must be harmless to rerun:
it skips work whose output is already complete and writes to a temporary name, then renames.
"""
from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DataError

EXECUTORS = ("local", "dask")
_LOCAL = re.compile(r"^local:(.*)$")
_WORKERS = re.compile(r"^[0-9]{1,9}$")
_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")     # tcp://host:port
QUIET = logging.CRITICAL      # the workers' own log of a failed task would print a traceback beside our one line
CONNECT_TIMEOUT = "30s"       # a scheduler that accepts the connection but answers slowly (a busy or distant one)
PROBE_TIMEOUT_S = 5           # the TCP probe before it: a refused or unknown address is reported at once


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ExecutorSpec:
    """``kind`` local or dask; ``scheduler`` a Dask scheduler address or ``local:N`` (dask only)."""

    kind: str = "local"
    scheduler: str | None = None

    @classmethod
    def parse(cls, kind: str | None, scheduler: str | None) -> ExecutorSpec:
        kind = kind or "local"
        scheduler = scheduler or None
        if kind not in EXECUTORS:
            raise DataError(f"--executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
        if kind == "local":
            if scheduler:
                raise DataError(f"--scheduler {scheduler!r} needs --executor dask (EXECUTOR=dask)")
            return cls()
        if not scheduler:
            raise DataError("--executor dask needs --scheduler: tcp://host:8786 (a running 'dask scheduler') "
                            "or local:N (N worker processes on this machine)")
        local = _LOCAL.match(scheduler)
        if local:
            cores = machine_cores()
            if not (_WORKERS.match(local.group(1)) and 1 <= int(local.group(1)) <= cores):
                raise DataError(f"--scheduler {scheduler!r}: local:N needs a whole number 1 <= N <= {cores} "
                                f"(the cores of this machine; more workers only compete for them)")
            return cls("dask", scheduler)
        address = _ADDRESS.match(scheduler)
        if not local and not (address and 1 <= int(address.group(2)) <= 65535):
            raise DataError(f"--scheduler {scheduler!r}: expected tcp://host:port or local:N (a port 1-65535)")
        return cls("dask", scheduler)

    @property
    def label(self) -> str:
        """``local``, ``dask:N`` for a local cluster, ``dask`` for a remote scheduler."""
        local = _LOCAL.match(self.scheduler or "")
        return self.kind if self.kind == "local" else f"dask:{local.group(1)}" if local else "dask"

    def open(self) -> Executor:
        return LocalExecutor() if self.kind == "local" else DaskExecutor(self.scheduler)


def add_executor_flags(parser) -> None:
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="run the chunks here (local, default) or as Dask tasks (dask)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="with --executor dask: tcp://host:8786 of a running scheduler, or local:N for "
                             "N worker processes on this machine")


def executor_spec(args) -> ExecutorSpec:
    return ExecutorSpec.parse(getattr(args, "executor", None), getattr(args, "scheduler", None))


class Executor:
    """Runs ``fn(item)`` for every item and yields ``(index, result)`` as tasks finish, with a progress bar."""

    label = "local"
    workers = 1                # processes that run tasks
    gpu_workers = 0
    # True: tasks run here, in order, one at a time, so a caller may give all its work to one task (one input
    # pipeline) or one video per task (a bar of videos), and a task may show its own progress. False: tasks run
    # in other processes, side by side, and the executor shows a bar of finished tasks.
    in_process = True

    def map(self, fn: Callable, items: Sequence[Any], desc: str, unit: str = "chunk",
            gpu: bool = False) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bar(total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None)


class LocalExecutor(Executor):
    """In this process, in order."""

    def map(self, fn, items, desc, unit="chunk", gpu=False):
        with _bar(len(items), desc, unit) as bar:
            for i, item in enumerate(items):
                result = fn(item)
                bar.update(1)
                yield i, result


class DaskExecutor(Executor):
    """Tasks on a Dask cluster; the client shows a bar as tasks finish and prints the dashboard address.

    Workers are processes started by spawn (Dask's default), one thread each for ``local:N``; start remote
    GPU workers with ``--nthreads 1 --resources GPU=1`` so that each GPU runs one TensorFlow process: tasks
    marked ``gpu`` then ask for one GPU each."""

    in_process = False

    def __init__(self, scheduler: str):
        import dask
        from distributed import Client, LocalCluster

        self.cluster, self.client = None, None
        local = _LOCAL.match(scheduler)
        try:
            if local:
                with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
                    self.cluster = LocalCluster(n_workers=int(local.group(1)), threads_per_worker=1,
                                                processes=True, dashboard_address=":0", silence_logs=QUIET)
                self.client = Client(self.cluster)
            else:
                _probe(scheduler)
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:        # ValueError: an address Dask cannot use
            self.close()
            raise DataError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        self.gpu_workers = sum(1 for w in workers.values() if w.get("resources", {}).get("GPU"))
        self.workers = max(1, len(workers))     # a cluster without workers yet runs tasks when one joins
        self.label = f"dask:{len(workers)}"
        print(f"dask: {len(workers)} workers at {self.client.scheduler.address}, dashboard "
              f"{self.client.dashboard_link}", flush=True)

    def map(self, fn, items, desc, unit="chunk", gpu=False):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        resources = {"GPU": 1} if gpu and self.gpu_workers else None
        name = getattr(fn, "__name__", "task")
        futures = [self.client.submit(fn, item, key=f"{name}-{i}-{os.urandom(4).hex()}", resources=resources,
                                      pure=False) for i, item in enumerate(items)]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            with _bar(len(futures), desc, unit) as bar:
                for future in as_completed(futures):
                    try:
                        result = future.result()   # a task's DataError comes back as itself: one line
                    except KilledWorker as e:
                        raise DataError(f"dask: task {index[future.key]} of {desc!r} lost its worker too many times "
                                        f"({e}); see the workers' logs (memory, crashes)") from None
                    bar.update(1)
                    yield index[future.key], result
                    future.release()
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _probe(scheduler: str) -> None:
    """Open and close a TCP connection to ``tcp://host:port``: a refused port or an unknown host raises at
    once (Dask's client would retry it for its whole timeout); a silent host is left to the client's timeout."""
    address = _ADDRESS.match(scheduler)
    host, port = address.group(1).strip("[]"), int(address.group(2))
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except TimeoutError:
        return
