//! Configuration of the node core.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::crypto::ENVELOPE_OVERHEAD;
use crate::node::{DEFAULT_SEED_ANNOUNCE_INTERVAL, FRAME_OVERHEAD};

/// Bytes every datagram needs outside the payload: the kind byte and the AEAD envelope.
pub const DATAGRAM_OVERHEAD: usize = FRAME_OVERHEAD + ENVELOPE_OVERHEAD;

/// Configuration of a [`Node`](crate::Node).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// NetworkDB's intervals and limits. `transport_overhead` must be at least
    /// [`DATAGRAM_OVERHEAD`], so that every sealed datagram fits `packet_size`.
    pub db: networkdb::Config,
    /// SWIM (foca) settings. `max_packet_size` is overwritten with
    /// `packet_size - transport_overhead`. Default: foca's LAN profile for 32 members
    /// (memberlist's `DefaultLANConfig`: probe 1 s, RTT 500 ms, gossip 200 ms to 3).
    pub swim: foca::Config,
    /// While no member is active, announce to the seeds this often. Default 1 s.
    pub seed_announce_interval: Duration,
    /// Exchange the full SWIM membership state with one random member this often, on the
    /// stream path (memberlist's push/pull; SWIM gossip alone can leave a large cluster
    /// missing members for minutes). Default 30 s (memberlist `PushPullInterval`).
    pub membership_sync_interval: Duration,
    /// Send one random member a digest of the members this node sees alive this often; a
    /// member whose digest differs starts the full exchange at once (at most one per
    /// interval), so a member that missed a join or a renewal learns it in seconds instead of
    /// at the next `membership_sync_interval`. Default 2 s (ours).
    pub membership_digest_interval: Duration,
    /// The cluster size `swim` was computed for (foca's `new_lan(32)`: 32). With
    /// `scale_swim`, SWIM's transmissions and suspicion time are recomputed from the live
    /// member count in power-of-two steps above this size.
    pub swim_sized_for: NonZeroU32,
    /// Rescale SWIM's dissemination and suspicion time as the cluster grows and shrinks, as
    /// memberlist does (foca sizes them once). Default true.
    pub scale_swim: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let db = networkdb::Config {
            transport_overhead: DATAGRAM_OVERHEAD,
            ..Default::default()
        };
        Self {
            db,
            swim: foca::Config::new_lan(NonZeroU32::new(32).unwrap_or(NonZeroU32::MIN)),
            seed_announce_interval: DEFAULT_SEED_ANNOUNCE_INTERVAL,
            membership_sync_interval: Duration::from_secs(30),
            membership_digest_interval: Duration::from_secs(2),
            swim_sized_for: NonZeroU32::new(32).unwrap_or(NonZeroU32::MIN),
            scale_swim: true,
        }
    }
}

impl NodeConfig {
    /// A profile for tests and demos on one machine: fast probes and short suspicion, so
    /// failures are detected in about two seconds.
    pub fn fast() -> Self {
        let mut c = Self::default();
        c.swim.probe_period = Duration::from_millis(300);
        c.swim.probe_rtt = Duration::from_millis(100);
        c.swim.suspect_to_down_after = Duration::from_millis(900);
        c.swim.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(2),
            num_members: std::num::NonZeroUsize::MIN,
        });
        c.seed_announce_interval = Duration::from_millis(300);
        c
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        self.db.validate()?;
        if self.db.transport_overhead < DATAGRAM_OVERHEAD {
            return Err(NodeConfigError::TransportOverhead(
                self.db.transport_overhead,
            ));
        }
        if self.swim.probe_rtt >= self.swim.probe_period {
            return Err(NodeConfigError::ProbeRtt);
        }
        if self.seed_announce_interval.is_zero() {
            return Err(NodeConfigError::SeedAnnounceInterval);
        }
        if self.membership_sync_interval.is_zero() {
            return Err(NodeConfigError::MembershipSyncInterval);
        }
        if self.membership_digest_interval.is_zero() {
            return Err(NodeConfigError::MembershipDigestInterval);
        }
        Ok(())
    }
}

/// A configuration value outside its allowed range. Nothing was constructed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeConfigError {
    /// A NetworkDB field.
    #[error(transparent)]
    Db(#[from] networkdb::ConfigError),
    /// `transport_overhead` cannot hold the datagram framing.
    #[error(
        "invalid transport_overhead: {0} (allowed: at least {DATAGRAM_OVERHEAD} bytes, the kind byte and the AEAD envelope)"
    )]
    TransportOverhead(usize),
    /// The SWIM packet size is zero.
    #[error("invalid packet_size: leaves {0} bytes for SWIM")]
    PacketSize(usize),
    /// `swim.probe_rtt` must be less than `swim.probe_period`.
    #[error("invalid swim.probe_rtt: must be less than swim.probe_period")]
    ProbeRtt,
    /// `membership_sync_interval` must be positive.
    #[error("invalid membership_sync_interval: must be greater than 0")]
    MembershipSyncInterval,
    /// `membership_digest_interval` must be positive.
    #[error("invalid membership_digest_interval: must be greater than 0")]
    MembershipDigestInterval,
    /// `seed_announce_interval` must be positive.
    #[error("invalid seed_announce_interval: must be greater than 0")]
    SeedAnnounceInterval,
}
