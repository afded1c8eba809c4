"""Private Redis topologies for tests: a Sentinel-managed master and a 3-master Redis Cluster.

Everything runs from ``redis-server`` on free 127.0.0.1 ports inside a temporary directory,
without persistence (``--save "" --appendonly no``), and is killed and removed afterwards. The
shared server on 127.0.0.1:6379 is never touched. Every wait is bounded.

Use the pytest fixtures ``sentinel_topology`` and ``cluster_topology`` (module scope; import
them into the test module), or the context managers :func:`sentinel` / :func:`cluster` for a
topology of one's own (e.g. one a test may break). Without ``redis-server`` on ``PATH`` the
fixtures skip -- except under ``AGENTHOOD_REQUIRE_SERVICES=1``, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "ClusterTopology",
    "SentinelTopology",
    "TopologyError",
    "cluster",
    "cluster_topology",
    "redis_binaries",
    "sentinel",
    "sentinel_topology",
]

SERVICE = "agenthood"
START_TIMEOUT = 10.0  # seconds for any one thing to come up


class TopologyError(RuntimeError):
    """A private Redis process or topology did not come up in time."""


def redis_binaries() -> tuple[str, str]:
    """Paths of ``redis-server`` and ``redis-cli``; skips (or fails, see module doc) if absent."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("redis-py is not installed; install agenthood-mw[redis]")
    if server is None or cli is None:
        _unavailable("redis-server / redis-cli are not on PATH")
    assert server is not None and cli is not None
    return server, cli


def _unavailable(why: str) -> None:
    message = f"Redis topologies cannot be started ({why})"
    if os.environ.get("AGENTHOOD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} and AGENTHOOD_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def wait_until(what: str, check: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
    """Poll ``check`` every 50 ms until it is true; :class:`TopologyError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the process may not be listening yet
            last = exc
        time.sleep(0.05)
    raise TopologyError(f"timed out after {timeout} s waiting for {what} (last error: {last!r})")


@dataclass
class RedisProcess:
    """One ``redis-server`` (or ``redis-server --sentinel``) process on 127.0.0.1."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, **options: Any) -> Any:
        """A blocking redis-py client to this process (short timeouts)."""
        import redis

        options.setdefault("socket_timeout", 5.0)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1.0, **options)

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.info(section))

    def kill(self) -> None:
        """SIGKILL the process (idempotent) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _spawn(directory: Path, name: str, port: int, args: list[str], conf: str = "") -> RedisProcess:
    """Start ``redis-server`` in ``directory/name`` and wait (bounded) until it answers PING."""
    server, _ = redis_binaries()
    workdir = directory / name
    workdir.mkdir()
    log = workdir / "redis.log"
    argv = [server]
    if conf:  # sentinel needs a writable config file of its own
        conf_path = workdir / "redis.conf"
        conf_path.write_text(conf)
        argv.append(str(conf_path))
        argv += args
    else:
        argv += [
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(log),
            *args,
        ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    node = RedisProcess(port, proc, log)

    def answers() -> bool:
        if not node.alive:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise TopologyError(f"{name} exited with {proc.returncode}: {tail}")
        with node.client(socket_timeout=1.0) as c:
            return bool(c.ping())

    try:
        wait_until(f"{name} on port {port} to answer PING", answers)
    except BaseException:
        node.kill()
        raise
    return node


@dataclass
class SentinelTopology:
    """A master, one replica of it and one Sentinel (quorum 1) monitoring ``SERVICE``."""

    master: RedisProcess
    replica: RedisProcess
    sentinel: RedisProcess
    service: str = SERVICE

    @property
    def url(self) -> str:
        """The storage URL: ``redis+sentinel://127.0.0.1:<sentinel port>/<service>``."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def master_port(self) -> int:
        """The master's port as the Sentinel tells clients now (``SENTINEL MASTER``, which is
        what redis-py asks; ``GET-MASTER-ADDR-BY-NAME`` names the promoted replica earlier)."""
        with self.sentinel.client(decode_responses=True) as c:
            state = c.execute_command("SENTINEL", "MASTER", self.service)
        if "failover_in_progress" in str(state.get("flags", "")):
            return -1
        return int(state["port"])

    def failover(self) -> None:
        """Kill the master and make the Sentinel promote the replica (bounded wait).

        The replica has acknowledged every write first (``WAIT``), so no state is lost.
        """
        with self.master.client() as c:
            if int(c.execute_command("WAIT", 1, 5000)) < 1:
                raise TopologyError("the replica did not acknowledge the master's writes")
        self.master.kill()
        with self.sentinel.client() as c:
            c.execute_command("SENTINEL", "FAILOVER", self.service)
        wait_until(
            "the Sentinel to promote the replica",
            lambda: (
                self.master_port() == self.replica.port
                and self.replica.info("replication")["role"] == "master"
            ),
        )
        self.master, self.replica = self.replica, self.master


