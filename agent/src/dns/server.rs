//! The embedded DNS server of a container sandbox (libnetwork `resolver.go`).
//!
//! One server runs per sandbox on a UDP socket and a TCP listener the caller binds (inside the
//! container's network namespace at 127.0.0.11:53 in production; anywhere in tests). It answers
//! A, AAAA, PTR and MX for the names the sandbox's networks know ([`Names`]) and forwards
//! everything else, over the client's protocol, to at most three upstream servers. Upstream
//! sockets are opened in the caller's network namespace.
//!
//! The protocol work (framing, decoding, EDNS, truncation to the client's UDP payload size with
//! TC set) is hickory's; this module decides the answers.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use discovery::{Family, Lookup};
use hickory_proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::MAX_UPSTREAMS;

/// A TCP client connection is closed after this long without a complete query.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Over-the-limit forwards are logged at most this often.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(2);

/// Responses queued per TCP client connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// What a sandbox's names resolve to (implemented by the agent's directory).
pub trait Names: Send + Sync + 'static {
    /// The addresses of `name` (any case, with or without a trailing dot) with `family`.
    fn resolve(&self, name: &str, family: Family) -> Lookup;
    /// The PTR target for `ip`: `name.network`, without a trailing dot.
    fn reverse(&self, ip: IpAddr) -> Option<String>;
}

/// How a server answers and forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// TTL of the local answers (libnetwork `respTTL`, 600 s).
    pub ttl: u32,
    /// Upstream servers, tried in order; only the first [`MAX_UPSTREAMS`] are used. With none,
    /// queries that would be forwarded get SERVFAIL (libnetwork sends no reply; SERVFAIL lets
    /// the client fail fast instead of waiting for its timeout).
    pub upstreams: Vec<SocketAddr>,
    /// Timeout of each I/O with an upstream (connect, send, receive; libnetwork `extIOTimeout`).
    pub forward_timeout: Duration,
    /// Forwards in flight at once (libnetwork `maxConcurrent`); over it, SERVFAIL.
    pub max_concurrent_forwards: usize,
    /// The container's `resolv.conf` sets `ndots` (see
    /// [`ResolvConf::ndots_set`](super::resolv_conf::ResolvConf::ndots_set)): unknown A/AAAA
    /// names without a dot get an empty NOERROR instead of being forwarded.
    pub ndots_set: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            ttl: super::DEFAULT_TTL,
            upstreams: Vec::new(),
            forward_timeout: Duration::from_secs(4),
            max_concurrent_forwards: 1024,
            ndots_set: false,
        }
    }
}

/// A snapshot of a server's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Requests decoded and handled (malformed ones are answered FORMERR by hickory and not
    /// counted).
    pub queries: u64,
    /// Answered with records from [`Names`] (A, AAAA, PTR).
    pub answered_local: u64,
    /// Answered NOERROR with no records: a name known without the asked family, MX for a known
    /// name, or a dotless unknown name with `ndots` set.
    pub nodata: u64,
    /// Local answers sent truncated (TC set) because they did not fit the UDP payload size.
    pub truncated: u64,
    /// Queries forwarded upstream whose reply was relayed to the client.
    pub forwarded: u64,
    /// Queries forwarded upstream that got no usable reply: nothing is sent, the client times
    /// out.
    pub forward_failures: u64,
    /// Queries refused with SERVFAIL because `max_concurrent_forwards` were in flight.
    pub forward_limited: u64,
    /// Queries answered SERVFAIL because no upstream is configured.
    pub no_upstream: u64,
    /// Queries without a question, answered FORMERR.
    pub malformed: u64,
    /// Responses that could not be sent to the client.
    pub send_errors: u64,
}

