"""strata bootstrap for pg backends: the database, and in it what Terraform's pg backend creates.

For each schema: the schema, the sequence ``public.global_states_id_seq`` (shared by every schema of
the database), the ``states`` table and its ``states_by_name`` index, made with Terraform's own DDL
(backend/remote-state/pg/backend.go) so a later ``terraform init`` finds exactly what it expects,
plus strata's history table ``strata_history``. The skip_* settings are honoured as Terraform honours
them: a skipped resource is never created, and one that is missing although Terraform needs it is an
error (someone else must create it first). Idempotent: a second run reports everything unchanged;
a dry run connects only to look.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strata.backends.base import BackendError
from strata.backends.pg import (
    HISTORY_DDL,
    HISTORY_TABLE,
    INDEX_DDL,
    SCHEMA_DDL,
    SEQUENCE_DDL,
    STATES_INDEX,
    STATES_TABLE,
    TABLE_DDL,
    DatabaseMissing,
    conn_params,
    connect,
    query_problem,
    relation_exists,
    require_psycopg,
    schema_exists,
    server_label,
)
from strata.bootstrap.targets import Change, PgTarget

if TYPE_CHECKING:
    import psycopg

MAINTENANCE_DATABASES = ("postgres", "template1")  # where CREATE DATABASE runs
STATES_COLUMNS = frozenset({"id", "name", "data"})


def _one_line(statement: str) -> str:
    return " ".join(statement.split())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def bootstrap_pg(target: PgTarget, dry_run: bool = False) -> list[Change]:
    """Create what is missing (or, with ``dry_run``, only say what would be created)."""
    require_psycopg()
    where = server_label(target.conn_str)
    params = conn_params(target.conn_str)
    if not params:
        connect(target.conn_str, where)  # raises the plain-words error for a conn_str that cannot be parsed
    database = params.get("dbname") or params.get("user") or ""
    changes: list[Change] = []
    try:
        conn: psycopg.Connection[tuple[Any, ...]] | None = connect(target.conn_str, where)
        changes.append(Change(target.description, "database", database, "unchanged", "exists"))
    except DatabaseMissing:
        statement = f"CREATE DATABASE {_quote(database)}"
        if dry_run:
            conn = None
            changes.append(Change(target.description, "database", database, "would create", statement))
        else:
            changes.append(Change(target.description, "database", database, _create_database(target, database, where),
                                  statement))
            conn = connect(target.conn_str, where)
    try:
        return changes + _Schemas(target, conn, where, dry_run).run()
    finally:
        if conn is not None:
            conn.close()


def _create_database(target: PgTarget, database: str, where: str) -> Any:
    """CREATE DATABASE from a maintenance database on the same server, with the same credentials."""
    import psycopg

    last: BackendError | None = None
    for maintenance in MAINTENANCE_DATABASES:
        try:
            conn = connect(target.conn_str, where, dbname=maintenance)
        except DatabaseMissing as exc:
            last = exc
            continue
        try:
            conn.execute(f"CREATE DATABASE {_quote(database)}")
            return "created"
        except psycopg.Error as exc:
            if exc.sqlstate == "42P04":  # duplicate_database: created meanwhile by someone else
                return "unchanged"
            if exc.sqlstate == "42501":
                raise BackendError(f"permission denied to create the database {database!r} on {where}: the "
                                   f"user needs the CREATEDB privilege, or create it yourself (createdb {database})"
                                   ) from None
            raise BackendError(query_problem(exc, f"create the database {database!r} on", target.conn_str,
                                             where)) from None
        finally:
            conn.close()
    raise BackendError(f"cannot create the database {database!r} on {where}: no maintenance database "
                       f"({', '.join(MAINTENANCE_DATABASES)}) to connect to ({last})")


class _Schemas:
    """Per schema: schema, sequence (once), states table, index, history table."""

    def __init__(self, target: PgTarget, conn: psycopg.Connection[tuple[Any, ...]] | None, where: str,
                 dry_run: bool) -> None:
        self.target = target
        self.conn = conn  # None: the database does not exist yet (dry run), so nothing in it exists
        self.where = where
        self.dry_run = dry_run
        self.changes: list[Change] = []
        self.sequence_done = False

    def run(self) -> list[Change]:
        import psycopg

        for schema in self.target.schemas:
            try:
                self.schema(schema)
            except psycopg.Error as exc:
                raise BackendError(query_problem(exc, f"prepare schema {schema!r} in", self.target.conn_str,
                                                 self.where)) from None
        return self.changes

    # -- helpers -----------------------------------------------------------------------------------------

    def add(self, resource: str, name: str, action: Any, detail: str) -> None:
        self.changes.append(Change(self.target.description, resource, name, action, detail))

    def create(self, resource: str, name: str, statement: str) -> None:
        if self.dry_run:
            self.add(resource, name, "would create", _one_line(statement))
            return
        assert self.conn is not None
        self.conn.execute(statement)
        self.add(resource, name, "created", _one_line(statement))

    def schema_exists(self, schema: str) -> bool:
        return self.conn is not None and schema_exists(self.conn, schema)

    def relation_exists(self, schema: str, name: str) -> bool:
        return self.conn is not None and relation_exists(self.conn, schema, name)

    def missing(self, what: str, schema: str, setting: str) -> BackendError:
        return BackendError(f"{what} does not exist in {self.where} and {setting} is set, so neither Terraform "
                            f"nor strata creates it: create it first (or remove {setting}) (schema {schema!r})")

    # -- one schema ----------------------------------------------------------------------------------------

    def schema(self, schema: str) -> None:
        target = self.target
        quoted = _quote(schema)
        if self.schema_exists(schema):
            self.add("schema", schema, "unchanged", "exists")
        elif target.skip_schema_creation:
            raise self.missing(f"the schema {schema!r}", schema, "skip_schema_creation")
        else:
            self.create("schema", schema, SCHEMA_DDL.format(schema=quoted))

        table = f"{schema}.{STATES_TABLE}"
        if not target.skip_table_creation:  # Terraform creates the sequence with the table, unless skipped
            self.sequence()
        if self.relation_exists(schema, STATES_TABLE):
            self.check_states_table(schema)
            skipped = " (skip_table_creation is set)" if target.skip_table_creation else ""
            self.add("table", table, "unchanged", f"exists{skipped}")
        elif target.skip_table_creation:
            raise self.missing(f"the table {table!r}", schema, "skip_table_creation")
        else:
            self.create("table", table, TABLE_DDL.format(schema=quoted))

        index = f"{schema}.{STATES_INDEX}"
        if self.relation_exists(schema, STATES_INDEX):
            self.add("index", index, "unchanged", "exists")
        elif target.skip_index_creation:
            self.add("index", index, "unchanged", "missing, not created: skip_index_creation is set (the unique "
                                                  "constraint on states.name still serves Terraform)")
        else:
            self.create("index", index, INDEX_DDL.format(schema=quoted))

        history = f"{schema}.{HISTORY_TABLE}"
        if self.relation_exists(schema, HISTORY_TABLE):
            self.add("history table", history, "unchanged", "exists (strata's history of the state)")
        else:
            self.create("history table", history, HISTORY_DDL.format(schema=quoted))

    def sequence(self) -> None:
        """Terraform's id sequence, in ``public`` and shared by all schemas: reported once."""
        if self.sequence_done:
            return
        self.sequence_done = True
        if self.relation_exists("public", "global_states_id_seq"):
            self.add("sequence", "public.global_states_id_seq", "unchanged", "exists")
        else:
            self.create("sequence", "public.global_states_id_seq", SEQUENCE_DDL)

    def check_states_table(self, schema: str) -> None:
        assert self.conn is not None
        rows = self.conn.execute(
            "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (schema, STATES_TABLE)).fetchall()
        columns = {str(r[0]) for r in rows}
        if not STATES_COLUMNS.issubset(columns):
            raise BackendError(f"{schema}.{STATES_TABLE} in {self.where} is not Terraform's states table (columns: "
                               f"{', '.join(sorted(columns)) or 'none'}; Terraform needs id, name, data)")
