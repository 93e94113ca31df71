//! What the outbox and the inbox share: the pool, where their tables are, and whether the bus
//! creates them.

use sqlx::PgPool;

use super::schema;
use super::tables::{DEFAULT_PREFIX, Tables};

/// The pool and the tables' place.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) pool: PgPool,
    pub(crate) schema: Option<String>,
    pub(crate) prefix: String,
    pub(crate) create_tables: bool,
}

impl Settings {
    pub(crate) fn new(pool: PgPool) -> Self {
        Settings {
            pool,
            schema: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            create_tables: true,
        }
    }

    /// The tables, or what is wrong with their names.
    pub(crate) fn tables(&self) -> Result<Tables, String> {
        Tables::new(self.schema.as_deref(), &self.prefix)
    }

    /// The tables, created or brought up to date (or checked, when the bus may not create
    /// them).
    pub(crate) async fn prepare(&self) -> Result<Tables, String> {
        let tables = self.tables()?;
        if self.create_tables {
            schema::migrate(&self.pool, &tables, self.schema.as_deref()).await?;
        } else {
            schema::verify(&self.pool, &tables).await?;
        }
        Ok(tables)
    }
}

/// The setters the outbox and the inbox share, on a type that holds [`Settings`].
macro_rules! table_setters {
    () => {
        /// Puts the tables in this PostgreSQL schema rather than the connection's
        /// `search_path` (the schema must exist). A plain lower-case identifier.
        #[must_use]
        pub fn schema(mut self, name: impl Into<String>) -> Self {
            self.settings.schema = Some(name.into());
            self
        }

        /// The prefix of the tables' names, `eventbus_` by default (`eventbus_outbox`,
        /// `eventbus_inbox`, ...). A plain lower-case identifier; two buses share an outbox or
        /// inbox when they share the prefix and schema.
        #[must_use]
        pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
            self.settings.prefix = prefix.into();
            self
        }

        /// Whether the bus creates and migrates its tables at start-up (the default), or only
        /// checks they are there, for a role that may not create tables: then apply
        /// [`schema_sql`](crate::postgres::schema_sql) as an owner first.
        #[must_use]
        pub fn create_tables(mut self, create: bool) -> Self {
            self.settings.create_tables = create;
            self
        }
    };
}
pub(crate) use table_setters;
