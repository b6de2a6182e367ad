//! Every interval and limit of the core, in one validated struct.

use std::time::Duration;

/// The smallest allowed [`Config::packet_size`]: libnetwork's control-plane MTU floor
/// (`minimumNetworkControlPlaneMTU = 500`, PR moby/libnetwork#1892), which leaves at least
/// 400 bytes of payload.
pub const MIN_PACKET_SIZE: usize = 500;

/// The largest UDP payload over IPv4.
pub const MAX_PACKET_SIZE: usize = 65_507;

/// The most bytes a transport may reserve per datagram for framing and encryption, so that
/// at least 400 bytes of payload remain at the packet-size floor.
pub const MAX_TRANSPORT_OVERHEAD: usize = 100;

/// The longest allowed interval: far beyond any sensible setting, and small enough that
/// `Instant + interval` (and `reap_entry_interval + 5 * reap_period`) cannot overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Intervals and limits of a [`NetworkDb`](crate::NetworkDb).
///
/// Defaults are libnetwork's (each field cites its origin). Every constructor calls
/// [`validate`](Self::validate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Upper bound in bytes of every datagram the node sends, transport overhead included.
    /// Default 1400 (libnetwork `PacketBufferSize`); at least [`MIN_PACKET_SIZE`].
    pub packet_size: usize,
    /// Bytes of each datagram the transport needs for framing and encryption; the core fills
    /// `packet_size - transport_overhead` with messages. Default 0; at most
    /// [`MAX_TRANSPORT_OVERHEAD`].
    pub transport_overhead: usize,
    /// Period of the gossip tick. Default 200 ms (memberlist `GossipInterval`).
    pub gossip_interval: Duration,
    /// Peers each gossip tick sends to, per network and for cluster events. Default 3
    /// (memberlist `GossipNodes`); 1..=64.
    pub gossip_fanout: usize,
    /// Retransmit multiplier of table events: a queued event is sent `mult * ceil(log10(n +
    /// 1))` times in all, every copy counted, `n` the network's participants. Default 6 (ours:
    /// libnetwork uses 4 but counts a compound sent to `gossip_fanout` peers once, so each
    /// node sent each event 12 times to 3 peers in a network of 100; here it is 18 copies,
    /// half the traffic, with more spread under 30 % loss); 1..=64.
    pub retransmit_mult: u32,
    /// Retransmit multiplier of node and network events (the cluster queue): such an event is
    /// sent `mult * ceil(log10(n + 1))` times (at least `retransmit_mult` times) by every node
    /// that learns it. Default 2 (ours;
    /// memberlist's 4): every node receives each event about that many times, and the digest
    /// rounds (attachments of every joined network, every 2 s), the wait of a table event for
    /// its owner's join and push/pull repair the few nodes a shorter epidemic misses; 1..=64.
    pub cluster_retransmit_mult: u32,
    /// Period of the anti-entropy bulk sync. Default 30 s (memberlist `PushPullInterval`).
    pub bulk_sync_interval: Duration,
    /// How long a bulk-sync request waits for its reply. Default 30 s (libnetwork).
    pub bulk_sync_timeout: Duration,
    /// Period of the cluster-wide attachment exchange (push/pull). Default 30 s (memberlist
    /// `PushPullInterval`).
    pub push_pull_interval: Duration,
    /// How long a tombstone (and an entry hidden because its owner failed) lives. Default
    /// 30 min (libnetwork `reapEntryInterval`).
    pub reap_entry_interval: Duration,
    /// Period of the reaper. Default 5 s (libnetwork `reapPeriod`); less than
    /// `reap_entry_interval`.
    pub reap_period: Duration,
    /// Period at which a failed node is offered for reconnection. Default 1 s (libnetwork
    /// `retryInterval`).
    pub reconnect_interval: Duration,
    /// How long a failed or left node is remembered. Default 24 h (libnetwork
    /// `nodeReapInterval`).
    pub node_reap_interval: Duration,
    /// Period of the check that at least one bootstrap node is reachable. Default 60 s
    /// (libnetwork `rejoinInterval`).
    pub rejoin_interval: Duration,
    /// A relayed event learnt by bulk sync is not queued while the relay queue holds more than
    /// this. Default 500 (libnetwork `maxQueueLenBroadcastOnSync`).
    pub max_relay_queue_on_sync: usize,
    /// When a network's queue of local events holds more than one datagram can carry, send
    /// the whole backlog at once on the stream path to every peer of the network instead of
    /// trickling it out one datagram per tick (ours: upstream spreads about 7 table events per
    /// network per tick, so a burst of thousands takes tens of seconds). Default true.
    pub stream_backlog: bool,
    /// Most rounds of node and network events sent per gossip tick while they are queued;
    /// a round sends its own compound to each of `gossip_fanout` random peers, every copy
    /// counting as one transmission (memberlist's per-peer broadcasts). Default 4 (ours;
    /// memberlist piggybacks one packet's worth); 1..=64.
    pub cluster_datagrams_per_tick: usize,
    /// Send fresh events without waiting for the gossip tick: an event this node writes or
    /// learns first goes out (its first transmission) `eager_push_delay` after it is queued,
    /// so a change reaches other nodes in about a network round trip instead of up to one
    /// `gossip_interval`. Later transmissions, relaying and anti-entropy are unchanged.
    /// Default true (ours; upstream always waits for the tick).
    pub eager_push: bool,
    /// The coalescing window of [`eager_push`](Self::eager_push): events queued within it leave
    /// together, so a burst still fills datagrams. Default 2 ms (ours); at most
    /// `gossip_interval`; zero sends at the next call of `handle_timeout`.
    pub eager_push_delay: Duration,
    /// The periodic anti-entropy exchanges digests first and sends only the buckets of keys
    /// that differ (`docs/PROTOCOL.md`), instead of every entry both ways. Join syncs, the
    /// sync with a returning node and attachment repairs stay full. Default true (ours;
    /// upstream sends full copies every `bulk_sync_interval`).
    pub digest_sync: bool,
    /// Period of the periodic sync when [`digest_sync`](Self::digest_sync) is on (a round costs
    /// two small messages when nothing differs, so it runs far more often than a full sync
    /// could: a missed event is repaired in seconds). Default 2 s (ours).
    pub digest_sync_interval: Duration,
    /// How many random peers of a network a join bulk-syncs with. Default 3 (ours; upstream
    /// syncs with every peer, so joining a network of a thousand nodes pulls a thousand full
    /// copies); at least 1. Gossip and the periodic sync fill in whatever they missed.
    pub join_sync_peers: usize,
    /// Bound of every broadcast queue; on overflow the most-sent item is dropped and counted
    /// (anti-entropy repairs it). Default 65,536 (our limit; libnetwork has none); at least 16.
    pub max_queue_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            packet_size: 1400,
            transport_overhead: 0,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            retransmit_mult: 6,
            cluster_retransmit_mult: 2,
            bulk_sync_interval: Duration::from_secs(30),
            bulk_sync_timeout: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            reap_entry_interval: Duration::from_secs(30 * 60),
            reap_period: Duration::from_secs(5),
            reconnect_interval: Duration::from_secs(1),
            node_reap_interval: Duration::from_secs(24 * 3600),
            rejoin_interval: Duration::from_secs(60),
            max_relay_queue_on_sync: 500,
            stream_backlog: true,
            cluster_datagrams_per_tick: 4,
            eager_push: true,
            eager_push_delay: Duration::from_millis(2),
            digest_sync: true,
            digest_sync_interval: Duration::from_secs(2),
            join_sync_peers: 3,
            max_queue_len: 65_536,
        }
    }
}