impl std::ops::AddAssign for DnsStats {
    /// Sums the counters (of several servers).
    fn add_assign(&mut self, o: Self) {
        self.queries += o.queries;
        self.answered_local += o.answered_local;
        self.nodata += o.nodata;
        self.truncated += o.truncated;
        self.forwarded += o.forwarded;
        self.forward_failures += o.forward_failures;
        self.forward_limited += o.forward_limited;
        self.no_upstream += o.no_upstream;
        self.malformed += o.malformed;
        self.send_errors += o.send_errors;
    }
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    answered_local: AtomicU64,
    nodata: AtomicU64,
    truncated: AtomicU64,
    forwarded: AtomicU64,
    forward_failures: AtomicU64,
    forward_limited: AtomicU64,
    no_upstream: AtomicU64,
    malformed: AtomicU64,
    send_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DnsStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsStats {
            queries: get(&self.queries),
            answered_local: get(&self.answered_local),
            nodata: get(&self.nodata),
            truncated: get(&self.truncated),
            forwarded: get(&self.forwarded),
            forward_failures: get(&self.forward_failures),
            forward_limited: get(&self.forward_limited),
            no_upstream: get(&self.no_upstream),
            malformed: get(&self.malformed),
            send_errors: get(&self.send_errors),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A running embedded DNS server. Dropping it stops it (its tasks are aborted).
pub struct DnsServer {
    server: Server<Handler>,
    counters: Arc<Counters>,
}

impl DnsServer {
    /// Starts serving `udp` and `tcp` (both already bound) on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(
        udp: UdpSocket,
        tcp: TcpListener,
        names: Arc<dyn Names>,
        mut config: DnsConfig,
    ) -> Self {
        config.upstreams.truncate(MAX_UPSTREAMS);
        let counters = Arc::new(Counters::default());
        let handler = Handler {
            names,
            forwards: Semaphore::new(config.max_concurrent_forwards),
            config,
            counters: counters.clone(),
            // The seed only varies the answer order between servers: without the OS's
            // randomness, a fixed one does as well.
            rng_seed: crate::os_random::seed().unwrap_or(0x5eed),
            rng_counter: AtomicU64::new(0),
            epoch: Instant::now(),
            last_limit_log: AtomicU64::new(0),
        };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Self { server, counters }
    }

    /// The server's counters.
    pub fn stats(&self) -> DnsStats {
        self.counters.snapshot()
    }

    /// Stops accepting queries and waits for the socket tasks to end; queries in flight
    /// (forwards included) are abandoned.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            warn!(%error, "dns server ended with an error");
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Dropping `Server` drops its JoinSet, which aborts the socket tasks (and with them the
        // per-query tasks); cancelling first makes them stop even if one is mid-poll elsewhere.
        self.server.shutdown_token().cancel();
    }
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Why an exchange with one upstream gave nothing usable.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("query of {0} bytes cannot be framed for TCP")]
    TooLarge(usize),
    #[error("undecodable reply: {0}")]
    Decode(String),
}

/// What a local lookup decided.
enum Local {
    /// Send these records (possibly none: NOERROR/NODATA).
    Answer(Vec<Record>),
    /// Not ours: forward.
    Forward,
}

struct Handler {
    names: Arc<dyn Names>,
    config: DnsConfig,
    forwards: Semaphore,
    counters: Arc<Counters>,
    rng_seed: u64,
    rng_counter: AtomicU64,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last over-the-limit log, plus one (0: never).
    last_limit_log: AtomicU64,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.handle(request, response_handle).await
    }
}

impl Handler {
    async fn handle<R: ResponseHandler>(&self, request: &Request, response: R) -> ResponseInfo {
        bump(&self.counters.queries);
        let queries = request.queries.queries();
        if queries.is_empty() {
            bump(&self.counters.malformed);
            debug!(src = %request.src(), "dns: query without a question: FORMERR");
            return self
                .reply_error(request, response, ResponseCode::FormErr)
                .await;
        }
        if request.metadata.op_code != OpCode::Query || queries.len() != 1 {
            return self.forward(request, response).await;
        }
        let query = &queries[0];
        match self.lookup(query) {
            Local::Forward => self.forward(request, response).await,
            Local::Answer(records) => {
                if records.is_empty() {
                    bump(&self.counters.nodata);
                } else {
                    bump(&self.counters.answered_local);
                }
                debug!(
                    name = %query.name(), qtype = %query.query_type(), answers = records.len(),
                    "dns: answered locally"
                );
                self.reply_local(request, response, &records).await
            }
        }
    }

