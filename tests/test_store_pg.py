"""The pg state store (strata.backends.pg.PgStore) against a real PostgreSQL and real Terraform.

Every store method on the ``postgres_server`` cluster (each test has its own database); the error
mapping (a closed port, a missing database, an unknown role, a wrong password on a second cluster that
asks for passwords, permission denied, a bad conn_str); Terraform's advisory-lock protocol seen from
separate processes (a python session, psql, terraform itself) that hold a lock, are killed with
SIGKILL or are ended by ``force_unlock``; and interoperability with Terraform 1.0.3 and 1.11: the
same row, the same state, and locks that stop each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from conftest import Result, write_tree
from strata.backends.base import BackendError, LockInfo, StateLocked
from strata.backends.pg import BACKEND, PgStore

if TYPE_CHECKING:  # imported for real by pytest_plugins, which also rewrites its asserts
    from servers import PostgresServer

pytest_plugins = ["servers"]

SCHEMA = "dev_us_east_1_01_network"
STATE = b'{\n  "version": 4,\n  "serial": 1,\n  "lineage": "5b3c8f0e-1111-4222-8333-444455556666"\n}\n'
TF_TIMEOUT = 120.0
WAIT = 20.0  # seconds to wait for another process to take or lose a lock

# A separate process that takes an advisory lock the way Terraform does (session level) and keeps its
# session open until its stdin closes; it prints its backend pid once it holds the lock.
HOLDER = r"""
import sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True, application_name=sys.argv[3])
conn.execute("SELECT pg_advisory_lock(%s::bigint)", (int(sys.argv[2]),))
print(conn.info.backend_pid, flush=True)
sys.stdin.read()
"""


# -- helpers ------------------------------------------------------------------------------------------------


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``query`` run on its own autocommit connection (the test's view of the database)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def advisory_locks(url: str) -> dict[int, int]:
    """Held advisory locks of the database: bigint key -> pid (as pg_locks shows them)."""
    rows = sql(url, "SELECT classid::bigint, objid::bigint, pid FROM pg_locks WHERE locktype = 'advisory' "
                    "AND granted AND objsubid = 1 AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())")
    out = {}
    for high, low, pid in rows:
        key = (int(high) << 32) | int(low)
        out[key - (1 << 64) if key >= 1 << 63 else key] = int(pid)
    return out


def row_id(url: str, schema: str = SCHEMA) -> int:
    return int(sql(url, f'SELECT id FROM "{schema}".states WHERE name = %s', ("default",))[0][0])


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    """A fresh database of its own for the test."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[..., PgStore]]:
    """Open stores with ``stores(url, **settings)``; all are closed at the end of the test."""
    opened: list[PgStore] = []

    def make(conn_str: str, **settings: Any) -> PgStore:
        store = BACKEND.store({"conn_str": conn_str, "schema_name": SCHEMA, **settings}, tmp_path, tmp_path)
        assert isinstance(store, PgStore)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def holders() -> Iterator[Callable[[str, int], tuple[subprocess.Popen[str], int]]]:
    """Start separate python processes holding an advisory lock: ``proc, backend_pid = holders(url, key)``."""
    started: list[subprocess.Popen[str]] = []

    def start(conn_str: str, key: int, application: str = "holder-test") -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, conn_str, str(key), application],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"the holder process did not take the lock (exit {proc.poll()})"
        return proc, int(line)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def locked_store(stores: Callable[..., PgStore], url: str, data: bytes = STATE) -> PgStore:
    """A store that wrote ``data`` (so the row exists) and released its lock again."""
    store = stores(url)
    info = LockInfo.new("test")
    store.lock(info)
    store.write(data)
    store.unlock(info)
    return store


# -- state ----------------------------------------------------------------------------------------------------


def test_no_state_yet_reads_none_and_creates_nothing(stores: Callable[..., PgStore], url: str) -> None:
    store = stores(url)
    assert store.backend == "pg"
    assert store.read() is None
    assert store.stat() is None
    assert store.current_lock() is None
    assert store.versions() == []
    with pytest.raises(BackendError, match="no version '1'"):
        store.read_version("1")
    assert sql(url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)) == []