impl Config {
    /// How long a leaving attachment lives: `reap_entry_interval + 5 * reap_period`
    /// (libnetwork `reapNetworkInterval`, 30 min 25 s by default; it must outlive tombstones).
    pub fn reap_network_interval(&self) -> Duration {
        self.reap_entry_interval + 5 * self.reap_period
    }

    /// Bytes of messages one datagram carries: `packet_size - transport_overhead`.
    pub fn payload_budget(&self) -> usize {
        self.packet_size.saturating_sub(self.transport_overhead)
    }

    /// Checks every field and the rules between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "packet_size",
            self.packet_size,
            MIN_PACKET_SIZE,
            MAX_PACKET_SIZE,
            "bytes",
        )?;
        range(
            "transport_overhead",
            self.transport_overhead,
            0,
            MAX_TRANSPORT_OVERHEAD,
            "bytes",
        )?;
        range("gossip_fanout", self.gossip_fanout, 1, 64, "peers")?;
        range(
            "cluster_datagrams_per_tick",
            self.cluster_datagrams_per_tick,
            1,
            64,
            "",
        )?;
        range("retransmit_mult", self.retransmit_mult as usize, 1, 64, "")?;
        range(
            "cluster_retransmit_mult",
            self.cluster_retransmit_mult as usize,
            1,
            64,
            "",
        )?;
        range(
            "max_relay_queue_on_sync",
            self.max_relay_queue_on_sync,
            1,
            usize::MAX,
            "",
        )?;
        range("max_queue_len", self.max_queue_len, 16, usize::MAX, "")?;
        range(
            "join_sync_peers",
            self.join_sync_peers,
            1,
            usize::MAX,
            "peers",
        )?;
        for (field, value) in [
            ("gossip_interval", self.gossip_interval),
            ("bulk_sync_interval", self.bulk_sync_interval),
            ("digest_sync_interval", self.digest_sync_interval),
            ("bulk_sync_timeout", self.bulk_sync_timeout),
            ("push_pull_interval", self.push_pull_interval),
            ("reap_period", self.reap_period),
            ("reconnect_interval", self.reconnect_interval),
            ("node_reap_interval", self.node_reap_interval),
            ("rejoin_interval", self.rejoin_interval),
            ("reap_entry_interval", self.reap_entry_interval),
        ] {
            if value > MAX_INTERVAL {
                return Err(ConfigError::OutOfRange {
                    field,
                    allowed: format!("at most {MAX_INTERVAL:?}"),
                    value: format!("{value:?}"),
                });
            }
            if value.is_zero() {
                return Err(ConfigError::OutOfRange {
                    field,
                    allowed: "greater than 0".into(),
                    value: format!("{value:?}"),
                });
            }
        }
        if self.eager_push_delay > self.gossip_interval {
            return Err(ConfigError::OutOfRange {
                field: "eager_push_delay",
                allowed: format!("0..={:?} (gossip_interval)", self.gossip_interval),
                value: format!("{:?}", self.eager_push_delay),
            });
        }
        if self.reap_entry_interval <= self.reap_period {
            return Err(ConfigError::OutOfRange {
                field: "reap_entry_interval",
                allowed: format!("greater than reap_period ({:?})", self.reap_period),
                value: format!("{:?}", self.reap_entry_interval),
            });
        }
        Ok(())
    }
}

