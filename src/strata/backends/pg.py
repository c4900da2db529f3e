"""The pg backend: one PostgreSQL schema per stack (its state is the ``default`` row of ``states``).

:class:`PgStore` speaks Terraform's own pg backend protocol (backend/remote-state/pg in Terraform 1.0.3
to 1.11): the same DDL, the same upsert, and the same session-level advisory locks, held on a
dedicated connection kept open while locked, so a lock strata holds stops ``terraform apply`` and
the other way round. PostgreSQL keeps no lock record: the holder of a lock is described from
``pg_locks`` and ``pg_stat_activity`` (the session's pid, user, client address, application).
strata's own history of the state lives beside it in ``"<schema>".strata_history``.

psycopg is imported only inside the functions that talk to PostgreSQL (``pip install 'strata[pg]'``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from strata.backends.base import (
    BOOL,
    STRING,
    Backend,
    BackendError,
    LockInfo,
    Problem,
    StateLocked,
    StateObject,
    StateStore,
    StateVersion,
)
from strata.errors import StrataError
from strata.terraform.version import Version

if TYPE_CHECKING:
    import psycopg

MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names


def schema_for_key(state_key: str) -> str:
    """A schema name for a state key: lower-case, ``_`` for anything else, hashed when too long."""
    folder = state_key.removesuffix("terraform.tfstate").rstrip("/")
    base = re.sub(r"[^a-z0-9_]+", "_", folder.lower()).strip("_")
    if len(base) <= MAX_IDENTIFIER:
        return base or "terraform_remote_state"
    tag = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{base[: MAX_IDENTIFIER - 9]}_{tag}"


def _connection_identity(conn_str: str) -> str:
    if "://" in conn_str:
        parts = urlsplit(conn_str)
        return f"{parts.hostname or ''}:{parts.port or 5432}/{parts.path.lstrip('/')}"
    fields = dict(re.findall(r"(\w+)\s*=\s*'?([^'\s]*)'?", conn_str))
    return f"{fields.get('host', '')}:{fields.get('port', '5432')}/{fields.get('dbname', '')}"


def _sslmode(conn_str: str) -> str | None:
    if "://" in conn_str:
        values = parse_qs(urlsplit(conn_str).query).get("sslmode")
        return values[0] if values else None
    m = re.search(r"sslmode\s*=\s*'?(\w[\w-]*)", conn_str)
    return m.group(1) if m else None


class PgBackend(Backend):
    name = "pg"
    schema = {  # internal/backend/remote-state/pg/backend.go
        "conn_str": STRING, "schema_name": STRING, "skip_schema_creation": BOOL, "skip_table_creation": BOOL,
        "skip_index_creation": BOOL,
    }
    required = ("conn_str",)
    key_attribute = "schema_name"

    def default_settings(self, state_key: str, stack_path: str, state_dir: str) -> dict[str, Any]:
        return {"schema_name": schema_for_key(state_key)}

    def check(self, values: dict[str, Any], version: Version | None) -> list[Problem]:
        problems = super().check(values, version)
        schema = values.get("schema_name")
        if isinstance(schema, str) and len(schema) > MAX_IDENTIFIER:
            problems.append(Problem(f"schema_name is longer than {MAX_IDENTIFIER} characters", "schema_name"))
        return problems

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        return ("pg", _connection_identity(str(values.get("conn_str", ""))), values.get("schema_name"))

    def storage(self, values: dict[str, Any]) -> str | None:
        return f"pg://{_connection_identity(str(values.get('conn_str', '')))}"

    def encryption_problem(self, values: dict[str, Any]) -> str | None:
        if _sslmode(str(values.get("conn_str", ""))) == "disable":
            return "conn_str disables TLS (sslmode=disable)"
        return None

    def store(self, values: dict[str, Any], stack_dir: Path, root: Path) -> PgStore:
        require_psycopg()
        return PgStore(values)


BACKEND = PgBackend()


# -- talking to PostgreSQL ---------------------------------------------------------------------------------

PSYCOPG_MISSING = "the pg backend needs psycopg: pip install 'strata[pg]'"
CONNECT_TIMEOUT = 5  # seconds, unless conn_str sets connect_timeout itself
UNLOCK_WAIT = 10.0  # seconds force_unlock waits for a terminated session's lock to go
DEFAULT_SCHEMA = "terraform_remote_state"
WORKSPACE = "default"  # the state's row: strata works with the default workspace
CREATION_LOCK = -1  # Terraform's advisory lock for creating a workspace's row (shared by the database)
SEQUENCE = "public.global_states_id_seq"
STATES_TABLE = "states"
STATES_INDEX = "states_by_name"
HISTORY_TABLE = "strata_history"

# Terraform's DDL, word for word (backend/remote-state/pg/backend.go); {schema} is the quoted schema name.
SCHEMA_DDL = "CREATE SCHEMA IF NOT EXISTS {schema}"
SEQUENCE_DDL = "CREATE SEQUENCE IF NOT EXISTS public.global_states_id_seq AS bigint"
TABLE_DDL = """CREATE TABLE IF NOT EXISTS {schema}.states (
\t\t\tid bigint NOT NULL DEFAULT nextval('public.global_states_id_seq') PRIMARY KEY,
\t\t\tname text UNIQUE,
\t\t\tdata text
\t\t\t)"""
INDEX_DDL = "CREATE UNIQUE INDEX IF NOT EXISTS states_by_name ON {schema}.states (name)"
# strata's history of the state (PostgreSQL has no versions of its own)
HISTORY_DDL = ("CREATE TABLE IF NOT EXISTS {schema}.strata_history (id bigserial primary key, "
               "recorded_at timestamptz default now(), sha256 text, size int, operation text, data text)")

# SQLSTATEs
_UNDEFINED = frozenset({"3F000", "42P01"})  # invalid_schema_name, undefined_table
_PRIVILEGE = "42501"


def require_psycopg() -> None:
    """StrataError naming the extra to install when psycopg is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StrataError(PSYCOPG_MISSING) from None