def test_where_names_server_database_and_schema_never_the_password(stores: Callable[..., PgStore],
                                                                    postgres_server: PostgresServer) -> None:
    store = stores(f"postgres://postgres:hunter2secret@127.0.0.1:{postgres_server.port}/appdb?sslmode=disable")
    assert store.where == f"pg://127.0.0.1:{postgres_server.port}/appdb schema {SCHEMA}"
    dsn = stores(f"host=127.0.0.1 port={postgres_server.port} dbname=other user=postgres password=hunter2secret",
                 schema_name="x")
    assert dsn.where == f"pg://127.0.0.1:{postgres_server.port}/other schema x"
    assert stores("postgres://127.0.0.1/db", schema_name=None).where == "pg://127.0.0.1:5432/db schema " \
                                                                        "terraform_remote_state"


def test_write_creates_terraform_tables_and_upserts_the_default_row(stores: Callable[..., PgStore],
                                                                     url: str) -> None:
    store = stores(url)
    info = LockInfo.new("test")
    store.lock(info)
    store.write(STATE)
    assert store.read() == STATE
    stat = store.stat()
    assert stat is not None and stat.size == len(STATE)
    assert stat.modified is None  # strata's history has not recorded it as written by strata
    # Terraform's objects: the schema, the shared sequence in public, the table and its index
    assert sql(url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)) == [(1,)]
    assert sql(url, "SELECT data_type FROM information_schema.sequences WHERE sequence_schema = 'public' "
                    "AND sequence_name = 'global_states_id_seq'") == [("bigint",)]
    columns = sql(url, "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                       "WHERE table_schema = %s AND table_name = 'states' ORDER BY ordinal_position", (SCHEMA,))
    assert columns == [("id", "bigint", "NO", "nextval('global_states_id_seq'::regclass)"),
                       ("name", "text", "YES", None), ("data", "text", "YES", None)]
    assert sql(url, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'states_by_name'",
               (SCHEMA,)) == [(f"CREATE UNIQUE INDEX states_by_name ON {SCHEMA}.states USING btree (name)",)]
    first_id = row_id(url)
    second = STATE.replace(b'"serial": 1', b'"serial": 2')
    store.write(second)
    store.unlock(info)
    assert sql(url, f'SELECT id, name, data FROM "{SCHEMA}".states') == [(first_id, "default", second.decode())]
    assert store.read() == second


def test_write_without_the_lock_is_refused(stores: Callable[..., PgStore], url: str) -> None:
    store = stores(url)
    with pytest.raises(BackendError, match="without its lock"):
        store.write(STATE)
    assert store.read() is None


def test_an_empty_row_reads_as_no_state(stores: Callable[..., PgStore], url: str) -> None:
    store = locked_store(stores, url)
    sql(url, f'UPDATE "{SCHEMA}".states SET data = %s', ("",))
    assert store.read() is None
    assert store.stat() is None


def test_skip_settings_create_nothing_they_skip(stores: Callable[..., PgStore], url: str) -> None:
    store = stores(url, skip_schema_creation=True)
    info = LockInfo.new("test")
    store.lock(info)
    with pytest.raises(BackendError) as failed:
        store.write(STATE)
    assert store.where in str(failed.value) and "does not exist" in str(failed.value)
    store.unlock(info)
    assert sql(url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)) == []

    sql(url, f'CREATE SCHEMA "{SCHEMA}"')
    indexless = stores(url, skip_schema_creation=True, skip_index_creation=True)
    indexless.lock(info)
    indexless.write(STATE)
    indexless.unlock(info)
    assert indexless.read() == STATE
    assert sql(url, "SELECT indexname FROM pg_indexes WHERE schemaname = %s ORDER BY 1", (SCHEMA,)) == [
        ("states_name_key",), ("states_pkey",)]


# -- locks -------------------------------------------------------------------------------------------------------


