//! The tables' definitions, as numbered migrations: applied at start-up (each once, under an
//! advisory lock so that services starting together do not race), or by hand from
//! [`schema_sql`].

use sqlx::{Connection, Executor, PgConnection, PgPool};

use super::errors::{explain, explain_create, server_text};
use super::tables::Tables;

/// The migrations, in order; the version of each is its index plus one. A migration never
/// changes once released: a change is a new one.
fn migrations(t: &Tables) -> Vec<String> {
    let (outbox, poison, inbox) = (t.outbox(), t.poison(), t.inbox());
    let (notify, channel) = (t.notify_function(), t.channel());
    let first = format!(
        r#"
CREATE TABLE IF NOT EXISTS {outbox} (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    key        text NOT NULL,
    delivery   text NOT NULL CHECK (delivery IN ('stream', 'pubsub', 'sharded')),
    envelope   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS {poison} (
    seq        bigint PRIMARY KEY,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    key        text NOT NULL,
    delivery   text NOT NULL,
    envelope   text NOT NULL,
    created_at timestamptz NOT NULL,
    moved_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason     text NOT NULL
);
CREATE TABLE IF NOT EXISTS {inbox} (
    consumer_group text NOT NULL,
    event_id       text NOT NULL,
    handled_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer_group, event_id)
);
CREATE INDEX IF NOT EXISTS {prefix}inbox_handled_at ON {inbox} (handled_at);
CREATE OR REPLACE FUNCTION {notify}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS {prefix}outbox_notify ON {outbox};
CREATE TRIGGER {prefix}outbox_notify AFTER INSERT ON {outbox}
    FOR EACH STATEMENT EXECUTE FUNCTION {notify}();
"#,
        prefix = t.index_prefix(),
    );
    // 2: events published for later through the outbox.
    let second = format!(
        "ALTER TABLE {outbox} ADD COLUMN IF NOT EXISTS deliver_at timestamptz;\n\
         ALTER TABLE {poison} ADD COLUMN IF NOT EXISTS deliver_at timestamptz;\n"
    );
    vec![first, second]
}

/// The SQL that creates the outbox and inbox tables with the default names (`eventbus_outbox`,
/// `eventbus_outbox_poison`, `eventbus_inbox`, `eventbus_schema_version`) in the connection's
/// schema, for a role that may not create tables itself: apply it as an owner, grant the
/// service's role `SELECT, INSERT, DELETE` on the three tables, and build the outbox and
/// inbox with `create_tables(false)`.
pub fn schema_sql() -> String {
    sql_for(&Tables::default())
}

/// Every migration for `tables`, with the version bookkeeping, as one script.
pub(crate) fn sql_for(tables: &Tables) -> String {
    let versions = tables.versions();
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {versions} (version integer PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT clock_timestamp());\n"
    );
    for (i, m) in migrations(tables).iter().enumerate() {
        sql.push_str(m);
        sql.push_str(&format!(
            "INSERT INTO {versions} (version) VALUES ({}) ON CONFLICT DO NOTHING;\n",
            i + 1
        ));
    }
    sql
}

/// The newest migration's version.
fn latest(tables: &Tables) -> i32 {
    migrations(tables).len() as i32
}

/// Applies the migrations not applied yet; a database already at the newest version is only
/// read, so a role without the right to create tables starts fine once they exist.
pub(crate) async fn migrate(
    pool: &PgPool,
    tables: &Tables,
    schema: Option<&str>,
) -> Result<(), String> {
    if applied(pool, tables).await.ok() == Some(latest(tables)) {
        return Ok(());
    }
    let fail = |e: sqlx::Error| explain_create(schema, &e);
    let mut conn = pool.acquire().await.map_err(|e| unreachable(&e))?;
    let mut tx = conn.begin().await.map_err(|e| unreachable(&e))?;
    apply(&mut tx, tables).await.map_err(fail)?;
    tx.commit().await.map_err(fail)
}

/// Applies the migrations not applied yet on `conn`, in its transaction. Scripts go through
/// `Executor::execute`, whose boxed future keeps `connect`'s future `Send`: `raw_sql`'s
/// `async fn` in a loop did not (rust-lang/rust#102211).
async fn apply(conn: &mut PgConnection, tables: &Tables) -> Result<(), sqlx::Error> {
    let versions = tables.versions();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(tables.migration_lock())
        .execute(&mut *conn)
        .await?;
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {versions} (version integer PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    );
    conn.execute(create.as_str()).await?;
    let done: Option<i32> = sqlx::query_scalar(&format!("SELECT max(version) FROM {versions}"))
        .fetch_one(&mut *conn)
        .await?;
    let record = format!("INSERT INTO {versions} (version) VALUES ($1)");
    let pending: Vec<String> = migrations(tables);
    for (i, sql) in pending.iter().enumerate().skip(done.unwrap_or(0) as usize) {
        conn.execute(sql.as_str()).await?;
        sqlx::query(&record)
            .bind(i as i32 + 1)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Checks that the tables are there at the newest version, for a bus told not to create them.
pub(crate) async fn verify(pool: &PgPool, tables: &Tables) -> Result<(), String> {
    let versions = tables.versions();
    match applied(pool, tables).await {
        Ok(v) if v >= latest(tables) => Ok(()),
        Ok(v) => Err(format!(
            "the outbox and inbox tables are at version {v} of {} (`{versions}`): start the bus \
             once with `create_tables(true)`, or apply `eventbus::postgres::schema_sql()`",
            latest(tables)
        )),
        Err(e) => Err(explain("read", &versions, "SELECT", &e)),
    }
}

/// The newest migration applied, 0 for none.
async fn applied(pool: &PgPool, tables: &Tables) -> Result<i32, sqlx::Error> {
    let sql = format!(
        "SELECT coalesce(max(version), 0) FROM {}",
        tables.versions()
    );
    sqlx::query_scalar(&sql).fetch_one(pool).await
}

fn unreachable(e: &sqlx::Error) -> String {
    format!("could not reach PostgreSQL: {}", server_text(e))
}