def conn_params(conn_str: str) -> dict[str, str]:
    """conn_str's settings (a postgres:// URL or key=value pairs); empty when it cannot be parsed."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(conn_str).items() if v is not None}
    except Exception:
        return {}


def _password_of(conn_str: str) -> str | None:
    password = conn_params(conn_str).get("password")
    if password:
        return password
    if "://" in conn_str:  # an unparsable URL: its userinfo
        m = re.match(r"^[a-z]+://[^:/@]*:([^@/]*)@", conn_str)
        return unquote(m.group(1)) if m and m.group(1) else None
    m = re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", conn_str)
    return m.group(1).strip("'") if m else None


def redact(text: str, conn_str: str) -> str:
    """``text`` without conn_str's password (psycopg quotes parts of a bad connection string)."""
    password = _password_of(conn_str)
    if password:
        text = text.replace(password, "***")
    return text


def server_label(conn_str: str) -> str:
    """``pg://host:port/database`` for messages (never the user or password)."""
    params = conn_params(conn_str)
    if not params:
        return f"pg://{_connection_identity(conn_str)}"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"pg://{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _server_reason(exc: BaseException) -> str:
    """The server's or libpq's own words from a connection failure, without psycopg's preamble."""
    text = _first_line(exc)
    if "failed: " in text:
        text = text.rsplit("failed: ", 1)[1]
    return re.sub(r"^(FATAL|ERROR):\s+", "", text).strip()


class DatabaseMissing(BackendError):
    """The database in conn_str does not exist (``strata bootstrap`` creates it)."""


def _database_missing(reason: str) -> bool:
    return bool(re.search(r'database "[^"]*" does not exist', reason))