def test_lock_without_a_row_takes_terraforms_creation_lock(stores: Callable[..., PgStore], url: str) -> None:
    first, second = stores(url), stores(url)
    info = LockInfo.new("test")
    first.lock(info)
    assert info.path == "-1"
    assert list(advisory_locks(url)) == [-1]
    with pytest.raises(StateLocked) as conflict:
        second.lock(LockInfo.new("other"))
    holder = conflict.value.holder
    assert holder is not None
    assert holder.path == "-1"
    assert holder.holder["pid"] == advisory_locks(url)[-1]
    assert holder.holder["application"] == "strata" and holder.holder["live"] is True
    assert str(conflict.value).startswith(f"the state at {first.where} is locked by postgres@127.0.0.1 since ")
    seen = second.current_lock()
    assert seen is not None and seen.holder["pid"] == holder.holder["pid"]
    first.write(STATE)  # creates the row while the creation lock is held, as Terraform does
    first.unlock(info)
    assert advisory_locks(url) == {}
    assert second.current_lock() is None


def test_lock_holds_the_rows_id_on_a_dedicated_session(stores: Callable[..., PgStore], url: str) -> None:
    store = locked_store(stores, url)
    other = stores(url)
    key = row_id(url)
    info = LockInfo.new("test")
    store.lock(info)
    assert info.path == str(key)
    locks = advisory_locks(url)
    assert list(locks) == [key]  # the creation lock -1 is released again
    holder = other.current_lock()
    assert holder is not None
    assert holder.holder["pid"] == locks[key]
    assert holder.who == "postgres@127.0.0.1"
    assert holder.path == str(key)
    assert holder.holder["client"].startswith("127.0.0.1:")
    assert holder.holder["application"] == "strata"
    assert holder.holder["live"] is True  # this process's own TCP connection
    assert datetime.fromisoformat(holder.created).tzinfo is not None
    report = holder.to_report()
    assert report["pid"] == locks[key] and report["who"] == "postgres@127.0.0.1"
    with pytest.raises(StateLocked) as conflict:
        other.lock(LockInfo.new("other"))
    assert conflict.value.holder is not None and conflict.value.holder.holder["pid"] == locks[key]
    assert list(advisory_locks(url)) == [key]  # the failed attempt left nothing behind
    with pytest.raises(StateLocked):
        store.lock(LockInfo.new("again"))  # a store holds its lock once
    store.write(STATE.replace(b'"serial": 1', b'"serial": 2'))
    store.unlock(info)
    assert advisory_locks(url) == {}
    assert other.current_lock() is None
    other.lock(info)
    assert list(advisory_locks(url)) == [key]


def test_the_creation_lock_of_another_session_blocks_a_state_with_a_row(
        stores: Callable[..., PgStore], url: str,
        holders: Callable[..., tuple[subprocess.Popen[str], int]]) -> None:
    """Terraform's third case: someone is creating a workspace (holds -1), so no state may be locked."""
    store = locked_store(stores, url)
    _proc, pid = holders(url, -1)
    with pytest.raises(StateLocked) as conflict:
        store.lock(LockInfo.new("test"))
    assert conflict.value.holder is not None and conflict.value.holder.holder["pid"] == pid
    assert advisory_locks(url) == {-1: pid}  # the row's lock taken with it was given back


def test_close_ends_the_session_and_its_lock(stores: Callable[..., PgStore], url: str) -> None:
    store = locked_store(stores, url)
    store.lock(LockInfo.new("test"))
    assert advisory_locks(url)
    store.close()
    wait_for(lambda: not advisory_locks(url), "the lock to go with the closed session")
    assert stores(url).current_lock() is None


