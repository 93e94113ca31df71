//! The consumer groups of a service's durable handlers: what each is named, that no two
//! handlers of one bus read in one group, and the groups of the service that no handler reads.
//!
//! A group's name never comes from a fn's path: moving a handler to another module, renaming
//! it or the crate, or a compiler that spells `type_name` differently leaves its group as it
//! was, so a deploy neither loses what was published meanwhile nor handles it twice.

use std::collections::BTreeMap;

use crate::error::OrphanedGroup;
use crate::handler::ArgKind;
use crate::runtime::SlotSpec;
use crate::transport::Transport;

/// The consumer group a durable handler reads in (`None` for other handlers): the one
/// [`DurableOptions::group`](crate::DurableOptions::group) names; else
/// `<service>:<name>` for a handler named with
/// [`HandlerOptions::name`](crate::HandlerOptions::name); else `<service>:<event type>`.
pub(super) fn group_name(service: &str, spec: &SlotSpec) -> Option<String> {
    let ArgKind::Envelope { event_type, .. } = spec.kind else {
        return None;
    };
    if !spec.is_durable() {
        return None;
    }
    let durable = &spec.options.durable;
    let named = spec.options.name.as_deref();
    Some(match (&durable.group, named) {
        (Some(group), _) => group.clone(),
        (None, Some(name)) => format!("{service}:{name}"),
        (None, None) => format!("{service}:{event_type}"),
    })
}

/// The inbox scope of a handler that takes a `Tx` (`None` for other handlers): its consumer
/// group when durable, else the name its group would have (`<service>:<name>` or
/// `<service>:<event type>`).
#[cfg(feature = "postgres")]
pub(super) fn inbox_scope(service: &str, spec: &SlotSpec) -> Option<String> {
    if spec.handler.transactions() == 0 {
        return None;
    }
    if let Some(group) = group_name(service, spec) {
        return Some(group);
    }
    let event_type = match spec.kind {
        ArgKind::Envelope { event_type, .. } => event_type,
        ArgKind::Raw => "*",
    };
    Some(match spec.options.name.as_deref() {
        Some(name) => format!("{service}:{name}"),
        None => format!("{service}:{event_type}"),
    })
}

/// One mistake for each inbox scope that two or more handlers taking a `Tx` share: the second
/// would find every event recorded by the first, and skip it.
#[cfg(feature = "postgres")]
pub(super) fn shared_inbox_scopes<'a>(
    service: &str,
    specs: impl IntoIterator<Item = &'a SlotSpec>,
) -> Vec<String> {
    let mut holders: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for spec in specs {
        if let Some(scope) = inbox_scope(service, spec) {
            holders.entry(scope).or_default().push(&spec.name);
        }
    }
    holders
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(scope, names)| shared_scope(&scope, &names))
        .collect()
}

/// The mistake of `names` sharing one inbox `scope`.
#[cfg(feature = "postgres")]
pub(super) fn shared_scope(scope: &str, names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "handlers {} take a Tx and share the inbox scope `{scope}`, so each would skip what \
         the other handled: name each with HandlerOptions::name",
        names.join(" and ")
    )
}

/// One mistake for each group that two or more of the handlers read in: each would get only
/// part of the group's entries.
pub(super) fn shared_groups<'a>(
    service: &str,
    specs: impl IntoIterator<Item = &'a SlotSpec>,
) -> Vec<String> {
    let mut readers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for spec in specs {
        if let Some(group) = group_name(service, spec) {
            readers.entry(group).or_default().push(&spec.name);
        }
    }
    readers
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(group, names)| shared_group(&group, &names))
        .collect()
}

/// The mistake of `names` reading in one `group`.
pub(super) fn shared_group(group: &str, names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "handlers {} read durable events in the same consumer group `{group}`, so each would \
         get only part of them: give each its own group with HandlerOptions::name or \
         DurableOptions::group",
        names.join(" and ")
    )
}

/// The groups of `service` on `streams` that none of `claimed` is and that hold pending or
/// unread entries. A stream whose groups cannot be read is skipped.
pub(super) async fn orphans(
    transport: &dyn Transport,
    service: &str,
    streams: &[(&str, &str)],
) -> Vec<OrphanedGroup> {
    let mut found = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (stream, _) in streams {
        if seen.contains(stream) {
            continue;
        }
        seen.push(stream);
        let Ok(groups) = transport.stream_groups(stream).await else {
            continue;
        };
        let prefix = format!("{service}:");
        found.extend(
            groups
                .into_iter()
                .filter(|g| g.group.starts_with(&prefix))
                .filter(|g| !streams.iter().any(|(s, c)| s == stream && *c == g.group))
                .filter(|g| g.pending > 0 || g.lag != Some(0))
                .map(|g| OrphanedGroup::new(service, g, claimed_on(streams, stream))),
        );
    }
    found
}

/// The group a handler of the service reads on `stream`: where an orphan's work can move.
fn claimed_on(streams: &[(&str, &str)], stream: &str) -> Option<String> {
    streams
        .iter()
        .find(|(s, _)| *s == stream)
        .map(|(_, group)| (*group).to_owned())
}
