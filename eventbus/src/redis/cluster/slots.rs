//! Which node of a Redis Cluster serves a channel: the channel's hash slot (CRC16 of the name,
//! or of its `{hash tag}`, modulo 16384) looked up in the `CLUSTER SLOTS` map of the node that
//! serves it. Used to name the nodes a subscription moves between.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use crate::redis::streams::reply::text;

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The hash slot of `key`: of its hash tag (the text between the first `{` and the next `}`,
/// when not empty), else of the whole key.
pub(crate) fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|b| *b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|b| *b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// Slot ranges and the `host:port` of the primary serving each, by the range's first slot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    ranges: BTreeMap<u16, (u16, String)>,
}

impl SlotMap {
    /// Asks the node serving `key`'s slot for the map (`CLUSTER SLOTS`): that node knows it
    /// serves the slot even before the others learn it.
    pub(crate) async fn read_at(
        conn: &mut ClusterConnection,
        key: &str,
    ) -> redis::RedisResult<SlotMap> {
        let route = Route::with_key(key, SlotAddr::Master);
        let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let reply = conn.route_command(cmd, at).await?;
        Ok(SlotMap::parse(&reply))
    }

    /// Reads a `CLUSTER SLOTS` reply; ranges it cannot read are left out.
    pub(crate) fn parse(reply: &Value) -> SlotMap {
        let mut ranges = BTreeMap::new();
        let Value::Array(entries) = reply else {
            return SlotMap::default();
        };
        for entry in entries {
            let Value::Array(fields) = entry else {
                continue;
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            let (Some(host), Some(port)) = (primary.first().and_then(text), primary.get(1)) else {
                continue;
            };
            let (Ok(start), Ok(end), Some(port)) =
                (u16::try_from(*start), u16::try_from(*end), text(port))
            else {
                continue;
            };
            ranges.insert(start, (end, format!("{host}:{port}")));
        }
        SlotMap { ranges }
    }

    /// The primaries the map names, each once.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::BTreeSet::new();
        self.ranges
            .values()
            .map(|(_, node)| node.as_str())
            .filter(move |node| seen.insert(*node))
    }

    /// The primary serving `slot`, when the map covers it.
    pub(crate) fn owner(&self, slot: u16) -> Option<&str> {
        let (_, (end, node)) = self.ranges.range(..=slot).next_back()?;
        (slot <= *end).then_some(node.as_str())
    }
}

/// The slot maps read in one round of questions, each with the node that answered it: a
/// node's own word that it serves a slot is taken for every key of that slot, so the nodes are
/// asked once each rather than once per key.
#[derive(Default)]
pub(crate) struct Owners {
    maps: Vec<(String, SlotMap)>,
}

impl Owners {
    /// The node serving `slot`, as that node says; asks the node serving `key` (whose slot it
    /// is) when no answer so far settles it.
    pub(crate) async fn owner(
        &mut self,
        conn: &mut ClusterConnection,
        key: &str,
        slot: u16,
        timeout: Duration,
    ) -> Option<String> {
        let settled = self
            .maps
            .iter()
            .find_map(|(from, map)| map.owner(slot).filter(|owner| owner == from));
        if let Some(owner) = settled {
            return Some(owner.to_owned());
        }
        let read = tokio::time::timeout(timeout, SlotMap::read_at(conn, key)).await;
        let Ok(Ok(map)) = read else { return None };
        let owner = map.owner(slot)?.to_owned();
        self.maps.push((owner.clone(), map));
        Some(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_computes() {
        // Figures from `CLUSTER KEYSLOT`.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("somekey"), 11058);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        // An empty tag hashes the whole key.
        let whole = crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % SLOTS;
        assert_eq!(slot_of("foo{}{bar}"), whole);
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_map_names_the_primary_of_each_range() {
        let node = |port: i64| Value::Array(vec![bulk("127.0.0.1"), Value::Int(port), bulk("id")]);
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node(7001)]),
            Value::Array(vec![Value::Int(10923), Value::Int(16383), node(7002)]),
        ]);
        let map = SlotMap::parse(&reply);
        assert_eq!(map.owner(0), Some("127.0.0.1:7000"));
        assert_eq!(map.owner(5461), Some("127.0.0.1:7001"));
        assert_eq!(map.owner(16383), Some("127.0.0.1:7002"));
        let gap = SlotMap::parse(&Value::Array(vec![Value::Array(vec![
            Value::Int(10),
            Value::Int(20),
            node(7000),
        ])]));
        assert_eq!(gap.owner(5), None);
        assert_eq!(gap.owner(21), None);
    }
}
