"""Real servers on 127.0.0.1 for backend tests: moto (AWS APIs) and PostgreSQL.

Use them from a test module with ``pytest_plugins = ["servers"]`` (tests/ is on ``sys.path``), then ask
for the ``moto_server`` or ``postgres_server`` fixture. Both are session-scoped: each server starts once,
on a free loopback port, is waited for until it answers, and is always stopped (and its files removed)
at the end of the session. When a server's software is missing the test is skipped with a reason that
names what to install. Nothing here is a mock: moto serves the real AWS wire protocols that Terraform's
s3 backend speaks, and PostgreSQL is the real database server.

Tests sharing a server stay independent by using their own names: :func:`unique_name` for buckets,
tables and databases (``create_bucket()``, ``create_lock_table()``, ``create_database()`` pick one).

Import this module's names in a test module only under ``if TYPE_CHECKING:`` (for annotations): a plain
import runs before ``pytest_plugins`` loads it, and pytest then warns that it cannot rewrite its asserts.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 30.0  # seconds for a server to start answering
STOP_TIMEOUT = 15.0


def unique_name(prefix: str = "strata") -> str:
    """A name no other test uses: lower-case letters, digits and dashes (valid for buckets and tables)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (a server started next may still race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path,
               timeout: float = START_TIMEOUT) -> bool:
    """Poll ``ready`` until it is true; False if ``proc`` exited first; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.1)
    pytest.fail(f"{what} did not answer within {timeout:.0f} s; its log:\n{_tail(log)}")


# Run by a watchdog process: it blocks reading a pipe from pytest; EOF without being killed first means
# pytest died without its teardown (SIGKILL, os._exit from a timeout plugin): stop the server and clean up.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
pid, sig, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for attempt in range(150):
    try:
        os.kill(pid, sig if attempt == 0 else 0 if attempt < 149 else signal.SIGKILL)
    except ProcessLookupError:
        break
    time.sleep(0.1)
if folder:
    shutil.rmtree(folder, ignore_errors=True)
"""


class ServerProcess:
    """A server started by these fixtures. :meth:`stop` ends it (``stop_signal``, then SIGKILL if it
    lingers). A small watchdog process also ends it, and removes ``cleanup``, should pytest itself be
    killed before its teardown runs, so no server outlives the test session."""

    def __init__(self, args: list[str], log: Path, stop_signal: int, cleanup: Path | None = None,
                 **popen: Any) -> None:
        self.stop_signal = stop_signal
        with log.open("ab") as out:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **popen)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.proc.pid), str(int(stop_signal)), str(cleanup or "")],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self._watchdog.kill()  # first, so it never signals a pid that is gone (and maybe reused)
        self._watchdog.wait()
        if self._watchdog.stdin is not None:
            self._watchdog.stdin.close()
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)