fn range(
    field: &'static str,
    value: usize,
    min: usize,
    max: usize,
    unit: &str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    let allowed = if max == usize::MAX {
        format!("at least {min}{unit}")
    } else {
        format!("{min}..={max}{unit}")
    };
    Err(ConfigError::OutOfRange {
        field,
        allowed,
        value: value.to_string(),
    })
}

/// A configuration value outside its allowed range. Nothing was constructed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `field` is outside `allowed`.
    #[error("invalid {field}: {value} (allowed: {allowed})")]
    OutOfRange {
        /// The field's name as written in the configuration.
        field: &'static str,
        /// The allowed range, in words.
        allowed: String,
        /// The value given.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(
            Config::default().reap_network_interval(),
            Duration::from_secs(30 * 60 + 25)
        );
    }

    #[test]
    fn packet_size_floor_names_field_and_floor() {
        let cfg = Config {
            packet_size: 499,
            ..Config::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("packet_size"), "{err}");
        assert!(err.contains("500"), "{err}");
        assert_eq!(
            Config {
                packet_size: 500,
                ..Config::default()
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn eager_push_delay_is_bounded_by_the_tick() {
        let cfg = Config {
            eager_push_delay: Duration::from_millis(201),
            ..Config::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("eager_push_delay"), "{err}");
        assert!(err.contains("200ms"), "{err}");
        let zero = Config {
            eager_push_delay: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(zero.validate(), Ok(()));
    }

    #[test]
    fn zero_intervals_refused() {
        let cfg = Config {
            gossip_interval: Duration::ZERO,
            ..Config::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("gossip_interval")
        );
    }
}
