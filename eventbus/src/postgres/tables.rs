//! Where the outbox and inbox live: the table names under a prefix (and a schema), checked to
//! be plain identifiers so they can be written into SQL as they are.

/// The tables, the notification channel and the relay's lock of one outbox and inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tables {
    /// `schema.` or empty.
    qualifier: String,
    prefix: String,
}

/// The prefix of every table when none is given.
pub(crate) const DEFAULT_PREFIX: &str = "eventbus_";

/// The first key of the relay's advisory lock (`ev` `rl`), the second being the outbox's oid.
pub(crate) const RELAY_LOCK_CLASS: i32 = 0x6576_726c;

/// The longest channel PostgreSQL's `NOTIFY` takes, and identifier it keeps whole.
const MAX_IDENTIFIER: usize = 63;

/// The longest prefix or schema name: PostgreSQL cuts identifiers at 63 bytes, and the longest
/// suffix is 22.
const MAX_NAME: usize = 40;

impl Default for Tables {
    fn default() -> Self {
        Tables {
            qualifier: String::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Tables {
    /// The tables under `prefix`, in `schema` when given; an error says what is wrong with a
    /// name.
    pub(crate) fn new(schema: Option<&str>, prefix: &str) -> Result<Self, String> {
        check("table prefix", prefix)?;
        let qualifier = match schema {
            Some(s) => {
                check("schema", s)?;
                format!("{s}.")
            }
            None => String::new(),
        };
        let channel = qualifier.len() + prefix.len() + "outbox".len();
        if channel > MAX_IDENTIFIER {
            return Err(format!(
                "the schema and table prefix together are too long: the outbox's notification \
                 channel `{}{prefix}outbox` would be {channel} bytes, over PostgreSQL's \
                 {MAX_IDENTIFIER}",
                qualifier.replace('.', "_")
            ));
        }
        Ok(Tables {
            qualifier,
            prefix: prefix.to_owned(),
        })
    }

    fn table(&self, name: &str) -> String {
        format!("{}{}{name}", self.qualifier, self.prefix)
    }

    /// Rows waiting to be relayed.
    pub(crate) fn outbox(&self) -> String {
        self.table("outbox")
    }

    /// Rows Redis refused, moved aside.
    pub(crate) fn poison(&self) -> String {
        self.table("outbox_poison")
    }

    /// What each consumer group handled.
    pub(crate) fn inbox(&self) -> String {
        self.table("inbox")
    }

    /// Which migrations ran.
    pub(crate) fn versions(&self) -> String {
        self.table("schema_version")
    }

    /// The trigger function that wakes the relay (a name in the tables' schema).
    pub(crate) fn notify_function(&self) -> String {
        self.table("outbox_notify")
    }

    /// The prefix of index and trigger names, which take no schema.
    pub(crate) fn index_prefix(&self) -> &str {
        &self.prefix
    }

    /// The `LISTEN` channel the relay wakes on.
    pub(crate) fn channel(&self) -> String {
        format!("{}{}outbox", self.qualifier.replace('.', "_"), self.prefix)
    }

    /// The advisory lock one relay per outbox holds, as SQL: the two-key form, the relay's
    /// constant and the outbox table's object id, so that the same table reached through
    /// different names (a schema given or found on the search path) has one lock, and two
    /// tables of one name in two schemas have two.
    pub(crate) fn relay_lock_sql(&self) -> String {
        format!(
            "{RELAY_LOCK_CLASS}, '{}'::regclass::oid::int",
            self.outbox()
        )
    }

    /// The advisory lock key migrations take, so that services starting together migrate once:
    /// a fixed hash (FNV-1a) of the tables' names (they may not exist yet).
    pub(crate) fn migration_lock(&self) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in format!("eventbus migrate {}", self.outbox()).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash as i64
    }
}

/// A name that can be written into SQL as it is: lower-case letters, digits and `_`, not
/// starting with a digit, at most 40 bytes.
fn check(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        return Ok(());
    }
    Err(format!(
        "the {what} `{name}` is not a plain PostgreSQL identifier: use 1 to {MAX_NAME} lower-case \
         letters, digits and `_`, not starting with a digit"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_schema() {
        let t = Tables::new(Some("billing"), "bus_").unwrap();
        assert_eq!(t.outbox(), "billing.bus_outbox");
        assert_eq!(t.inbox(), "billing.bus_inbox");
        assert_eq!(t.channel(), "billing_bus_outbox");
        assert_eq!(Tables::default().outbox(), "eventbus_outbox");
    }

    #[test]
    fn lock_keys_differ_per_outbox_and_stay_put() {
        let a = Tables::default();
        let b = Tables::new(None, "other_").unwrap();
        assert_ne!(a.migration_lock(), b.migration_lock());
        assert_eq!(a.migration_lock(), Tables::default().migration_lock());
        assert!(
            a.relay_lock_sql()
                .ends_with("'eventbus_outbox'::regclass::oid::int")
        );
    }

    #[test]
    fn a_channel_name_over_63_bytes_is_refused() {
        let long = "s".repeat(40);
        let e = Tables::new(Some(&long), &"p".repeat(20)).unwrap_err();
        assert!(e.contains("over PostgreSQL's 63"), "{e}");
        assert!(Tables::new(Some(&long), "p_").is_ok());
    }

    #[test]
    fn names_that_are_not_identifiers_are_refused() {
        for bad in ["", "Bus_", "1bus", "bus-x", "bus;drop", &"x".repeat(41)] {
            let e = Tables::new(None, bad).unwrap_err();
            assert!(e.contains("table prefix"), "{e}");
        }
        let e = Tables::new(Some("a.b"), "bus_").unwrap_err();
        assert!(e.contains("schema `a.b`"), "{e}");
    }
}
