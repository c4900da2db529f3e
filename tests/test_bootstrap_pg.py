"""strata bootstrap for pg backends (strata.bootstrap.pg.bootstrap_pg) on a real PostgreSQL.

A fresh database is created (from the ``postgres`` maintenance database), then per schema Terraform's
own objects and strata's history table; a second run changes nothing; a dry run writes nothing; the
skip_* settings are honoured; failures are BackendErrors in plain words. With real Terraform 1.0.3 and
1.11: what bootstrap makes is exactly what ``terraform init`` makes, and Terraform works on it with
every skip_* setting on (so it needs nothing more); and end to end through ``strata bootstrap``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from conftest import Result, write_tree
from strata.backends.base import BackendError
from strata.backends.pg import BACKEND, PgStore
from strata.bootstrap.pg import bootstrap_pg
from strata.bootstrap.targets import PgTarget

if TYPE_CHECKING:  # imported for real by pytest_plugins, which also rewrites its asserts
    from servers import PostgresServer

pytest_plugins = ["servers"]

TF_TIMEOUT = 120.0
RESOURCES = ("schema", "table", "index", "history table")


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def new_name() -> str:
    return f"boot_{uuid.uuid4().hex[:12]}"


def database_exists(server: PostgresServer, name: str) -> bool:
    return server.query("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == [["1"]]


def catalog(url: str) -> list[tuple[Any, ...]]:
    """Every schema and relation of the database outside the system schemas (to see that nothing changed)."""
    return sql(url, "SELECT n.nspname, c.relname, c.relkind FROM pg_namespace n LEFT JOIN pg_class c "
                    "ON c.relnamespace = n.oid WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> "
                    "'information_schema' ORDER BY 1, 2")


def outcome(changes: list[Any]) -> list[tuple[str, str, str]]:
    return [(c.resource, c.name, c.action) for c in changes]


def expected(database: str, schemas: tuple[str, ...], action: str, sequence: bool = True) -> list[tuple[str, str, str]]:
    out = [("database", database, action)]
    for i, schema in enumerate(schemas):
        out.append(("schema", schema, action))
        if i == 0 and sequence:
            out.append(("sequence", "public.global_states_id_seq", action))
        out += [("table", f"{schema}.states", action), ("index", f"{schema}.states_by_name", action),
                ("history table", f"{schema}.strata_history", action)]
    return out


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- bootstrap ------------------------------------------------------------------------------------------------


def test_a_fresh_database_is_created_then_a_second_run_changes_nothing(postgres_server: PostgresServer) -> None:
    database = new_name()
    url = postgres_server.url(database)
    schemas = ("dev_us_east_1_01_network", "Mixed Case-Schema")
    target = PgTarget(url, schemas, stacks=("dev/us-east-1/01-network",))
    assert not database_exists(postgres_server, database)

    changes = bootstrap_pg(target)
    assert outcome(changes) == expected(database, schemas, "created")
    assert {c.target for c in changes} == {f"pg://127.0.0.1:{postgres_server.port}/{database}"}
    created = {c.name: c.detail for c in changes}
    assert created[database] == f'CREATE DATABASE "{database}"'
    assert created["Mixed Case-Schema"] == 'CREATE SCHEMA IF NOT EXISTS "Mixed Case-Schema"'
    assert created["public.global_states_id_seq"] == ("CREATE SEQUENCE IF NOT EXISTS public.global_states_id_seq "
                                                      "AS bigint")
    assert created["Mixed Case-Schema.states"] == (
        "CREATE TABLE IF NOT EXISTS \"Mixed Case-Schema\".states ( id bigint NOT NULL DEFAULT "
        "nextval('public.global_states_id_seq') PRIMARY KEY, name text UNIQUE, data text )")
    assert database_exists(postgres_server, database)
    for schema in schemas:
        assert sql(url, "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s ORDER BY 1", (schema,)) == [
            ("states",), ("states_by_name",), ("states_name_key",), ("states_pkey",), ("strata_history",),
            ("strata_history_id_seq",), ("strata_history_pkey",)]
    assert sql(url, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = 'strata_history' ORDER BY ordinal_position", (schemas[0],)) == [
        ("id", "bigint"), ("recorded_at", "timestamp with time zone"), ("sha256", "text"), ("size", "integer"),
        ("operation", "text"), ("data", "text")]

    before = catalog(url)
    again = bootstrap_pg(target)
    assert outcome(again) == expected(database, schemas, "unchanged")
    assert catalog(url) == before

    # the store works on what bootstrap made, and its history goes to the table bootstrap made
    with BACKEND.store({"conn_str": url, "schema_name": schemas[1]}, Path("."), Path(".")) as store:
        assert isinstance(store, PgStore)
        assert store.read() is None
        store.remember(b'{"version": 4}', "test")
        assert len(store.versions()) == 1


def test_dry_run_writes_nothing(postgres_server: PostgresServer) -> None:
    database = new_name()
    url = postgres_server.url(database)
    target = PgTarget(url, ("one", "two"))
    changes = bootstrap_pg(target, dry_run=True)
    assert outcome(changes) == expected(database, ("one", "two"), "would create")
    assert not database_exists(postgres_server, database)

    # half there: the dry run names only what is missing, and still changes nothing
    postgres_server.create_database(database)
    sql(url, 'CREATE SCHEMA "one"')
    sql(url, "CREATE SEQUENCE public.global_states_id_seq AS bigint")
    sql(url, "CREATE TABLE one.states (id bigint NOT NULL DEFAULT nextval('public.global_states_id_seq') "
             "PRIMARY KEY, name text UNIQUE, data text)")
    before = catalog(url)
    changes = bootstrap_pg(target, dry_run=True)
    assert outcome(changes) == [
        ("database", database, "unchanged"), ("schema", "one", "unchanged"),
        ("sequence", "public.global_states_id_seq", "unchanged"), ("table", "one.states", "unchanged"),
        ("index", "one.states_by_name", "would create"), ("history table", "one.strata_history", "would create"),
        ("schema", "two", "would create"), ("table", "two.states", "would create"),
        ("index", "two.states_by_name", "would create"), ("history table", "two.strata_history", "would create")]
    assert catalog(url) == before
    assert [c.action for c in bootstrap_pg(target)].count("created") == 6
    assert {c.action for c in bootstrap_pg(target, dry_run=True)} == {"unchanged"}


def test_skip_settings_are_honoured(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database()
    url = postgres_server.url(database)
    with pytest.raises(BackendError) as failed:
        bootstrap_pg(PgTarget(url, ("absent",), skip_schema_creation=True))
    assert "the schema 'absent' does not exist" in str(failed.value)
    assert "skip_schema_creation is set" in str(failed.value)
    assert sql(url, "SELECT 1 FROM pg_namespace WHERE nspname = 'absent'") == []

    sql(url, 'CREATE SCHEMA "given"')
    with pytest.raises(BackendError, match=r"the table 'given\.states' does not exist .* skip_table_creation is set"):
        bootstrap_pg(PgTarget(url, ("given",), skip_schema_creation=True, skip_table_creation=True))

    # a DBA made the table (here without the sequence); strata adds only its history table
    sql(url, "CREATE TABLE given.states (id bigserial PRIMARY KEY, name text UNIQUE, data text)")
    target = PgTarget(url, ("given",), skip_schema_creation=True, skip_table_creation=True, skip_index_creation=True)
    changes = bootstrap_pg(target)
    assert outcome(changes) == [("database", database, "unchanged"), ("schema", "given", "unchanged"),
                                ("table", "given.states", "unchanged"), ("index", "given.states_by_name", "unchanged"),
                                ("history table", "given.strata_history", "created")]
    assert "skip_index_creation is set" in changes[3].detail and changes[3].detail.startswith("missing")
    assert sql(url, "SELECT to_regclass('public.global_states_id_seq'), to_regclass('given.states_by_name')") == [
        (None, None)]


def test_errors_are_plain_words(postgres_server: PostgresServer) -> None:
    with pytest.raises(BackendError, match=r"^cannot reach the PostgreSQL server of pg://127\.0\.0\.1:\d+/x"):
        bootstrap_pg(PgTarget(f"postgres://postgres:pw@127.0.0.1:{closed_port()}/x?sslmode=disable", ("s",)))

    role = f"nocreatedb_{os.getpid()}_{time.monotonic_ns()}"
    postgres_server.query("postgres", f'CREATE ROLE "{role}" LOGIN')
    try:
        database = new_name()
        conn_str = f"postgres://{role}@127.0.0.1:{postgres_server.port}/{database}?sslmode=disable"
        with pytest.raises(BackendError) as failed:
            bootstrap_pg(PgTarget(conn_str, ("s",)))
        assert str(failed.value) == (
            f"permission denied to create the database {database!r} on pg://127.0.0.1:{postgres_server.port}/"
            f"{database}: the user needs the CREATEDB privilege, or create it yourself (createdb {database})")
        assert not database_exists(postgres_server, database)
    finally:
        postgres_server.query("postgres", f'DROP ROLE "{role}"')

    database = postgres_server.create_database()
    url = postgres_server.url(database)
    sql(url, "CREATE SCHEMA odd")
    sql(url, "CREATE TABLE odd.states (key text, value text)")
    with pytest.raises(BackendError, match=r"odd\.states in .* is not Terraform's states table"):
        bootstrap_pg(PgTarget(url, ("odd",)))


# -- with real terraform -------------------------------------------------------------------------------------------

STACK_TF = """
terraform {
  backend "pg" {
    conn_str             = "%(url)s"
    schema_name          = "%(schema)s"
    skip_schema_creation = %(skip)s
    skip_table_creation  = %(skip)s
    skip_index_creation  = %(skip)s
  }
}