    /// The local answer to `query`, if it is one of ours.
    fn lookup(&self, query: &LowerQuery) -> Local {
        if query.query_class() != DNSClass::IN {
            return Local::Forward;
        }
        let owner = query.original().name();
        let name = query.name().to_string();
        let name = name.strip_suffix('.').unwrap_or(&name);
        match query.query_type() {
            RecordType::A => self.lookup_ip(owner, name, Family::V4),
            RecordType::AAAA => self.lookup_ip(owner, name, Family::V6),
            RecordType::PTR => self.lookup_ptr(owner),
            RecordType::MX => {
                let known = |f| !matches!(self.names.resolve(name, f), Lookup::NotFound);
                if known(Family::V4) || known(Family::V6) {
                    Local::Answer(Vec::new())
                } else {
                    Local::Forward
                }
            }
            _ => Local::Forward,
        }
    }

    fn lookup_ip(&self, owner: &Name, name: &str, family: Family) -> Local {
        match self.names.resolve(name, family) {
            Lookup::Addrs(mut addrs) => {
                let n = self.rng_counter.fetch_add(1, Ordering::Relaxed);
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.rng_seed.wrapping_add(n));
                addrs.shuffle(&mut rng);
                let records = addrs
                    .into_iter()
                    .filter_map(|ip| {
                        let data = match (ip, family) {
                            (IpAddr::V4(v4), Family::V4) => RData::A(A(v4)),
                            (IpAddr::V6(v6), Family::V6) => RData::AAAA(AAAA(v6)),
                            _ => return None,
                        };
                        Some(Record::from_rdata(owner.clone(), self.config.ttl, data))
                    })
                    .collect();
                Local::Answer(records)
            }
            Lookup::NoData => Local::Answer(Vec::new()),
            Lookup::NotFound if self.config.ndots_set && !name.contains('.') => {
                Local::Answer(Vec::new())
            }
            Lookup::NotFound => Local::Forward,
        }
    }

    fn lookup_ptr(&self, owner: &Name) -> Local {
        let Ok(net) = owner.parse_arpa_name() else {
            return Local::Forward;
        };
        if net.prefix_len() != net.max_prefix_len() {
            return Local::Forward;
        }
        let Some(target) = self.names.reverse(net.addr()) else {
            return Local::Forward;
        };
        match Name::from_ascii(format!("{target}.")) {
            Ok(target) => Local::Answer(vec![Record::from_rdata(
                owner.clone(),
                self.config.ttl,
                RData::PTR(PTR(target)),
            )]),
            Err(error) => {
                debug!(%target, %error, "dns: PTR target is not a valid name; forwarding");
                Local::Forward
            }
        }
    }

    /// The EDNS to answer with when the client sent one: our payload size is the client's
    /// (hickory limits a UDP answer to the response's EDNS payload size, or 512 without).
    fn response_edns(request: &Request) -> Option<Edns> {
        request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(request.max_payload());
            edns
        })
    }

    async fn reply_local<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        records: &[Record],
    ) -> ResponseInfo {
        let edns = Self::response_edns(request);
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let message = builder.build(metadata, records, [], [], []);
        match response.send_response(message).await {
            Ok(info) => {
                if info.truncation {
                    bump(&self.counters.truncated);
                }
                info
            }
            Err(error) => self.send_failed(request, error),
        }
    }

    async fn reply_error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        code: ResponseCode,
    ) -> ResponseInfo {
        let edns = Self::response_edns(request);
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut message = builder.error_msg(&request.metadata, code);
        message.metadata_mut().recursion_available = true;
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => self.send_failed(request, error),
        }
    }

    fn send_failed(&self, request: &Request, error: impl std::fmt::Display) -> ResponseInfo {
        bump(&self.counters.send_errors);
        debug!(src = %request.src(), %error, "dns: cannot send the response");
        no_response(request)
    }

    async fn forward<R: ResponseHandler>(&self, request: &Request, response: R) -> ResponseInfo {
        let name = request
            .queries
            .queries()
            .first()
            .map(|q| format!("{}:{}", q.name(), q.query_type()))
            .unwrap_or_default();
        if self.config.upstreams.is_empty() {
            bump(&self.counters.no_upstream);
            debug!(%name, "dns: not found and no upstream: SERVFAIL");
            return self
                .reply_error(request, response, ResponseCode::ServFail)
                .await;
        }
        let Ok(_permit) = self.forwards.try_acquire() else {
            bump(&self.counters.forward_limited);
            self.log_limited();
            return self
                .reply_error(request, response, ResponseCode::ServFail)
                .await;
        };
        let tcp = request.protocol() == Protocol::Tcp;
        let mut last = None;
        for upstream in &self.config.upstreams {
            let reply = match self.exchange(*upstream, request, tcp).await {
                Ok(reply) => reply,
                Err(error) => {
                    debug!(%name, %upstream, %error, "dns: upstream failed");
                    last = None;
                    continue;
                }
            };
            let code = reply.metadata.response_code;
            let next = match code {
                ResponseCode::NoError => false,
                ResponseCode::NXDomain => !reply.metadata.authoritative,
                _ => true,
            };
            if next {
                debug!(%name, %upstream, %code, aa = reply.metadata.authoritative,
                    "dns: upstream error reply, trying the next");
                last = Some(reply);
                continue;
            }
            debug!(%name, %upstream, %code, "dns: forwarded");
            return self.relay(request, response, reply).await;
        }
        match last {
            Some(reply) => {
                debug!(%name, code = %reply.metadata.response_code, "dns: relaying the last error reply");
                self.relay(request, response, reply).await
            }
            None => {
                bump(&self.counters.forward_failures);
                debug!(%name, "dns: no upstream answered; no reply");
                no_response(request)
            }
        }
    }

    fn log_limited(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_limit_log.load(Ordering::Relaxed);
        let interval = u64::try_from(LIMIT_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last - 1) >= interval)
            && self
                .last_limit_log
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                limit = self.config.max_concurrent_forwards,
                refused = self.counters.forward_limited.load(Ordering::Relaxed),
                "dns: too many concurrent forwards; answering SERVFAIL"
            );
        }
    }

    /// Relays an upstream reply to the client, under the client's message ID.
    async fn relay<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        reply: Message,
    ) -> ResponseInfo {
        bump(&self.counters.forwarded);
        let Message {
            mut metadata,
            answers,
            authorities,
            additionals,
            edns,
            ..
        } = reply;
        metadata.id = request.metadata.id;
        // The encoder limits a UDP reply to the EDNS payload size of the response: use the
        // client's, so a reply that fitted upstream fits the client too. A client that sent no
        // OPT gets none; one that did gets one even when the upstream sent none (else the
        // reply would be cut at 512 bytes).
        let edns = match (edns, &request.edns) {
            (_, None) => None,
            (Some(mut e), Some(_)) => {
                e.set_max_payload(request.max_payload());
                Some(e)
            }
            (None, Some(_)) => Self::response_edns(request),
        };
        // The question is the client's (the upstream echoes it).
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let message = builder.build(metadata, &answers, &authorities, [], &additionals);
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => self.send_failed(request, error),
        }
    }

    /// One exchange with one upstream, over the client's protocol.
    async fn exchange(
        &self,
        upstream: SocketAddr,
        request: &Request,
        tcp: bool,
    ) -> Result<Message, ForwardError> {
        let raw = request.as_slice();
        let id = request.metadata.id;
        let deadline = self.config.forward_timeout;
        if tcp {
            let len = u16::try_from(raw.len()).map_err(|_| ForwardError::TooLarge(raw.len()))?;
            let mut stream = within(deadline, TcpStream::connect(upstream)).await?;
            let mut framed = Vec::with_capacity(raw.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(raw);
            within(deadline, stream.write_all(&framed)).await?;
            let mut len = [0u8; 2];
            within(deadline, stream.read_exact(&mut len)).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            within(deadline, stream.read_exact(&mut buf)).await?;
            decode_reply(&buf, id)?.ok_or_else(|| ForwardError::Decode("not our reply".into()))
        } else {
            let local: SocketAddr = if upstream.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(upstream).await?;
            within(deadline, socket.send(raw)).await?;
            let mut buf = vec![0u8; 65_535];
            let read = async {
                loop {
                    let n = socket.recv(&mut buf).await?;
                    // Stray datagrams (another ID, not a response, undecodable) are skipped
                    // until the deadline.
                    if let Ok(Some(reply)) = decode_reply(&buf[..n], id) {
                        return Ok::<_, ForwardError>(reply);
                    }
                }
            };
            timeout(deadline, read)
                .await
                .map_err(|_| ForwardError::Timeout)?
        }
    }
}

