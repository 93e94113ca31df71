//! The channel and pattern names of incoming messages, one shared `Arc<str>` per name: a
//! message on a known channel costs no allocation for its name. Bounded: past
//! [`MAX_NAMES`] distinct names (a pattern matching ever new channels) the set starts again.

use std::collections::HashSet;
use std::sync::Arc;

/// The most names kept.
const MAX_NAMES: usize = 4096;

/// Names seen so far by one reader.
#[derive(Debug, Default)]
pub(crate) struct Names {
    known: HashSet<Arc<str>>,
}

impl Names {
    /// The shared name for `name`.
    pub(crate) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.known.get(name) {
            return known.clone();
        }
        if self.known.len() >= MAX_NAMES {
            self.known.clear();
        }
        let fresh: Arc<str> = Arc::from(name);
        self.known.insert(fresh.clone());
        fresh
    }

    /// The shared name for `bytes`, read as UTF-8 (invalid sequences replaced).
    pub(crate) fn get_bytes(&mut self, bytes: &[u8]) -> Arc<str> {
        self.get(&String::from_utf8_lossy(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_shared_and_the_set_stays_bounded() {
        let mut names = Names::default();
        let a = names.get("events:a");
        assert!(Arc::ptr_eq(&a, &names.get_bytes(b"events:a")));
        for i in 0..MAX_NAMES + 10 {
            names.get(&format!("events:{i}"));
        }
        assert!(names.known.len() <= MAX_NAMES);
        assert_eq!(&*names.get_bytes(b"events:\xff"), "events:\u{fffd}");
    }
}