resource "null_resource" "this" {}

output "id" {
  value = null_resource.this.id
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


def table_shape(url: str, schema: str) -> dict[str, Any]:
    """The states table as the catalogs describe it, independent of the schema's name."""
    columns = sql(url, "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                       "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d "
                       "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                       "WHERE a.attrelid = to_regclass(format('%%I.states', %s::text)) AND a.attnum > 0 "
                       "AND NOT a.attisdropped ORDER BY a.attnum", (schema,))
    indexes = sql(url, "SELECT indexname, replace(indexdef, %s, 'S.') FROM pg_indexes WHERE schemaname = %s "
                       "AND tablename = 'states' ORDER BY 1", (f"{schema}.", schema))
    constraints = sql(url, "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                           "WHERE conrelid = to_regclass(format('%%I.states', %s::text)) ORDER BY 1", (schema,))
    return {"columns": columns, "indexes": indexes, "constraints": constraints}


@pytest.mark.terraform
def test_terraform_works_on_what_bootstrap_made(terraform_binary: str, provider_mirror: dict[str, str],
                                                postgres_server: PostgresServer, tmp_path: Path) -> None:
    database = new_name()
    url = postgres_server.url(database)
    assert {c.action for c in bootstrap_pg(PgTarget(url, ("boot",)))} == {"created"}
    env = terraform_env(provider_mirror, tmp_path / "home")

    # terraform with every skip_* on: it creates nothing, so everything it needs came from bootstrap
    boot = write_tree(tmp_path / "boot", {"main.tf": STACK_TF % {"url": url, "schema": "boot", "skip": "true"}})
    init = terraform(terraform_binary, "init", "-input=false", cwd=boot, env=env)
    assert init.code == 0, init.output
    apply = terraform(terraform_binary, "apply", "-auto-approve", "-input=false", cwd=boot, env=env)
    assert apply.code == 0, apply.output
    plan = terraform(terraform_binary, "plan", "-detailed-exitcode", "-input=false", cwd=boot, env=env)
    assert plan.code == 0, plan.output
    with BACKEND.store({"conn_str": url, "schema_name": "boot"}, tmp_path, tmp_path) as store:
        raw = store.read()
    assert raw is not None and [r["type"] for r in json.loads(raw)["resources"]] == ["null_resource"]

    # terraform making its own schema in the same database makes exactly what bootstrap made
    made = write_tree(tmp_path / "made", {"main.tf": STACK_TF % {"url": url, "schema": "made", "skip": "false"}})
    init = terraform(terraform_binary, "init", "-input=false", cwd=made, env=env)
    assert init.code == 0, init.output
    assert table_shape(url, "made") == table_shape(url, "boot")
    assert table_shape(url, "boot")["indexes"] == [
        ("states_by_name", "CREATE UNIQUE INDEX states_by_name ON S.states USING btree (name)"),
        ("states_name_key", "CREATE UNIQUE INDEX states_name_key ON S.states USING btree (name)"),
        ("states_pkey", "CREATE UNIQUE INDEX states_pkey ON S.states USING btree (id)")]
    changes = bootstrap_pg(PgTarget(url, ("boot", "made")))
    assert [(c.name, c.action) for c in changes if c.action != "unchanged"] == [("made.strata_history", "created")]


@pytest.mark.terraform
def test_strata_bootstrap_then_terraform_apply(strata: Callable[..., Result], tf_111: str,
                                               provider_mirror: dict[str, str], postgres_server: PostgresServer,
                                               tmp_path: Path) -> None:
    database = new_name()
    url = postgres_server.url(database)
    stacks = ("dev/us-east-1/01-network", "dev/us-east-1/02-platform")
    files = {"strata.hcl": f'strata {{}}\n\nbackend "pg" {{\n  conn_str = "{url}"\n}}\n'}
    for stack in stacks:
        files[f"{stack}/strata.hcl"] = "stack {}\n"
        files[f"{stack}/main.tf"] = 'resource "null_resource" "this" {}\n'
    repo = write_tree(tmp_path / "repo", files)
    schemas = ("dev_us_east_1_01_network", "dev_us_east_1_02_platform")

    dry = strata("bootstrap", "--dry-run", "--json", cwd=repo)
    assert dry.code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True
    assert {c["action"] for c in report["changes"]} == {"would create"}
    assert [(c["resource"], c["name"]) for c in report["changes"]] == [
        (r, n) for r, n, _ in expected(database, schemas, "would create")]
    assert not database_exists(postgres_server, database)

    done = strata("bootstrap", "--json", cwd=repo)
    assert done.code == 0, done.output
    assert [(c["resource"], c["name"], c["action"]) for c in json.loads(done.stdout)["changes"]] == expected(
        database, schemas, "created")
    again = strata("bootstrap", "--json", cwd=repo)
    assert {c["action"] for c in json.loads(again.stdout)["changes"]} == {"unchanged"}

    generated = strata("generate", cwd=repo, env={"STRATA_TERRAFORM": tf_111})
    assert generated.code == 0, generated.output
    env = terraform_env(provider_mirror, tmp_path / "home")
    for stack in stacks:
        init = terraform(tf_111, "init", "-input=false", cwd=repo / stack, env=env)
        assert init.code == 0, init.output
        apply = terraform(tf_111, "apply", "-auto-approve", "-input=false", cwd=repo / stack, env=env)
        assert apply.code == 0, apply.output
    for schema in schemas:
        rows = sql(url, f'SELECT name FROM "{schema}".states')
        assert rows == [("default",)]