@dataclass
class ClusterTopology:
    """Three masters with ``cluster-enabled yes`` and all 16384 slots assigned, no replicas."""

    nodes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The storage URL: ``redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def client(self) -> Any:
        """A blocking redis-py cluster client."""
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=5.0)


@contextlib.contextmanager
def _tempdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="agenthood-redis-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def sentinel() -> Iterator[SentinelTopology]:
    """Start master + replica + Sentinel; kill them and remove their directory on exit."""
    redis_binaries()
    with _tempdir() as root, contextlib.ExitStack() as processes:
        m_port, r_port, s_port = free_ports(3)
        master = _spawn(root, "master", m_port, ["--repl-diskless-sync-delay", "0"])
        processes.callback(master.kill)
        replica = _spawn(
            root,
            "replica",
            r_port,
            ["--replicaof", "127.0.0.1", str(m_port), "--repl-diskless-sync-delay", "0"],
        )
        processes.callback(replica.kill)
        wait_until(
            "the replica to sync with the master",
            lambda: replica.info("replication").get("master_link_status") == "up",
        )
        conf = "\n".join(
            [
                f"port {s_port}",
                "bind 127.0.0.1",
                f"dir {root / 'sentinel'}",
                f"logfile {root / 'sentinel' / 'redis.log'}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {m_port} 1",
                f"sentinel down-after-milliseconds {SERVICE} 1000",
                f"sentinel failover-timeout {SERVICE} 5000",
                "",
            ]
        )
        sent = _spawn(root, "sentinel", s_port, ["--sentinel"], conf=conf)
        processes.callback(sent.kill)
        topology = SentinelTopology(master, replica, sent)

        def knows_replica() -> bool:  # ... and has its INFO: only then can it promote it
            with sent.client(decode_responses=True) as c:
                replicas = c.execute_command("SENTINEL", "REPLICAS", SERVICE)
            if topology.master_port() != m_port or len(replicas) != 1:
                return False
            fields = replicas[0]  # redis-py parses each entry into a dict
            return (
                fields.get("flags") == "slave"
                and fields.get("master-link-status") == "ok"
                and int(fields.get("info-refresh", 10**9)) < 5000
            )

        wait_until("the Sentinel to see the master and its replica", knows_replica)
        yield topology
        # processes are killed (ExitStack), then the directory is removed (_tempdir)


@contextlib.contextmanager
def cluster(masters: int = 3) -> Iterator[ClusterTopology]:
    """Start ``masters`` cluster nodes, create the cluster, wait for ``cluster_state:ok``."""
    _, cli = redis_binaries()
    with _tempdir() as root, contextlib.ExitStack() as processes:
        ports = free_ports(2 * masters)  # a client port and a cluster-bus port per node
        topology = ClusterTopology()
        for i in range(masters):
            port, bus = ports[2 * i], ports[2 * i + 1]
            node = _spawn(
                root,
                f"node{i}",
                port,
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(bus),
                    "--cluster-config-file",
                    str(root / f"node{i}" / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
            processes.callback(node.kill)
            topology.nodes.append(node)
        create = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in topology.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if create.returncode != 0:
            raise TopologyError(f"redis-cli --cluster create failed: {create.stdout[-2000:]}")
        for node in topology.nodes:
            wait_until(
                f"cluster_state:ok on port {node.port}",
                lambda node=node: _cluster_ok(node, masters),  # type: ignore[misc]
            )
        yield topology


def _cluster_ok(node: RedisProcess, masters: int) -> bool:
    with node.client(decode_responses=True) as c:
        info = c.execute_command("CLUSTER", "INFO")
    fields = dict(line.split(":", 1) for line in str(info).splitlines() if ":" in line)
    return (
        fields.get("cluster_state") == "ok"
        and fields.get("cluster_slots_ok") == "16384"
        and fields.get("cluster_known_nodes") == str(masters)
    )


@pytest.fixture(scope="module")
def sentinel_topology() -> Iterator[SentinelTopology]:
    """A Sentinel-managed master (with a replica) for the tests of one module."""
    with sentinel() as topology:
        yield topology


@pytest.fixture(scope="module")
def cluster_topology() -> Iterator[ClusterTopology]:
    """A 3-master Redis Cluster for the tests of one module."""
    with cluster() as topology:
        yield topology