def connect_problem(exc: Exception, conn_str: str, where: str) -> str:
    """A connection failure in plain words, naming ``where`` and what to do."""
    import psycopg

    params = conn_params(conn_str)
    reason = redact(_server_reason(exc), conn_str)
    user, database = params.get("user", ""), params.get("dbname", "")
    if isinstance(exc, psycopg.ProgrammingError) or not params:
        return (f"conn_str for {where} is not a valid PostgreSQL connection string ({reason}); "
                "write a postgres://user@host:port/database URL or key=value pairs")
    lowered = reason.lower()
    if _database_missing(reason):
        named = re.search(r'database "([^"]*)"', reason)
        return (f"the database {named.group(1) if named else database!r} does not exist on the server of {where}: "
                "create it with `strata bootstrap` (Terraform needs it to exist)")
    if ("password authentication failed" in lowered or "authentication failed" in lowered
            or "no password supplied" in lowered or ("role" in lowered and "does not exist" in lowered)
            or "pg_hba.conf" in lowered or "not permitted to log in" in lowered):
        who = f" as {user!r}" if user else ""
        return (f"authentication failed{who} at {where} ({reason}): check the user and password in conn_str "
                "(or PGPASSWORD / ~/.pgpass)")
    if "permission denied" in lowered:
        return (f"permission denied at {where} ({reason}): the user needs the CONNECT privilege on the database")
    if "ssl" in lowered:
        return (f"cannot connect to {where}: {reason} (a server without TLS needs sslmode=disable in conn_str)")
    return (f"cannot reach the PostgreSQL server of {where} ({reason}): check that it is running and that "
            "the host and port in conn_str are right")


def query_problem(exc: Exception, action: str, conn_str: str, where: str) -> str:
    """A failed statement in plain words: ``action`` is what was being done ("read the state at")."""
    import psycopg

    diag = getattr(exc, "diag", None)
    primary = redact(str(getattr(diag, "message_primary", None) or _first_line(exc)), conn_str)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate == _PRIVILEGE:
        return (f"permission denied to {action} {where} ({primary}): grant the user access to the schema and its "
                "tables, or ask the database owner")
    if sqlstate.startswith(("08", "57P")) or (isinstance(exc, psycopg.OperationalError) and not sqlstate):
        return f"lost the connection to the PostgreSQL server while trying to {action} {where} ({primary})"
    return f"PostgreSQL refused to {action} {where}: {primary}"