# -- moto: S3, DynamoDB, STS, IAM, KMS ... -------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class MotoServer:
    """A moto server in server mode; ``endpoint`` serves every AWS service it emulates."""

    endpoint: str
    port: int
    region: str = "us-east-1"
    access_key: str = "strata-test-access-key"
    secret_key: str = "strata-test-secret-key"
    _clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` pointed at this server, with dummy credentials."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(
                service, endpoint_url=self.endpoint, region_name=self.region,
                aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        return self._clients[service]

    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_name("bucket")
        self.client("s3").create_bucket(Bucket=name)
        return name

    def create_lock_table(self, name: str | None = None) -> str:
        """A DynamoDB table shaped like Terraform's lock table (hash key ``LockID``, a string)."""
        name = name or unique_name("locks")
        self.client("dynamodb").create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}])
        return name

    def object_keys(self, bucket: str) -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def get_object(self, bucket: str, key: str) -> bytes:
        return bytes(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())

    def table_items(self, table: str) -> dict[str, dict[str, str]]:
        """Every item of a lock table, by ``LockID``, with string attributes unwrapped."""
        items: dict[str, dict[str, str]] = {}
        for page in self.client("dynamodb").get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                flat = {k: v.get("S", str(v)) for k, v in item.items()}
                items[flat["LockID"]] = flat
        return items


def _missing_modules(*names: str) -> list[str]:
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def _moto_answers(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto in server mode on a free 127.0.0.1 port, for the whole session.

    Started as ``python -m moto.server -H 127.0.0.1 -p PORT`` with this interpreter (the ``moto_server``
    script does the same). Buckets and tables persist for the session: create your own with
    :func:`unique_name` names (``create_bucket()``/``create_lock_table()`` without a name do).
    """
    missing = _missing_modules("moto.server", "flask", "boto3")
    if missing:
        pytest.skip(f"moto server missing ({', '.join(missing)} not importable): pip install 'moto[server]' boto3")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": MotoServer.access_key, "AWS_SECRET_ACCESS_KEY": MotoServer.secret_key,
           "AWS_DEFAULT_REGION": MotoServer.region}
    server: ServerProcess | None = None
    try:
        for _attempt in range(3):  # the free port can be taken between free_port() and the bind: retry
            port = free_port()
            server = ServerProcess([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   log, signal.SIGTERM, env=env)
            if wait_until(functools.partial(_moto_answers, f"http://127.0.0.1:{port}/moto-api/"), server.proc,
                          "moto server", log):
                break
            server.stop()
            server = None
        if server is None:
            pytest.fail(f"moto server exited at start three times; its log:\n{_tail(log)}")
        yield MotoServer(endpoint=f"http://127.0.0.1:{port}", port=port)
    finally:
        if server is not None:
            server.stop()


# -- PostgreSQL ----------------------------------------------------------------------------------------

def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb``, ``postgres``, ``psql``: from PATH (symlinks resolved), else Debian's
    ``/usr/lib/postgresql/<major>/bin`` (newest major), where ``apt-get install postgresql`` puts them."""
    found = shutil.which("initdb")
    candidates = [Path(os.path.realpath(found)).parent] if found else []

    def major(path: str) -> int:
        m = re.search(r"/postgresql/(\d+)/", path)
        return int(m.group(1)) if m else 0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)]
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "postgres", "psql")):
            return folder
    return None


@dataclass(frozen=True)
class PostgresServer:
    """A throw-away PostgreSQL cluster listening on 127.0.0.1:``port``, trust authentication, no TLS."""

    port: int
    bin_dir: Path
    superuser: str = "postgres"
    host: str = "127.0.0.1"

    def url(self, database: str) -> str:
        """A ``postgres://`` URL as Terraform's pg backend wants it (``sslmode=disable``: no TLS here)."""
        return f"postgres://{self.superuser}@{self.host}:{self.port}/{database}?sslmode=disable"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; names from :func:`unique_name` are made SQL-safe (``-`` -> ``_``)."""
        name = (name or unique_name("db")).replace("-", "_")
        self.query("postgres", f'CREATE DATABASE "{name}"')
        return name

    def query(self, database: str, sql: str) -> list[list[str]]:
        """Rows of ``sql`` as lists of strings (NULL reads as ""), run with this cluster's ``psql``.

        Fields and rows are split on the ASCII unit/record separators, so values may hold newlines.
        """
        proc = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-F", "\x1f", "-R", "\x1e", "-h", self.host, "-p", str(self.port), "-U", self.superuser,
             "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10", "PGSSLMODE": "disable"})
        if proc.returncode != 0:
            raise AssertionError(f"psql failed ({proc.returncode}) for {sql!r}: {proc.stderr.strip()}")
        text = proc.stdout.removesuffix("\n")
        return [record.split("\x1f") for record in text.split("\x1e")] if text else []


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the cluster: None = this user; when we are root (PostgreSQL refuses to run as root),
    the ``postgres`` account if it exists (Debian's package creates it), else ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


def _as_account(account: pwd.struct_passwd | None, home: Path) -> dict[str, Any]:
    """Popen keyword arguments that run a command as ``account`` (uid, gid, no extra groups)."""
    if account is None:
        return {"env": {**os.environ, "LC_ALL": "C"}}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "USER": account.pw_name,
           "LOGNAME": account.pw_name, "LC_ALL": "C"}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "env": env}


def _pg_answers(server: PostgresServer) -> bool:
    ready = server.bin_dir / "pg_isready"
    if ready.is_file():
        proc = subprocess.run([str(ready), "-q", "-h", server.host, "-p", str(server.port), "-U", server.superuser,
                               "-d", "postgres", "-t", "1"], capture_output=True, timeout=10, check=False)
        return proc.returncode == 0
    with contextlib.suppress(OSError), socket.create_connection((server.host, server.port), timeout=1):
        return True
    return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster made with ``initdb`` in a temporary folder, serving 127.0.0.1 on a free port.

    How it runs: ``initdb --auth=trust --username=postgres --no-locale -E UTF8 --no-sync`` into
    ``/tmp/strata-pg-XXXX/data``, then ``postgres -D data -p PORT -k <tmp socket dir>
    -c listen_addresses=127.0.0.1`` (fsync off: the data is thrown away) as a child of pytest, waited for with
    ``pg_isready``. At the end it gets SIGINT (fast shutdown), then SIGKILL if it lingers, and the folder is deleted.

    Running as root (PostgreSQL refuses it: "cannot be run as root"): initdb and postgres are started as
    the ``postgres`` account if present (``apt-get install postgresql`` creates it on Debian), else as
    ``nobody``, via ``subprocess.Popen(user=, group=, extra_groups=[])`` -- no su/sudo needed. The folder
    is made with ``tempfile.mkdtemp`` directly under the system temp dir (pytest's own temp tree is mode
    0700 for root, which that account could not enter) and handed over with ``chown``.

    Binaries: ``initdb``/``postgres``/``psql`` from PATH or ``/usr/lib/postgresql/<major>/bin``; the test is
    skipped, naming the package, when they are missing. Clients connect as ``postgres`` over TCP without a
    password (trust), e.g. ``server.url(server.create_database())``.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server missing: no initdb/postgres/psql on PATH or in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql)")
    account = _server_account()
    base = Path(tempfile.mkdtemp(prefix="strata-pg-"))
    try:
        data, sockets, log = base / "data", base / "sockets", base / "postgres.log"
        sockets.mkdir()
        if account is not None:
            for path in (base, sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        run_as = _as_account(account, base)
        init = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "--username=postgres",
                               "--no-locale", "-E", "UTF8", "--no-sync"],
                              cwd=base, capture_output=True, text=True, timeout=120, check=False, **run_as)
        if init.returncode != 0:
            pytest.fail(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        process: ServerProcess | None = None
        try:
            for _attempt in range(3):  # retry when the free port is taken before postgres binds it
                server = PostgresServer(port=free_port(), bin_dir=bin_dir)
                # SIGINT = fast shutdown: it does not wait for clients to disconnect
                process = ServerProcess(
                    [str(bin_dir / "postgres"), "-D", str(data), "-p", str(server.port), "-k", str(sockets),
                     "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=100"],
                    log, signal.SIGINT, cleanup=base, cwd=base, **run_as)
                if wait_until(functools.partial(_pg_answers, server), process.proc, "PostgreSQL", log):
                    break
                process.stop()
                process = None
            if process is None:
                pytest.fail(f"postgres exited at start three times; its log:\n{_tail(log)}")
            yield server
        finally:
            if process is not None:
                process.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