def test_a_lost_lock_session_refuses_writes_and_unlock_still_succeeds(stores: Callable[..., PgStore],
                                                                       url: str) -> None:
    store = locked_store(stores, url)
    info = LockInfo.new("test")
    store.lock(info)
    pid = advisory_locks(url)[row_id(url)]
    sql(url, "SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: not advisory_locks(url), "the terminated session's lock to go")
    with pytest.raises(BackendError, match="lost the connection"):
        store.write(STATE.replace(b'"serial": 1', b'"serial": 9'))
    store.unlock(info)  # nothing left to release: no error
    assert store.read() == STATE  # the write did not happen without the lock


def test_a_killed_holder_process_loses_its_lock(stores: Callable[..., PgStore], url: str,
                                                holders: Callable[..., tuple[subprocess.Popen[str], int]]) -> None:
    store = locked_store(stores, url)
    key = row_id(url)
    proc, pid = holders(url, key)
    holder = store.current_lock()
    assert holder is not None
    assert holder.holder["pid"] == pid
    assert holder.holder["application"] == "holder-test"
    assert holder.holder["live"] is True  # a process on this machine with its TCP connection open
    with pytest.raises(StateLocked):
        store.lock(LockInfo.new("test"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # PostgreSQL keeps no lock record: the lock ends with the session, nothing is left to unlock
    wait_for(lambda: store.current_lock() is None, "the killed process's lock to vanish")
    assert advisory_locks(url) == {}
    info = LockInfo.new("test")
    store.lock(info)
    store.unlock(info)


def test_force_unlock_ends_a_psql_session_holding_the_lock(stores: Callable[..., PgStore], url: str,
                                                            postgres_server: PostgresServer) -> None:
    store = locked_store(stores, url)
    key = row_id(url)
    database = url.rsplit("/", 1)[1].split("?")[0]
    psql = subprocess.Popen(
        [str(postgres_server.bin_dir / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(postgres_server.port),
         "-U", "postgres", "-d", database, "-c", f"SELECT pg_advisory_lock({key})", "-c", "SELECT pg_sleep(300)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"})
    try:
        holder = wait_for(store.current_lock, "psql to take the lock")
        assert holder.holder["application"] == "psql"
        assert holder.holder["live"] is True
        store.force_unlock(holder)
        assert store.current_lock() is None
        _out, err = psql.communicate(timeout=20)
        assert psql.returncode != 0 and "terminat" in err  # psql's session was ended by the server
    finally:
        if psql.poll() is None:
            psql.kill()
            psql.wait(timeout=10)
    info = LockInfo.new("test")
    store.lock(info)
    assert info.path == str(key)
    store.unlock(info)


def test_force_unlock_ends_only_the_session_it_was_shown(stores: Callable[..., PgStore], url: str,
                                                          holders: Callable[..., tuple[subprocess.Popen[str], int]]
                                                          ) -> None:
    store = locked_store(stores, url)
    proc, pid = holders(url, row_id(url))
    shown = store.current_lock()
    assert shown is not None
    stale = LockInfo(shown.id, shown.operation, shown.who, shown.version, shown.created, shown.path, shown.info,
                     {**shown.holder, "pid": pid + 100000})
    with pytest.raises(BackendError, match=f"held by session {pid}"):
        store.force_unlock(stale)
    assert proc.poll() is None and store.current_lock() is not None
    with pytest.raises(BackendError, match="names no PostgreSQL session"):
        store.force_unlock(LockInfo("", "", "someone", "", ""))
    store.force_unlock(shown)
    assert store.current_lock() is None
    assert sql(url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)) == []  # the session was ended
    store.force_unlock(shown)  # nothing held any more: nothing to do


# -- history -------------------------------------------------------------------------------------------------


def test_history_remembers_each_new_version_once(stores: Callable[..., PgStore], url: str) -> None:
    store = stores(url)
    second = STATE.replace(b'"serial": 1', b'"serial": 2')
    info = LockInfo.new("test")
    store.lock(info)
    store.write(STATE)
    store.remember(STATE, "state-push")
    store.remember(STATE, "state-push")  # same bytes as the newest: not kept twice
    store.remember(second, "before state-rm")
    store.write(second)
    store.remember(second, "state-rm")  # same as the newest again
    store.unlock(info)
    rows = sql(url, f'SELECT id, sha256, size, operation, data FROM "{SCHEMA}".strata_history ORDER BY id')
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        (hashlib.sha256(STATE).hexdigest(), len(STATE), "state-push", STATE.decode()),
        (hashlib.sha256(second).hexdigest(), len(second), "before state-rm", second.decode())]
    versions = store.versions()
    assert [v.id for v in versions] == [str(rows[1][0]), str(rows[0][0])]  # newest first
    assert [v.current for v in versions] == [True, False]
    assert [v.size for v in versions] == [len(second), len(STATE)]
    assert all(v.kind == "history" and isinstance(v.modified, datetime) for v in versions)
    assert store.read_version(versions[1].id) == STATE
    assert store.read_version(versions[0].id) == second
    for bad in ("999999", "abc", "1; DROP TABLE x", "../1", ""):
        with pytest.raises(BackendError, match="no version"):
            store.read_version(bad)
    # stat's time comes from strata's own write of these bytes, not from a "before ..." snapshot
    stat = store.stat()
    assert stat is not None and stat.modified is None
    store.lock(info)
    store.remember(STATE, "state-restore")
    store.write(STATE)
    store.unlock(info)
    stat = store.stat()
    recorded = sql(url, f'SELECT recorded_at FROM "{SCHEMA}".strata_history ORDER BY id DESC LIMIT 1')[0][0]
    assert stat is not None and stat.modified == recorded


# -- errors ----------------------------------------------------------------------------------------------------


def test_unreachable_server(stores: Callable[..., PgStore]) -> None:
    store = stores(f"postgres://postgres:pw-not-shown@127.0.0.1:{closed_port()}/db?sslmode=disable")
    for call in (store.read, store.current_lock, store.versions, lambda: store.lock(LockInfo.new("x"))):
        with pytest.raises(BackendError) as failed:
            call()
        message = str(failed.value)
        assert message.startswith(f"cannot reach the PostgreSQL server of {store.where}")
        assert "refused" in message.lower() and "pw-not-shown" not in message


def test_missing_database_suggests_bootstrap(stores: Callable[..., PgStore], postgres_server: PostgresServer) -> None:
    store = stores(postgres_server.url("no_such_database"))
    with pytest.raises(BackendError) as failed:
        store.read()
    assert str(failed.value) == (f"the database 'no_such_database' does not exist on the server of {store.where}: "
                                 "create it with `strata bootstrap` (Terraform needs it to exist)")


def test_unknown_role_is_an_authentication_failure(stores: Callable[..., PgStore],
                                                   postgres_server: PostgresServer) -> None:
    store = stores(f"postgres://nobody_here@127.0.0.1:{postgres_server.port}/postgres?sslmode=disable")
    with pytest.raises(BackendError) as failed:
        store.read()
    assert str(failed.value).startswith(f"authentication failed as 'nobody_here' at {store.where} (")
    assert "check the user and password in conn_str" in str(failed.value)


def test_permission_denied(stores: Callable[..., PgStore], url: str, postgres_server: PostgresServer) -> None:
    locked_store(stores, url)  # the schema and row, owned by postgres
    role = f"reader_{os.getpid()}_{time.monotonic_ns()}"
    database = url.rsplit("/", 1)[1].split("?")[0]
    sql(url, f'CREATE ROLE "{role}" LOGIN')
    try:
        store = stores(f"postgres://{role}@127.0.0.1:{postgres_server.port}/{database}?sslmode=disable")
        for call in (store.read, store.current_lock, lambda: store.lock(LockInfo.new("x"))):
            with pytest.raises(BackendError) as failed:
                call()
            assert str(failed.value).startswith("permission denied to ")
            assert f"{store.where} (permission denied for schema {SCHEMA})" in str(failed.value)
        store.close()
        sql(url, f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
        refused = stores(store.conn_str)
        with pytest.raises(BackendError, match=r"^permission denied at .*CONNECT privilege"):
            refused.read()
    finally:
        postgres_server.query("postgres", f'DROP ROLE "{role}"')


def test_bad_conn_str_never_shows_the_password(stores: Callable[..., PgStore]) -> None:
    store = stores("host=127.0.0.1 password=topsecret99 dbname")
    with pytest.raises(BackendError) as failed:
        store.read()
    assert "is not a valid PostgreSQL connection string" in str(failed.value)
    assert "topsecret99" not in str(failed.value) and "topsecret99" not in store.where


def test_without_psycopg_the_error_says_what_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from pathlib import Path\nfrom strata.backends.pg import BACKEND\nfrom strata.errors import StrataError\n"
            "try:\n    BACKEND.store({'conn_str': 'postgres://h/db'}, Path('.'), Path('.'))\n"
            "except StrataError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "the pg backend needs psycopg: pip install 'strata[pg]'"
    imports = subprocess.run([sys.executable, "-c", "import sys, strata.main, strata.backends.pg, strata.bootstrap.pg; "
                              "print('psycopg' in sys.modules)"], capture_output=True, text=True, timeout=60,
                             check=True)
    assert imports.stdout.strip() == "False"  # `strata --help` does not pay for psycopg


# -- a cluster that asks for passwords -----------------------------------------------------------------------

PASSWORD = "right-horse-battery"


@pytest.fixture(scope="module")
def password_server(postgres_server: PostgresServer) -> Iterator[int]:
    """A second throw-away cluster with scram-sha-256 password authentication; yields its port.

    Built like ``postgres_server`` (servers.py) but with ``initdb --auth=scram-sha-256 --pwfile``:
    the shared cluster trusts every client, so it cannot show a wrong password being refused.
    """
    import servers  # already loaded (and rewritten) by pytest_plugins

    account = servers._server_account()
    base = Path(tempfile.mkdtemp(prefix="strata-pgpw-"))
    process = None
    try:
        (base / "pw").write_text(PASSWORD + "\n")
        sockets = base / "sockets"
        sockets.mkdir()
        if account is not None:
            for path in (base, sockets, base / "pw"):
                os.chown(path, account.pw_uid, account.pw_gid)
        run_as = servers._as_account(account, base)
        bin_dir = postgres_server.bin_dir
        init = subprocess.run([str(bin_dir / "initdb"), "-D", str(base / "data"), "--auth=scram-sha-256",
                               f"--pwfile={base / 'pw'}", "--username=postgres", "--no-locale", "-E", "UTF8",
                               "--no-sync"], cwd=base, capture_output=True, text=True, timeout=120, check=False,
                              **run_as)
        assert init.returncode == 0, init.stdout + init.stderr
        port = servers.free_port()
        process = servers.ServerProcess(
            [str(bin_dir / "postgres"), "-D", str(base / "data"), "-p", str(port), "-k", str(sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            base / "postgres.log", signal.SIGINT, cleanup=base, cwd=base, **run_as)
        assert servers.wait_until(lambda: servers._pg_answers(servers.PostgresServer(port, bin_dir)), process.proc,
                                  "PostgreSQL (password)", base / "postgres.log")
        yield port
    finally:
        if process is not None:
            process.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_wrong_password_is_an_authentication_failure(stores: Callable[..., PgStore], password_server: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    good = stores(f"postgres://postgres:{PASSWORD}@127.0.0.1:{password_server}/postgres?sslmode=disable")
    assert good.read() is None
    for conn_str in (f"postgres://postgres:wrong-pass-123@127.0.0.1:{password_server}/postgres?sslmode=disable",
                     f"host=127.0.0.1 port={password_server} dbname=postgres user=postgres sslmode=disable "
                     "password=wrong-pass-123",
                     f"postgres://postgres@127.0.0.1:{password_server}/postgres?sslmode=disable"):
        store = stores(conn_str)
        with pytest.raises(BackendError) as failed:
            store.read()
        message = str(failed.value)
        assert message.startswith(f"authentication failed as 'postgres' at {store.where} (")
        assert "password" in message and "wrong-pass-123" not in message and PASSWORD not in message


# -- with strata's CLI --------------------------------------------------------------------------------------------


def test_strata_locks_shows_the_session_and_unlock_refuses_a_live_one(
        strata: Callable[..., Result], url: str, tmp_path: Path, stores: Callable[..., PgStore],
        holders: Callable[..., tuple[subprocess.Popen[str], int]]) -> None:
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": f'strata {{}}\n\nbackend "pg" {{\n  conn_str = "{url}"\n}}\n',
        "dev/us-east-1/01-network/strata.hcl": "stack {}\n",
        "dev/us-east-1/01-network/main.tf": "",
    })
    locked_store(stores, url)
    proc, pid = holders(url, row_id(url))
    shown = strata("locks", "--json", cwd=repo)
    assert shown.code == 0, shown.output
    [held] = json.loads(shown.stdout)["locks"]
    assert held["stack"] == "dev/us-east-1/01-network" and held["backend"] == "pg"
    assert held["lock"]["pid"] == pid and held["lock"]["live"] is True
    assert held["lock"]["who"] == "postgres@127.0.0.1" and held["lock"]["application"] == "holder-test"
    refused = strata("unlock", "dev/us-east-1/01-network", "--yes", cwd=repo)
    assert refused.code == 1 and "running process on this machine" in refused.output
    assert proc.poll() is None
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: json.loads(strata("locks", "--json", cwd=repo).stdout)["locks"] == [], "the lock to vanish")


# -- real terraform ----------------------------------------------------------------------------------------------

MAIN_TF = """
terraform {
  backend "pg" {
    conn_str    = "%(url)s"
    schema_name = "%(schema)s"
  }
}

variable "pause" {
  type    = number
  default = 0
}

resource "null_resource" "this" {
  triggers = {
    pause = var.pause
  }
  provisioner "local-exec" {
    command = "sleep ${var.pause}"
  }
}

output "pause" {
  value = var.pause
}
"""


def terraform_env(provider_mirror: dict[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_", "PG", "STRATA_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(provider_mirror, HOME=str(home))
    return env


def terraform(binary: str, *args: str, cwd: Path, env: dict[str, str]) -> Result:
    proc = subprocess.run([binary, *args, "-no-color"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TF_TIMEOUT, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def tf_stack(tmp_path: Path, url: str, provider_mirror: dict[str, str]) -> tuple[Path, dict[str, str]]:
    stack = write_tree(tmp_path / "stack", {"main.tf": MAIN_TF % {"url": url, "schema": SCHEMA}})
    return stack, terraform_env(provider_mirror, tmp_path / "home")


def _state(raw: bytes | str) -> dict[str, Any]:
    data = json.loads(raw)
    data.pop("terraform_version")
    return dict(data)


@pytest.mark.terraform
def test_terraform_state_and_strata_state_are_the_same_row(
        terraform_binary: str, tf_stack: tuple[Path, dict[str, str]], stores: Callable[..., PgStore],
        url: str) -> None:
    stack, env = tf_stack
    assert terraform(terraform_binary, "init", "-input=false", cwd=stack, env=env).code == 0
    store = stores(url)
    assert store.read() is None  # init creates the table but no row
    apply = terraform(terraform_binary, "apply", "-auto-approve", "-input=false", cwd=stack, env=env)
    assert apply.code == 0, apply.output
    pulled = terraform(terraform_binary, "state", "pull", cwd=stack, env=env)
    assert pulled.code == 0, pulled.output
    raw = store.read()
    assert raw is not None
    ours, theirs = _state(raw), _state(pulled.stdout)
    assert ours == theirs
    assert isinstance(ours["serial"], int) and ours["lineage"]  # 1.0.3 starts at serial 0
    assert [r["type"] for r in ours["resources"]] == ["null_resource"]
    assert store.versions() == []  # terraform keeps no strata history

    # a state strata writes is the state terraform reads
    info = LockInfo.new("test")
    store.lock(info)
    bumped = {**json.loads(raw), "serial": ours["serial"] + 1}
    store.write((json.dumps(bumped, indent=2) + "\n").encode())
    store.unlock(info)
    pulled = terraform(terraform_binary, "state", "pull", cwd=stack, env=env)
    assert _state(pulled.stdout) == {**ours, "serial": ours["serial"] + 1}
    plan = terraform(terraform_binary, "plan", "-detailed-exitcode", "-input=false", cwd=stack, env=env)
    assert plan.code == 0, plan.output


@pytest.mark.terraform
def test_strata_lock_stops_terraform_until_unlocked(
        terraform_binary: str, tf_stack: tuple[Path, dict[str, str]], stores: Callable[..., PgStore],
        url: str) -> None:
    stack, env = tf_stack
    assert terraform(terraform_binary, "init", "-input=false", cwd=stack, env=env).code == 0
    store = stores(url)
    info = LockInfo.new("test")

    store.lock(info)  # no row yet: Terraform's creation lock
    assert info.path == "-1"
    blocked = terraform(terraform_binary, "apply", "-auto-approve", "-input=false", "-lock-timeout=0s",
                        cwd=stack, env=env)
    assert blocked.code == 1
    assert "Error acquiring the state lock" in blocked.output
    assert "Already locked for workspace creation: default" in blocked.output
    store.unlock(info)
    apply = terraform(terraform_binary, "apply", "-auto-approve", "-input=false", "-lock-timeout=0s",
                      cwd=stack, env=env)
    assert apply.code == 0, apply.output

    store.lock(info)  # the row exists now: its id
    assert info.path == str(row_id(url))
    blocked = terraform(terraform_binary, "plan", "-input=false", "-lock-timeout=0s", cwd=stack, env=env)
    assert blocked.code == 1
    assert "Error acquiring the state lock" in blocked.output
    assert "Workspace is already locked: default" in blocked.output
    store.unlock(info)
    plan = terraform(terraform_binary, "plan", "-detailed-exitcode", "-input=false", "-lock-timeout=0s",
                     cwd=stack, env=env)
    assert plan.code == 0, plan.output


@pytest.mark.terraform
def test_a_busy_terraform_apply_holds_the_lock_until_killed(
        terraform_binary: str, tf_stack: tuple[Path, dict[str, str]], stores: Callable[..., PgStore],
        url: str) -> None:
    stack, env = tf_stack
    assert terraform(terraform_binary, "init", "-input=false", cwd=stack, env=env).code == 0
    apply = terraform(terraform_binary, "apply", "-auto-approve", "-input=false", cwd=stack, env=env)
    assert apply.code == 0, apply.output
    store = stores(url)
    busy = subprocess.Popen([terraform_binary, "apply", "-auto-approve", "-input=false", "-no-color",
                             "-var", "pause=120"], cwd=stack, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        holder = wait_for(store.current_lock, "terraform apply to take the lock", timeout=60)
        assert holder.holder["live"] is True  # terraform runs here, over loopback
        assert holder.holder["application"] != "strata"
        assert holder.who == "postgres@127.0.0.1"
        assert holder.path == str(row_id(url))
        with pytest.raises(StateLocked) as conflict:
            store.lock(LockInfo.new("test"))
        assert conflict.value.holder is not None and conflict.value.holder.holder["pid"] == holder.holder["pid"]
        assert busy.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(busy.pid, signal.SIGKILL)  # terraform, its provider and the sleep
        busy.wait(timeout=30)
    # killed mid-apply: its session, and with it the lock, is gone; nothing to force-unlock
    wait_for(lambda: store.current_lock() is None, "the killed terraform's lock to vanish")
    info = LockInfo.new("test")
    store.lock(info)
    store.unlock(info)


def test_live_means_an_established_tcp_connection_of_this_machine(postgres_server: PostgresServer) -> None:
    from strata.backends.pg import local_client_ports

    with socket.create_connection(("127.0.0.1", postgres_server.port), timeout=5) as sock:
        port = sock.getsockname()[1]
        assert port in local_client_ports(postgres_server.port)
        assert port not in local_client_ports(closed_port())
    wait_for(lambda: port not in local_client_ports(postgres_server.port), "the closed connection to leave")
