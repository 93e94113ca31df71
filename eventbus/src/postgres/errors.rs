//! PostgreSQL's errors, told in terms of what to do about them: which privilege to grant, which
//! table is missing, that the server went away.

/// `42501`: the role lacks a privilege.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// `42P01`: a table is missing.
const UNDEFINED_TABLE: &str = "42P01";
/// `3F000`: a schema is missing.
const UNDEFINED_SCHEMA: &str = "3F000";

/// What went wrong while `doing` something on `table`, and what to grant or run about it.
pub(crate) fn explain(doing: &str, table: &str, privilege: &str, e: &sqlx::Error) -> String {
    let base = format!("could not {doing} `{table}`: {}", server_text(e));
    match code(e).as_deref() {
        Some(INSUFFICIENT_PRIVILEGE) => {
            format!("{base} (grant it: `GRANT {privilege} ON {table} TO <the service's role>`)")
        }
        Some(UNDEFINED_TABLE) | Some(UNDEFINED_SCHEMA) => format!(
            "{base} (the bus creates its tables at start-up unless told not to: start it once \
             with `create_tables(true)` as a role that may create tables, or apply \
             `eventbus::postgres::schema_sql()` by hand)"
        ),
        _ => base,
    }
}

/// What went wrong while creating the tables in `schema` (the connection's when `None`).
pub(crate) fn explain_create(schema: Option<&str>, e: &sqlx::Error) -> String {
    let base = format!(
        "could not create the outbox and inbox tables: {}",
        server_text(e)
    );
    if code(e).as_deref() != Some(INSUFFICIENT_PRIVILEGE) {
        return base;
    }
    format!(
        "{base} (grant it: `GRANT CREATE ON SCHEMA {} TO <the service's role>`, or apply \
         `eventbus::postgres::schema_sql()` as an owner and build with `create_tables(false)`)",
        schema.unwrap_or("public")
    )
}

/// The server's SQLSTATE, for an error the server sent.
pub(crate) fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The server's message with its code, or sqlx's own text for a connection error.
pub(crate) fn server_text(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}
