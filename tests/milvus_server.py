"""A real Milvus server for the tests and bench/milvus_recall.py: Milvus Lite builds FLAT whatever index is
asked, a server builds the HNSW and IVF_PQ that ``IndexConfig`` names.

The ``milvus`` package (a dev extra) runs a Milvus 2.3 standalone server: ``milvus-server``, a Python
launcher, starts the ``milvus`` binary in the same process group, with embedded etcd and its data, logs and
config under ``--data``. Every port is a free one (the launcher moves the internal ones up from their
defaults), so two servers, or a test run beside the benchmark, do not collide. Milvus 2.3 cannot be told
which address to bind its gRPC ports to (it listens on all of them); clients reach it on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Set (CI sets it) to fail, not skip, when no server can be started.
REQUIRE_ENV = "MAKE_REQUIRE_MILVUS"
#: Seconds a server may take to answer pymilvus (7 s on 2 busy cores, unpacking its binaries included).
STARTUP_S = 180
#: Seconds a stopping server may take before it is killed (2-10 s: its graceful stop is capped at 5 s).
STOP_S = 30
#: The server's components, each reached by the others at the address its ``ip`` setting gives.
ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def server_command() -> str | None:
    """``milvus-server`` beside this Python (a venv need not be on PATH), else on PATH, else None."""
    beside = Path(sys.executable).parent / "milvus-server"
    return str(beside) if beside.is_file() else shutil.which("milvus-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def milvus_server(folder: Path, startup_s: float = STARTUP_S) -> Iterator[str]:
    """Start a server keeping everything in ``folder`` and yield its URI once pymilvus gets an answer;
    stop it (its whole process group) on exit, leaving only its config and logs. Raises RuntimeError when
    it does not come up in time."""
    command = server_command()
    if command is None:
        raise RuntimeError("milvus-server is not installed (pip install milvus)")
    folder.mkdir(parents=True, exist_ok=True)
    port, etcd, peer = _free_port(), _free_port(), _free_port()
    # the embedded etcd listens on 2379/2380 unless its own config says otherwise (ETCD_CONFIG_PATH)
    etcd_config = folder / "embed-etcd.yaml"
    etcd_config.write_text(
        "name: default\n"
        f"listen-client-urls: http://127.0.0.1:{etcd}\nadvertise-client-urls: http://127.0.0.1:{etcd}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
    )
    log_path = folder / "milvus-server.log"
    arguments = ["--data", str(folder / "data"), "--proxy-port", str(port), "--etcd-port", str(etcd)]
    # a stop waits for running tasks up to this many seconds (default 1800)
    arguments += ["--extra-config", "common.gracefulStopTimeout=5"]
    for role in ROLES:  # each component tells the others this address (default: the first network interface)
        arguments += ["--extra-config", f"{role}.ip=127.0.0.1"]
    uri = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [command, *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ETCD_CONFIG_PATH": str(etcd_config)},
            start_new_session=True,
        )
        try:
            _wait_until_up(uri, process, startup_s, folder)
            yield uri
        finally:
            _stop(process)
            for copied in ("bin", "data"):  # the launcher's unpacked binaries (250 MB) and the stored data
                shutil.rmtree(folder / "data" / copied, ignore_errors=True)


def _wait_until_up(uri: str, process: subprocess.Popen, startup_s: float, folder: Path) -> None:
    """Poll ``uri`` with pymilvus until it lists collections; fail at once if the launcher exits."""
    from pymilvus import MilvusClient, MilvusException

    deadline = time.monotonic() + startup_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"milvus-server exited with code {process.returncode}; logs in {folder}")
        try:
            client = MilvusClient(uri, timeout=5)
            client.list_collections()
            client.close()
            return
        except MilvusException as error:  # not listening yet, or still starting its components
            if time.monotonic() > deadline:
                raise RuntimeError(f"Milvus at {uri} did not answer in {startup_s:.0f} s; logs in {folder}") from error
        time.sleep(1)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group (launcher and server), wait up to ``STOP_S`` for all of it to exit, then
    SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, STOP_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while _group_alive(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(process):
            break
    process.wait(timeout=5)


def _group_alive(process: subprocess.Popen) -> bool:
    """Whether a process of the group is still there (the launcher is reaped here, the server by init)."""
    process.poll()
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_indexed(client: Any, collection: str, rows: int, timeout_s: float = 120) -> None:
    """Wait until the server searches all ``rows`` of ``collection`` through its built index: after a flush
    it builds the index on the sealed segments, then loads them in place of the unindexed data (searched
    exactly, or through a temporary IVF index) seconds later, 13 s for 3,000 rows. Segments under 1,024
    rows are never indexed, so a few rows added later would never count."""
    deadline = time.monotonic() + timeout_s
    while True:
        segments = client.list_loaded_segments(collection)
        if sum(s.num_rows for s in segments if s.index_id) >= rows:
            return
        if time.monotonic() > deadline:
            state = [(s.num_rows, s.index_name) for s in segments]
            raise TimeoutError(f"{collection}: {rows} rows not searched through the index in {timeout_s} s: {state}")
        time.sleep(0.5)