def connect(conn_str: str, where: str, **overrides: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection (application_name "strata"), or BackendError in plain words.

    ``overrides`` replace settings of conn_str (``dbname="postgres"`` for the maintenance database).
    """
    import psycopg

    params: dict[str, Any] = {"application_name": "strata", **overrides}
    if "connect_timeout" not in conn_params(conn_str):
        params["connect_timeout"] = CONNECT_TIMEOUT
    try:
        return psycopg.connect(conn_str, autocommit=True, **params)
    except psycopg.Error as exc:
        kind = DatabaseMissing if _database_missing(_server_reason(exc)) else BackendError
        raise kind(connect_problem(exc, conn_str, where)) from None


def quoted(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> str:
    """The schema name quoted as an SQL identifier (what Terraform's pq.QuoteIdentifier gives)."""
    from psycopg import sql

    return sql.Identifier(schema).as_string(conn)


def schema_exists(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def relation_exists(conn: psycopg.Connection[tuple[Any, ...]], schema: str, name: str) -> bool:
    """Whether ``schema.name`` exists (from the catalogs: no privilege on the schema needed)."""
    row = conn.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    return row is not None


def _split_key(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    if address.startswith("/") or address == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None  # ::ffff:127.0.0.1
    return (mapped or ip).is_loopback


def local_client_ports(server_port: int) -> set[int]:
    """Local ports of this machine's established TCP connections to ``server_port`` (/proc/net/tcp{,6})."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "01":  # 01 = ESTABLISHED
                continue
            try:
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            if remote_port == server_port:
                ports.add(local_port)
    return ports


_HOLDER_SQL = """
SELECT l.pid, a.usename, host(a.client_addr), a.client_port, a.application_name, a.backend_start
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
  AND l.pid <> pg_backend_pid()
ORDER BY l.pid
LIMIT 1
"""


def lock_holder(conn: psycopg.Connection[tuple[Any, ...]], key: int) -> LockInfo | None:
    """Who holds advisory lock ``key`` in this database (any session but ``conn``'s own), or None.

    Terraform keeps no lock record in PostgreSQL, so the holder is the session: ``who`` is
    ``<user>@<client address>``, ``created`` the session's start, ``path`` the lock key (Terraform's
    ``Path``), and ``holder`` has its pid, client, application and whether it is a live process on this
    machine (``live``: the session comes over loopback and this machine has that TCP connection open).
    """
    row = conn.execute(_HOLDER_SQL, _split_key(key)).fetchone()
    if row is None:
        return None
    pid, user, address, port, application, started = row
    if port == -1:  # a Unix-socket session: a process on the server's machine
        client = "local socket"
    else:
        client = f"{address}:{port}" if address and port is not None else (address or "unknown address")
    server_local = _is_loopback(conn.info.hostaddr or conn.info.host)
    if port == -1:
        live = server_local
    else:
        live = (server_local and _is_loopback(address) and isinstance(port, int)
                and port in local_client_ports(int(conn.info.port)))
    created = started.isoformat() if isinstance(started, datetime) else ""
    who = f"{user or 'unknown user'}@{address or ('local socket' if port == -1 else 'unknown address')}"
    info = LockInfo(id="", operation="", who=who, version="", created=created, path=str(key))
    info.holder = {"pid": pid, "client": client, "application": application or "", "live": live, "state": "held"}
    return info


# -- the store ----------------------------------------------------------------------------------------------


class PgStore(StateStore):
    """The ``default`` row of ``"<schema>".states``, locked with Terraform's advisory locks."""

    backend = "pg"

    def __init__(self, values: dict[str, Any]) -> None:
        self.conn_str = str(values.get("conn_str") or "")
        self.schema = str(values.get("schema_name") or DEFAULT_SCHEMA)
        self.skip_schema_creation = bool(values.get("skip_schema_creation"))
        self.skip_table_creation = bool(values.get("skip_table_creation"))
        self.skip_index_creation = bool(values.get("skip_index_creation"))
        self.where = f"{server_label(self.conn_str)} schema {self.schema}"
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._lock_conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._lock_key: int | None = None
        self._prepared = False

    # -- connections ---------------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The lock's connection while locked (so writes fail if the lock was lost), else a shared one."""
        if self._lock_conn is not None:
            return self._lock_conn
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.conn_str, self.where)
        return self._conn

    @contextlib.contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        """Turn every psycopg failure in the block into a BackendError naming ``action`` and :attr:`where`."""
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            raise BackendError(query_problem(exc, action, self.conn_str, self.where)) from None

    def _table(self, name: str) -> str:
        return f"{quoted(self._connection(), self.schema)}.{name}"

    # -- state ---------------------------------------------------------------------------------------------

    def _row(self) -> tuple[int, str | None] | None:
        """(id, data) of the state's row; None when there is no row, table or schema."""
        import psycopg

        with self._calling("read the state at"):
            conn = self._connection()
            try:
                row = conn.execute(f"SELECT id, data FROM {self._table(STATES_TABLE)} WHERE name = %s",
                                   (WORKSPACE,)).fetchone()
            except psycopg.Error as exc:
                if exc.sqlstate in _UNDEFINED:
                    return None
                raise
        return None if row is None else (int(row[0]), row[1])

    def read(self) -> bytes | None:
        row = self._row()
        if row is None or not row[1]:
            return None
        return row[1].encode("utf-8")

    def stat(self) -> StateObject | None:
        data = self.read()
        if data is None:
            return None
        return StateObject(len(data), self._written_at(hashlib.sha256(data).hexdigest()))

    def _written_at(self, digest: str) -> datetime | None:
        """When strata last wrote these bytes (its history), None when strata did not write them."""
        import psycopg

        with self._calling("read strata's history at"):
            try:
                row = self._connection().execute(
                    f"SELECT recorded_at FROM {self._table(HISTORY_TABLE)} WHERE sha256 = %s "
                    "AND operation NOT LIKE 'before %%' ORDER BY id DESC LIMIT 1", (digest,)).fetchone()
            except psycopg.Error as exc:
                if exc.sqlstate in _UNDEFINED:
                    return None
                raise
        return row[0] if row is not None and isinstance(row[0], datetime) else None

    def prepare(self) -> None:
        """What Terraform does when it configures the backend: the schema, sequence, table and index,
        with its DDL, where missing and not skipped (checked first, so an existing table needs no
        CREATE privilege)."""
        if self._prepared:
            return
        with self._calling("create the state table at"):
            conn = self._connection()
            schema = quoted(conn, self.schema)
            if not self.skip_schema_creation and not schema_exists(conn, self.schema):
                conn.execute(SCHEMA_DDL.format(schema=schema))
            if not self.skip_table_creation and not relation_exists(conn, self.schema, STATES_TABLE):
                if not relation_exists(conn, "public", "global_states_id_seq"):
                    conn.execute(SEQUENCE_DDL)
                conn.execute(TABLE_DDL.format(schema=schema))
            if not self.skip_index_creation and not relation_exists(conn, self.schema, STATES_INDEX):
                conn.execute(INDEX_DDL.format(schema=schema))
        self._prepared = True

    def write(self, data: bytes) -> None:
        if self._lock_conn is None:
            raise BackendError(f"internal error: writing {self.where} without its lock")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BackendError(f"cannot write to {self.where}: the state is not UTF-8 text") from None
        self.prepare()
        with self._calling("write the state at"):
            self._connection().execute(
                f"INSERT INTO {self._table(STATES_TABLE)} (name, data) VALUES (%(name)s, %(data)s) "
                f"ON CONFLICT (name) DO UPDATE SET data = %(data)s WHERE {STATES_TABLE}.name = %(name)s",
                {"name": WORKSPACE, "data": text})

    def delete(self) -> None:
        if self._lock_conn is None:
            raise BackendError(f"internal error: deleting {self.where} without its lock")
        if self.read() is None:
            return
        with self._calling("delete the state at"):
            self._connection().execute(f"DELETE FROM {self._table(STATES_TABLE)} WHERE name = %(name)s",
                                       {"name": WORKSPACE})

    # -- locks ---------------------------------------------------------------------------------------------

    def lock(self, info: LockInfo) -> None:
        """Terraform's lock (client.go Lock): the row's id as a session-level advisory lock, taken with the
        creation lock -1 in one statement, -1 released after; with no row yet, the creation lock alone."""
        import psycopg

        if self._lock_conn is not None:
            raise StateLocked(self._holder_or_none(), self.where)
        conn = connect(self.conn_str, self.where)
        try:
            with self._calling("lock the state at"):
                table = f"{quoted(conn, self.schema)}.{STATES_TABLE}"
                try:
                    row = conn.execute(
                        f"SELECT {STATES_TABLE}.id, pg_try_advisory_lock({STATES_TABLE}.id), "
                        f"pg_try_advisory_lock(-1) FROM {table} WHERE {STATES_TABLE}.name = %s",
                        (WORKSPACE,)).fetchone()
                except psycopg.Error as exc:
                    if exc.sqlstate not in _UNDEFINED:
                        raise
                    row = None  # no table yet: the state's row is still to be created
                if row is None:  # creating the row: Terraform takes the creation lock -1
                    got = conn.execute("SELECT pg_try_advisory_lock(-1)").fetchone()
                    if not (got and got[0]):
                        raise StateLocked(lock_holder(conn, CREATION_LOCK), self.where)
                    key = CREATION_LOCK
                else:
                    key, did_lock, did_lock_for_create = int(row[0]), bool(row[1]), bool(row[2])
                    if not did_lock:
                        raise StateLocked(lock_holder(conn, key), self.where)
                    if not did_lock_for_create:  # someone is creating a workspace: not safe to touch
                        raise StateLocked(lock_holder(conn, CREATION_LOCK), self.where)
                    conn.execute("SELECT pg_advisory_unlock(-1)")
        except BaseException:
            conn.close()  # ending the session drops whatever it took
            raise
        info.path = str(key)
        self._lock_conn, self._lock_key = conn, key

    def unlock(self, info: LockInfo) -> None:
        conn, key = self._lock_conn, self._lock_key
        self._lock_conn, self._lock_key = None, None
        if conn is None:
            return
        import psycopg

        try:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (key,))
        except psycopg.Error:
            pass  # the session is gone, and its lock with it
        finally:
            conn.close()

    def _holder_or_none(self) -> LockInfo | None:
        try:
            return self.current_lock()
        except BackendError:
            return None

    def current_lock(self) -> LockInfo | None:
        """The session holding the row's advisory lock; with no row yet, the one holding Terraform's
        creation lock -1 (which blocks every lock on a state that has no row)."""
        row = self._row()
        key = row[0] if row is not None else CREATION_LOCK
        with self._calling("look up the lock of"):
            conn = self._conn if self._conn is not None and not self._conn.closed else None
            if conn is None:
                conn = self._conn = connect(self.conn_str, self.where)
            return lock_holder(conn, key)

    def force_unlock(self, holder: LockInfo) -> None:
        """End the holding session (``pg_terminate_backend``): PostgreSQL has no other way to take a
        session's advisory lock away; then wait until the lock is gone."""
        pid = holder.holder.get("pid")
        if not isinstance(pid, int):
            raise BackendError(f"the lock on {self.where} names no PostgreSQL session to end")
        now = self.current_lock()
        if now is None:
            return
        if now.holder.get("pid") != pid:
            raise BackendError(f"the lock on {self.where} is now held by session {now.holder.get('pid')} "
                               f"({now.describe()}), not {pid}; nothing was ended: look again with `strata locks`")
        assert self._conn is not None  # current_lock connected
        with self._calling(f"end session {pid} (the lock holder) of"):
            self._conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + UNLOCK_WAIT
        while True:
            now = self.current_lock()
            if now is None or now.holder.get("pid") != pid:
                return
            if time.monotonic() > deadline:
                raise BackendError(f"session {pid} still holds the lock on {self.where} {UNLOCK_WAIT:.0f} s "
                                   "after it was told to end")
            time.sleep(0.1)

    # -- history ---------------------------------------------------------------------------------------------

    def _ensure_history(self) -> None:
        conn = self._connection()
        if relation_exists(conn, self.schema, HISTORY_TABLE):
            return
        schema = quoted(conn, self.schema)
        if not schema_exists(conn, self.schema):
            if self.skip_schema_creation:
                raise BackendError(f"cannot keep strata's history at {self.where}: the schema does not exist "
                                   "and skip_schema_creation is set")
            conn.execute(SCHEMA_DDL.format(schema=schema))
        conn.execute(HISTORY_DDL.format(schema=schema))

    def remember(self, data: bytes, operation: str) -> None:
        digest = hashlib.sha256(data).hexdigest()
        with self._calling("record the state in strata's history at"):
            self._ensure_history()
            conn = self._connection()
            table = self._table(HISTORY_TABLE)
            newest = conn.execute(f"SELECT sha256 FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
            if newest is not None and newest[0] == digest:
                return
            conn.execute(f"INSERT INTO {table} (sha256, size, operation, data) VALUES (%s, %s, %s, %s)",
                         (digest, len(data), operation, data.decode("utf-8", errors="replace")))

    def versions(self) -> list[StateVersion]:
        import psycopg

        current = self.read()
        digest = hashlib.sha256(current).hexdigest() if current is not None else None
        with self._calling("read strata's history at"):
            try:
                rows = self._connection().execute(
                    f"SELECT id, recorded_at, size, sha256 FROM {self._table(HISTORY_TABLE)} "
                    "ORDER BY id DESC").fetchall()
            except psycopg.Error as exc:
                if exc.sqlstate in _UNDEFINED:
                    return []
                raise
        return [StateVersion(str(vid), recorded if isinstance(recorded, datetime) else None, int(size or 0),
                             current=digest is not None and sha == digest, kind="history")
                for vid, recorded, size, sha in rows]

    def read_version(self, version_id: str) -> bytes:
        import psycopg

        if not version_id.isdigit():
            raise BackendError(f"no version {version_id!r} of {self.where} (see `strata state versions`)")
        with self._calling("read strata's history at"):
            try:
                row = self._connection().execute(
                    f"SELECT data FROM {self._table(HISTORY_TABLE)} WHERE id = %s",
                    (int(version_id),)).fetchone()
            except psycopg.Error as exc:
                if exc.sqlstate not in _UNDEFINED:
                    raise
                row = None
        if row is None or row[0] is None:
            raise BackendError(f"no version {version_id!r} of {self.where} (see `strata state versions`)")
        return str(row[0]).encode("utf-8")

    def close(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()  # ending the session releases its lock
            self._lock_conn, self._lock_key = None, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