/// `io` with a deadline.
async fn within<T>(
    deadline: Duration,
    io: impl Future<Output = io::Result<T>>,
) -> Result<T, ForwardError> {
    Ok(timeout(deadline, io)
        .await
        .map_err(|_| ForwardError::Timeout)??)
}

/// Decodes an upstream reply; `None` if it is not a response to `id`.
fn decode_reply(buf: &[u8], id: u16) -> Result<Option<Message>, ForwardError> {
    let reply = Message::from_vec(buf).map_err(|e| ForwardError::Decode(e.to_string()))?;
    Ok(
        (reply.metadata.id == id && reply.metadata.message_type == MessageType::Response)
            .then_some(reply),
    )
}

/// What the handler reports when it sent nothing.
fn no_response(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::AtomicUsize;

    use hickory_proto::op::Query;

    use super::*;

    #[derive(Default)]
    struct FakeNames {
        names: HashMap<String, Vec<IpAddr>>,
        ptr: HashMap<IpAddr, String>,
    }

    impl FakeNames {
        fn with(mut self, name: &str, ips: &[&str]) -> Self {
            let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
            for ip in &ips {
                self.ptr.insert(*ip, format!("{name}.blue"));
            }
            self.names.insert(name.to_owned(), ips);
            self
        }
    }

    impl Names for FakeNames {
        fn resolve(&self, name: &str, family: Family) -> Lookup {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match self.names.get(&name) {
                None => Lookup::NotFound,
                Some(ips) => {
                    let v: Vec<IpAddr> = ips
                        .iter()
                        .copied()
                        .filter(|ip| ip.is_ipv4() == (family == Family::V4))
                        .collect();
                    if v.is_empty() {
                        Lookup::NoData
                    } else {
                        Lookup::Addrs(v)
                    }
                }
            }
        }
        fn reverse(&self, ip: IpAddr) -> Option<String> {
            self.ptr.get(&ip).cloned()
        }
    }

    fn names() -> Arc<dyn Names> {
        let big: Vec<String> = (0..100).map(|i| format!("10.9.0.{i}")).collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        Arc::new(
            FakeNames::default()
                .with(
                    "web",
                    &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"],
                )
                .with("db", &["10.0.1.1", "fd00::1"])
                .with("v4only", &["10.0.2.1"])
                .with("big", &big),
        )
    }

    /// A stub upstream on 127.0.0.1 (UDP and TCP, same port number not required).
    struct Stub {
        udp: SocketAddr,
        tcp: SocketAddr,
        hits: Arc<AtomicUsize>,
    }

    #[derive(Clone, Copy)]
    struct Behaviour {
        code: ResponseCode,
        aa: bool,
        answer: Option<Ipv4Addr>,
    }

    fn answer_for(b: Behaviour, query: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        r.metadata.response_code = b.code;
        r.metadata.authoritative = b.aa;
        r.metadata.recursion_available = true;
        r.add_queries(q.queries.clone());
        if let Some(ip) = b.answer {
            r.add_answer(Record::from_rdata(
                q.queries[0].name().clone(),
                42,
                RData::A(A(ip)),
            ));
        }
        r.to_vec().ok()
    }

    async fn stub(b: Behaviour) -> Stub {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stub = Stub {
            udp: udp.local_addr().unwrap(),
            tcp: tcp.local_addr().unwrap(),
            hits: Arc::default(),
        };
        let hits = stub.hits.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                hits.fetch_add(1, Ordering::SeqCst);
                if let Some(r) = answer_for(b, &buf[..n]) {
                    let _ = udp.send_to(&r, from).await;
                }
            }
        });
        let hits = stub.hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await.unwrap();
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut q).await.unwrap();
                if let Some(r) = answer_for(b, &q) {
                    let mut out = (r.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&r);
                    s.write_all(&out).await.unwrap();
                }
            }
        });
        stub
    }

    const NOERROR: Behaviour = Behaviour {
        code: ResponseCode::NoError,
        aa: false,
        answer: Some(Ipv4Addr::new(93, 184, 215, 14)),
    };
    const SERVFAIL: Behaviour = Behaviour {
        code: ResponseCode::ServFail,
        aa: false,
        answer: None,
    };
    const NXDOMAIN: Behaviour = Behaviour {
        code: ResponseCode::NXDomain,
        aa: false,
        answer: None,
    };
    const NXDOMAIN_AA: Behaviour = Behaviour {
        code: ResponseCode::NXDomain,
        aa: true,
        answer: None,
    };

    struct Running {
        server: DnsServer,
        udp: SocketAddr,
        tcp: SocketAddr,
    }

    async fn start(upstreams: Vec<SocketAddr>, tweak: impl FnOnce(&mut DnsConfig)) -> Running {
        start_at("127.0.0.1", upstreams, tweak).await
    }

    /// A server on `ip` (a loopback address), ports chosen by the system.
    async fn start_at(
        ip: &str,
        upstreams: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut DnsConfig),
    ) -> Running {
        let udp = UdpSocket::bind((ip, 0)).await.unwrap();
        let tcp = TcpListener::bind((ip, 0)).await.unwrap();
        let (ua, ta) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let mut config = DnsConfig {
            upstreams,
            forward_timeout: Duration::from_millis(300),
            ..DnsConfig::default()
        };
        tweak(&mut config);
        Running {
            server: DnsServer::start(udp, tcp, names(), config),
            udp: ua,
            tcp: ta,
        }
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> (u16, Vec<u8>) {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        (m.metadata.id, m.to_vec().unwrap())
    }

    /// The raw reply over UDP, or `None` after a second.
    async fn udp_raw(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(q, server).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = timeout(Duration::from_secs(1), s.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        buf.truncate(n);
        Some(buf)
    }

    async fn udp_ask(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
        let (id, q) = query(name, rtype, None);
        let raw = udp_raw(server, &q).await?;
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.metadata.id, id);
        Some(m)
    }

    async fn tcp_ask(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
        let (id, q) = query(name, rtype, None);
        let mut s = TcpStream::connect(server).await.unwrap();
        let mut out = (q.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&q);
        s.write_all(&out).await.unwrap();
        let read = async {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.ok()?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        let raw = timeout(Duration::from_secs(2), read).await.ok()??;
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.metadata.id, id);
        Some(m)
    }

    fn addrs(m: &Message) -> Vec<IpAddr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_records_all_returned_with_ttl_and_shuffled() {
        let r = start(vec![], |c| c.ttl = 77).await;
        let mut orders = HashSet::new();
        for _ in 0..20 {
            let m = udp_ask(r.udp, "WEB.", RecordType::A).await.unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.recursion_available);
            assert!(!m.metadata.truncation);
            assert!(m.answers.iter().all(|a| a.ttl == 77));
            assert_eq!(m.answers[0].name.to_ascii(), "WEB.");
            let got = addrs(&m);
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted.len(), 5);
            assert_eq!(sorted[0], "10.0.0.1".parse::<IpAddr>().unwrap());
            orders.insert(got);
        }
        assert!(orders.len() > 1, "the order never changed");
        let s = r.server.stats();
        assert_eq!((s.queries, s.answered_local), (20, 20));
    }

    #[tokio::test]
    async fn aaaa_and_nodata() {
        let r = start(vec![], |_| {}).await;
        let m = udp_ask(r.udp, "db", RecordType::AAAA).await.unwrap();
        assert_eq!(addrs(&m), ["fd00::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.answers[0].ttl, 600);
        let m = udp_ask(r.udp, "v4only", RecordType::AAAA).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let s = r.server.stats();
        assert_eq!((s.answered_local, s.nodata, s.no_upstream), (1, 1, 0));
    }

    #[tokio::test]
    async fn ptr_and_mx() {
        let up = stub(NXDOMAIN_AA).await;
        let r = start(vec![up.udp], |_| {}).await;
        let v4 = Name::from(IpAddr::from([10, 0, 2, 1])).to_ascii();
        let m = udp_ask(r.udp, &v4, RecordType::PTR).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 600);
        match &m.answers[0].data {
            RData::PTR(p) => assert_eq!(p.0.to_ascii(), "v4only.blue."),
            other => panic!("{other:?}"),
        }
        let v6 = Name::from("fd00::1".parse::<IpAddr>().unwrap()).to_ascii();
        let m = udp_ask(r.udp, &v6, RecordType::PTR).await.unwrap();
        match &m.answers[0].data {
            RData::PTR(p) => assert_eq!(p.0.to_ascii(), "db.blue."),
            other => panic!("{other:?}"),
        }
        // Unknown address: forwarded.
        let m = udp_ask(r.udp, "9.9.9.10.in-addr.arpa.", RecordType::PTR)
            .await
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(up.hits.load(Ordering::SeqCst), 1);
        // MX for a known name: empty NOERROR, not forwarded; unknown: forwarded.
        let m = udp_ask(r.udp, "web", RecordType::MX).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(up.hits.load(Ordering::SeqCst), 1);
        udp_ask(r.udp, "example.com", RecordType::MX).await.unwrap();
        // SRV is always forwarded.
        udp_ask(r.udp, "_http._tcp.web", RecordType::SRV)
            .await
            .unwrap();
        assert_eq!(up.hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unknown_names_are_forwarded_over_the_clients_protocol() {
        let up = stub(NOERROR).await;
        let r = start(vec![up.udp], |_| {}).await;
        let m = udp_ask(r.udp, "example.com", RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addrs(&m), ["93.184.215.14".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.answers[0].ttl, 42);
        assert_eq!(m.queries[0].name().to_ascii(), "example.com.");

        let up = stub(NOERROR).await;
        let r2 = start(vec![up.tcp], |_| {}).await;
        let m = tcp_ask(r2.tcp, "example.com.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(addrs(&m), ["93.184.215.14".parse::<IpAddr>().unwrap()]);
        assert_eq!(up.hits.load(Ordering::SeqCst), 1, "one TCP connection");
        assert_eq!(r2.server.stats().forwarded, 1);
    }

    #[tokio::test]
    async fn upstream_order_and_rcodes() {
        let fail = stub(SERVFAIL).await;
        let nx = stub(NXDOMAIN).await;
        let nx_aa = stub(NXDOMAIN_AA).await;
        let ok = stub(NOERROR).await;

        // SERVFAIL, then non-authoritative NXDOMAIN: both skipped.
        let r = start(vec![fail.udp, nx.udp, ok.udp], |_| {}).await;
        let m = udp_ask(r.udp, "example.com", RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addrs(&m).len(), 1);
        assert_eq!(fail.hits.load(Ordering::SeqCst), 1);
        assert_eq!(nx.hits.load(Ordering::SeqCst), 1);

        // Authoritative NXDOMAIN stops the search.
        let r = start(vec![nx_aa.udp, ok.udp], |_| {}).await;
        let m = udp_ask(r.udp, "nope.example", RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert_eq!(ok.hits.load(Ordering::SeqCst), 1);

        // Only a fourth upstream would answer: never tried.
        let r = start(vec![fail.udp, fail.udp, nx.udp, ok.udp], |_| {}).await;
        let m = udp_ask(r.udp, "example.com", RecordType::A).await.unwrap();
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "last error relayed"
        );
        assert_eq!(ok.hits.load(Ordering::SeqCst), 1);

        // The last upstream tried is silent: no reply at all.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r = start(vec![fail.udp, silent.local_addr().unwrap()], |_| {}).await;
        assert!(udp_ask(r.udp, "example.com", RecordType::A).await.is_none());
        assert_eq!(r.server.stats().forward_failures, 1);
    }

    #[tokio::test]
    async fn no_upstream_or_over_the_limit_is_servfail() {
        let r = start(vec![], |_| {}).await;
        let m = udp_ask(r.udp, "example.com", RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(r.server.stats().no_upstream, 1);

        let ok = stub(NOERROR).await;
        let r = start(vec![ok.udp], |c| c.max_concurrent_forwards = 0).await;
        for _ in 0..2 {
            let m = udp_ask(r.udp, "example.com", RecordType::A).await.unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        }
        assert_eq!(r.server.stats().forward_limited, 2);
        assert_eq!(ok.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn ndots_set_answers_dotless_unknown_names_empty() {
        let r = start(vec![], |c| c.ndots_set = true).await;
        let m = udp_ask(r.udp, "nothere", RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = udp_ask(r.udp, "not.here", RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn udp_answers_are_truncated_to_the_payload_size() {
        let r = start(vec![], |_| {}).await;
        let (_, q) = query("big", RecordType::A, None);
        let raw = udp_raw(r.udp, &q).await.unwrap();
        assert!(raw.len() <= 512, "{} bytes", raw.len());
        let m = Message::from_vec(&raw).unwrap();
        assert!(m.metadata.truncation);
        assert!(!m.answers.is_empty() && m.answers.len() < 100);
        assert_eq!(r.server.stats().truncated, 1);

        // EDNS payload sizes below 512 count as 512; 4096 fits all.
        let (_, q) = query("big", RecordType::A, Some(256));
        let raw = udp_raw(r.udp, &q).await.unwrap();
        assert!(raw.len() <= 512 && Message::from_vec(&raw).unwrap().metadata.truncation);
        let (_, q) = query("big", RecordType::A, Some(4096));
        let raw = udp_raw(r.udp, &q).await.unwrap();
        let m = Message::from_vec(&raw).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
        assert!(m.edns.is_some());

        let m = tcp_ask(r.tcp, "big", RecordType::A).await.unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
    }

    #[tokio::test]
    async fn garbage_does_not_stop_the_server() {
        let up = stub(NOERROR).await;
        let r = start(vec![up.udp], |_| {}).await;
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut junk: Vec<Vec<u8>> = vec![
            vec![],
            b"\x00\x01garbage".to_vec(),
            vec![0xff; 12],
            vec![0xff; 600],
            // A header claiming one question, then nothing.
            vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
            // A response (QR set): ignored, never reflected.
            vec![0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
            // No question: FORMERR.
            vec![0x12, 0x35, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        let mut x = 0x9e37_79b9_u32;
        for len in [13usize, 40, 100, 300] {
            junk.push(
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect(),
            );
        }
        for j in &junk {
            s.send_to(j, r.udp).await.unwrap();
        }
        let mut t = TcpStream::connect(r.tcp).await.unwrap();
        t.write_all(b"\x00\x05hello\xff\xff").await.unwrap();
        drop(t);
        let m = udp_ask(r.udp, "web", RecordType::A).await.unwrap();
        assert_eq!(addrs(&m).len(), 5);
        let m = udp_ask(r.udp, "example.com", RecordType::A).await.unwrap();
        assert_eq!(addrs(&m).len(), 1);
        let m = tcp_ask(r.tcp, "web", RecordType::A).await.unwrap();
        assert_eq!(addrs(&m).len(), 5);
    }

    #[tokio::test]
    async fn shutdown_and_drop_stop_the_server() {
        // An address no other test binds: a port freed here cannot be taken by a concurrent
        // test's socket and answer in the stopped server's place.
        let r = start_at("127.0.99.1", vec![], |_| {}).await;
        assert!(udp_ask(r.udp, "web", RecordType::A).await.is_some());
        let (udp, tcp) = (r.udp, r.tcp);
        r.server.shutdown().await;
        assert!(udp_ask(udp, "web", RecordType::A).await.is_none());
        assert!(TcpStream::connect(tcp).await.is_err());

        let r = start_at("127.0.99.1", vec![], |_| {}).await;
        let udp = r.udp;
        drop(r);
        tokio::task::yield_now().await;
        assert!(udp_ask(udp, "web", RecordType::A).await.is_none());
    }
}
