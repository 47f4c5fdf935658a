//! Telling whether a Redis Cluster can serve every key: its slot map, and
//! the state each slot's master reports.

use super::codec::{bytes_reply, int_reply};
use super::errors::unavailable;
use crate::store::StoreError;
use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

/// Slots in a Redis Cluster.
pub(super) const CLUSTER_SLOTS: u32 = 16384;

/// Whether every slot of the cluster is served by a master that answers and
/// the cluster is up.
///
/// A plain PING fanned out by the crate only reaches the nodes it is still
/// connected to (a dead master drops out silently), a PING routed by slot
/// falls back to any connected node, and a PING is answered even while the
/// cluster refuses keyed commands (`CLUSTERDOWN`). So instead: ask for the
/// slot map (`CLUSTER SLOTS`), insist every slot is assigned, and ask the
/// master of each slot range, by its address (which fails when the crate
/// holds no live connection to it), for `CLUSTER INFO`: it must say
/// `cluster_state:ok`.
pub(super) async fn cluster_ping(mut conn: ClusterConnection) -> Result<(), StoreError> {
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable(&e))?;
    let ranges = slot_ranges(&slots)
        .ok_or_else(|| StoreError::Unavailable("unexpected redis reply".to_owned()))?;
    let covered: u32 = ranges.iter().map(|r| r.count).sum();
    if covered != CLUSTER_SLOTS {
        return Err(StoreError::Unavailable(
            "redis cluster has unserved slots".to_owned(),
        ));
    }
    let mut pinged: Vec<(&str, u16)> = Vec::new();
    for range in &ranges {
        let master = (range.host.as_str(), range.port);
        if pinged.contains(&master) {
            continue;
        }
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: range.host.clone(),
            port: range.port,
        });
        let reply = conn
            .route_command(redis::cmd("CLUSTER").arg("INFO").clone(), routing)
            .await
            .map_err(|e| unavailable(&e))?;
        let info = bytes_reply(reply)?
            .ok_or_else(|| StoreError::Unavailable("unexpected redis reply".to_owned()))?;
        let state_ok = String::from_utf8_lossy(&info)
            .lines()
            .any(|line| line.trim() == "cluster_state:ok");
        if !state_ok {
            return Err(StoreError::Unavailable("redis cluster down".to_owned()));
        }
        pinged.push(master);
    }
    Ok(())
}

/// One entry of `CLUSTER SLOTS`: how many slots, and their master's address.
#[derive(Debug, PartialEq)]
struct SlotRange {
    count: u32,
    host: String,
    port: u16,
}

/// Parses `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn slot_ranges(reply: &Value) -> Option<Vec<SlotRange>> {
    let Value::Array(entries) = reply else {
        return None;
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(fields) = entry else {
                return None;
            };
            let start = u16::try_from(int_reply(fields.first()?)?).ok()?;
            let end = u16::try_from(int_reply(fields.get(1)?)?).ok()?;
            let Value::Array(node) = fields.get(2)? else {
                return None;
            };
            let host = bytes_reply(node.first()?.clone()).ok()??;
            let port = u16::try_from(int_reply(node.get(1)?)?).ok()?;
            Some(SlotRange {
                count: u32::from(end.checked_sub(start)?) + 1,
                host: String::from_utf8(host).ok()?,
                port,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_are_read_per_range() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("10.0.0.2", 7001),
            ]),
        ]);
        let ranges = slot_ranges(&reply).unwrap();
        assert_eq!(
            ranges,
            [
                SlotRange {
                    count: 5461,
                    host: "127.0.0.1".to_owned(),
                    port: 7000
                },
                SlotRange {
                    count: 10923,
                    host: "10.0.0.2".to_owned(),
                    port: 7001
                },
            ]
        );
        assert_eq!(ranges.iter().map(|r| r.count).sum::<u32>(), CLUSTER_SLOTS);
        // Reversed or malformed ranges are refused, not guessed at.
        let reversed = Value::Array(vec![Value::Array(vec![
            Value::Int(10),
            Value::Int(5),
            node("127.0.0.1", 7000),
        ])]);
        assert!(slot_ranges(&reversed).is_none());
        assert!(slot_ranges(&Value::Nil).is_none());
        assert!(slot_ranges(&Value::Array(vec![Value::Int(1)])).is_none());
    }
}
