//! Counters of what the core did and dropped.

/// Cumulative counters; every drop has a reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Payloads received.
    pub payloads_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Stream messages sent.
    pub streams_out: u64,
    /// Bytes sent (datagrams and streams).
    pub bytes_out: u64,
    /// Table events applied (they changed local state).
    pub table_events_applied: u64,
    /// Payloads dropped: empty.
    pub dropped_empty: u64,
    /// Payloads dropped: unknown protocol version.
    pub dropped_version: u64,
    /// Payloads dropped: malformed, truncated or trailing bytes, or a Lamport time no clock
    /// reaches by counting (above 2^62).
    pub dropped_malformed: u64,
    /// Payloads dropped: compounds nested too deep.
    pub dropped_too_deep: u64,
    /// Push/pull or bulk-sync messages received as datagrams (they belong to the stream path).
    pub wrong_channel: u64,
    /// Events ignored because the local state was as new or newer.
    pub stale_events: u64,
    /// Of which gossip parts skipped before decoding: the same bytes were applied or found
    /// stale a moment before.
    pub duplicate_parts: u64,
    /// Of which node and network events (attachments carried by push/pull and bulk syncs
    /// included).
    pub stale_cluster_events: u64,
    /// Table events refused because this node or the owner is not in the network.
    pub not_member: u64,
    /// Of those, from an active owner this node did not know as attached at all (it missed
    /// the owner's join, and it did not arrive within `DEFER_WINDOW`): a sync with the owner
    /// was requested to learn the attachment and the entries (at most once per owner per
    /// `ATTACHMENT_REPAIR_INTERVAL`).
    pub attachment_repairs: u64,
    /// Table events that arrived before their owner's attachment and waited for it.
    pub deferred_events: u64,
    /// Of those, applied when the attachment arrived (the others count as `not_member`).
    pub deferred_applied: u64,
    /// Table events of an owner not yet known as attached, refused because too many already
    /// waited.
    pub deferred_refused: u64,
    /// Networks joined with no peer known, bulk-synced with the first peer learnt to be
    /// attached.
    pub join_syncs_deferred: u64,
    /// Events about this node received from others (ignored).
    pub own_events: u64,
    /// Relays skipped because the relay queue was over `max_relay_queue_on_sync` during a
    /// bulk sync.
    pub relay_skipped_on_sync: u64,
    /// Queued events dropped because a queue reached `max_queue_len`.
    pub queue_overflow: u64,
    /// Table events too large for one datagram, sent on the stream path instead.
    pub oversized_via_stream: u64,
    /// Local backlogs sent on the stream path (see `Config::stream_backlog`).
    pub backlog_flushes: u64,
    /// Table events sent in those backlogs.
    pub backlog_events: u64,
    /// Node or network events too large for any datagram, not queued for gossip (push/pull
    /// and bulk sync carry that state).
    pub oversized_cluster_events: u64,
    /// Datagrams sent by the eager push (each copy counted), before the gossip tick.
    pub eager_datagrams: u64,
    /// Events those datagrams carried (each compound's parts counted once).
    pub eager_events: u64,
    /// Bulk syncs sent (requests and replies).
    pub bulk_syncs_sent: u64,
    /// Digest messages sent (requests and replies; see `Config::digest_sync`).
    pub sync_digests_sent: u64,
    /// Networks a peer's digest request found equal to this node's copy.
    pub sync_networks_equal: u64,
    /// Networks a peer's digest request found different (answered with bucket hashes).
    pub sync_networks_differ: u64,
    /// Attachment summaries sent by the periodic push/pull (see `Config::digest_sync`).
    pub push_pull_digests_sent: u64,
    /// Of those received, how many differed from this node's and started the full exchange.
    pub push_pull_digests_differ: u64,
    /// Partial syncs sent (requests and replies), of the buckets digests disagreed on.
    pub partial_syncs_sent: u64,
    /// Table events those partial syncs carried.
    pub partial_sync_events: u64,
    /// Sync requests answered (bulk, digest and partial).
    pub bulk_syncs_completed: u64,
    /// Sum of the time from each answered request to its reply, in microseconds.
    pub bulk_sync_micros_total: u64,
    /// Bulk-sync requests whose reply did not come within `bulk_sync_timeout`.
    pub bulk_sync_timeouts: u64,
    /// Bulk syncs or replies that could not be sent: unknown node.
    pub bulk_sync_unknown_node: u64,
    /// Deletes received with no residual reap time (an old peer); given the full interval.
    pub zero_reap_time: u64,
}
