//! A typed client of the control API over a unix socket or TCP, one request per connection
//! (hyper's HTTP/1 client on a tokio stream).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::ErrorBody;
use crate::cnm::{
    AttachRequest, Attachment, DnsAnswer, DnsQuery, Endpoint, EndpointCreate, Info, JoinRequest,
    NetworkCreate, NetworkSpec, SandboxCreate, SandboxInfo,
};
use crate::config::ApiAddr;

/// How long one request may take, connection included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection to the agent (not running, wrong address, no permission).
    #[error("cannot connect to the netagent API at {addr}: {source}")]
    Connect {
        /// The address.
        addr: ApiAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The agent answered with an error status; `message` is its `error` text.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The answer's `code` ([`ErrorBody::code`]), if it had one.
        code: Option<String>,
        /// The agent's message.
        message: String,
    },
    /// The exchange failed after connecting.
    #[error("request to {addr} failed: {source}")]
    Http {
        /// The address.
        addr: ApiAddr,
        /// The error.
        source: hyper::Error,
    },
    /// The request did not complete in time.
    #[error("request to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The address.
        addr: ApiAddr,
        /// The limit.
        timeout: Duration,
    },
    /// The request could not be built (a method or path this client never makes).
    #[error("cannot build the request: {0}")]
    Request(hyper::http::Error),
    /// A success answer that is not the expected JSON.
    #[error("unexpected answer from the agent: {0}")]
    Decode(#[from] serde_json::Error),
}

impl ClientError {
    /// The HTTP status of an [`Api`](Self::Api) error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one agent's control API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    addr: ApiAddr,
    timeout: Duration,
}

impl ApiClient {
    /// A client of the agent at `addr`, with [`DEFAULT_TIMEOUT`].
    pub fn new(addr: ApiAddr) -> Self {
        Self {
            addr,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The agent's address.
    pub fn addr(&self) -> &ApiAddr {
        &self.addr
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, ClientError> {
        self.get("/v1/info").await
    }

    /// `GET /v1/networks`.
    pub async fn networks(&self) -> Result<Vec<NetworkSpec>, ClientError> {
        self.get("/v1/networks").await
    }

    /// `POST /v1/networks`.
    pub async fn create_network(&self, req: &NetworkCreate) -> Result<NetworkSpec, ClientError> {
        self.send("POST", "/v1/networks", Some(req)).await
    }

    /// `GET /v1/networks/{name_or_id}`.
    pub async fn network(&self, reference: &str) -> Result<NetworkSpec, ClientError> {
        self.get(&format!("/v1/networks/{}", encode(reference)))
            .await
    }

    /// `DELETE /v1/networks/{name_or_id}`.
    pub async fn remove_network(&self, reference: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/networks/{}", encode(reference)))
            .await
    }

    /// `GET /v1/endpoints[?network=N]`.
    pub async fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, ClientError> {
        match network {
            Some(n) => {
                self.get(&format!("/v1/endpoints?network={}", encode(n)))
                    .await
            }
            None => self.get("/v1/endpoints").await,
        }
    }

    /// `POST /v1/endpoints`.
    pub async fn create_endpoint(&self, req: &EndpointCreate) -> Result<Endpoint, ClientError> {
        self.send("POST", "/v1/endpoints", Some(req)).await
    }

    /// `GET /v1/endpoints/{network}/{name}`.
    pub async fn endpoint(&self, network: &str, name: &str) -> Result<Endpoint, ClientError> {
        self.get(&endpoint_path(network, name, "")).await
    }

    /// `DELETE /v1/endpoints/{network}/{name}`.
    pub async fn remove_endpoint(&self, network: &str, name: &str) -> Result<(), ClientError> {
        self.delete(&endpoint_path(network, name, "")).await
    }

    /// `POST /v1/endpoints/{network}/{name}/join` to `sandbox`, the interface named as the
    /// agent chooses.
    pub async fn join(
        &self,
        network: &str,
        name: &str,
        sandbox: &str,
    ) -> Result<Endpoint, ClientError> {
        let req = JoinRequest {
            sandbox: sandbox.to_owned(),
            ifname: None,
        };
        self.join_with(network, name, &req).await
    }

    /// `POST /v1/endpoints/{network}/{name}/join`.
    pub async fn join_with(
        &self,
        network: &str,
        name: &str,
        req: &JoinRequest,
    ) -> Result<Endpoint, ClientError> {
        self.send("POST", &endpoint_path(network, name, "/join"), Some(req))
            .await
    }

    /// `POST /v1/endpoints/{network}/{name}/leave`.
    pub async fn leave(&self, network: &str, name: &str) -> Result<Endpoint, ClientError> {
        self.send::<(), _>("POST", &endpoint_path(network, name, "/leave"), None)
            .await
    }

    /// `POST /v1/endpoints/{network}/{name}/disable` (`enabled` false) or `/enable`.
    pub async fn set_service_enabled(
        &self,
        network: &str,
        name: &str,
        enabled: bool,
    ) -> Result<Endpoint, ClientError> {
        let action = if enabled { "/enable" } else { "/disable" };
        self.send::<(), _>("POST", &endpoint_path(network, name, action), None)
            .await
    }

    /// `GET /v1/sandboxes`.
    pub async fn sandboxes(&self) -> Result<Vec<SandboxInfo>, ClientError> {
        self.get("/v1/sandboxes").await
    }

    /// `POST /v1/sandboxes`.
    pub async fn create_sandbox(&self, req: &SandboxCreate) -> Result<SandboxInfo, ClientError> {
        self.send("POST", "/v1/sandboxes", Some(req)).await
    }

    /// `GET /v1/sandboxes/{name}`.
    pub async fn sandbox(&self, name: &str) -> Result<SandboxInfo, ClientError> {
        self.get(&format!("/v1/sandboxes/{}", encode(name))).await
    }

    /// `DELETE /v1/sandboxes/{name}`.
    pub async fn remove_sandbox(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/sandboxes/{}", encode(name)))
            .await
    }

    /// `GET /v1/ipam/{network}`.
    pub async fn pool(&self, network: &str) -> Result<crate::cnm::PoolInfo, ClientError> {
        self.get(&format!("/v1/ipam/{}", encode(network))).await
    }

    /// `POST /v1/ipam/reclaim`.
    pub async fn reclaim(&self, node: &str) -> Result<crate::cnm::ReclaimAnswer, ClientError> {
        let req = crate::cnm::ReclaimRequest {
            node: node.to_owned(),
        };
        self.send("POST", "/v1/ipam/reclaim", Some(&req)).await
    }

    /// `GET /v1/dns/lookup`.
    pub async fn dns_lookup(&self, query: &DnsQuery) -> Result<DnsAnswer, ClientError> {
        let mut path = format!("/v1/dns/lookup?name={}", encode(&query.name));
        for (key, value) in [
            ("network", &query.network),
            ("sandbox", &query.sandbox),
            ("type", &query.record_type),
        ] {
            if let Some(v) = value {
                path.push_str(&format!("&{key}={}", encode(v)));
            }
        }
        self.get(&path).await
    }

    /// Sends a request with a raw body and returns the status and the body, whatever the
    /// status (for tests of malformed input).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let fut = self.exchange(method, path, body);
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: self.addr.clone(),
                timeout: self.timeout,
            })?
    }

    /// `POST /v1/attachments`.
    pub async fn attach(&self, req: &AttachRequest) -> Result<Attachment, ClientError> {
        self.send("POST", "/v1/attachments", Some(req)).await
    }

    /// `GET /v1/attachments/{sandbox}/{network}`, with `?verify=true` when `verify`.
    pub async fn attachment(
        &self,
        sandbox: &str,
        network: &str,
        verify: bool,
    ) -> Result<Attachment, ClientError> {
        let query = if verify { "?verify=true" } else { "" };
        self.get(&format!("{}{query}", attachment_path(sandbox, network)))
            .await
    }

    /// `DELETE /v1/attachments/{sandbox}/{network}`, with `?ifname=` when `ifname` is given
    /// (an attachment under another interface name is then left alone).
    pub async fn detach(
        &self,
        sandbox: &str,
        network: &str,
        ifname: Option<&str>,
    ) -> Result<(), ClientError> {
        let query = ifname.map_or_else(String::new, |i| format!("?ifname={}", encode(i)));
        self.delete(&format!("{}{query}", attachment_path(sandbox, network)))
            .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send::<(), T>("GET", path, None).await
    }

    async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let (status, body) = self.raw("DELETE", path, None).await?;
        check(status, &body)
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let (status, bytes) = self.raw(method, path, body).await?;
        check(status, &bytes)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let connect = |source| ClientError::Connect {
            addr: self.addr.clone(),
            source,
        };
        match &self.addr {
            ApiAddr::Unix(p) => {
                let stream = UnixStream::connect(p).await.map_err(connect)?;
                self.over(stream, method, path, body).await
            }
            ApiAddr::Tcp(a) => {
                let stream = TcpStream::connect(a).await.map_err(connect)?;
                self.over(stream, method, path, body).await
            }
        }
    }

    async fn over<S>(
        &self,
        stream: S,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |source| ClientError::Http {
            addr: self.addr.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "netagent");
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(ClientError::Request)?;
        let result = async {
            let response = sender.send_request(request).await.map_err(http)?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(http)?
                .to_bytes();
            Ok((status, bytes))
        }
        .await;
        driver.abort();
        result
    }
}

/// Turns an error status into [`ClientError::Api`] with the body's `error` text (or the body
/// itself if it is not an error body).
fn check(status: u16, body: &[u8]) -> Result<(), ClientError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let (message, code) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.error, e.code),
        Err(_) => {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                (format!("HTTP status {status}"), None)
            } else {
                (text, None)
            }
        }
    };
    Err(ClientError::Api {
        status,
        code,
        message,
    })
}

fn attachment_path(sandbox: &str, network: &str) -> String {
    format!("/v1/attachments/{}/{}", encode(sandbox), encode(network))
}

fn endpoint_path(network: &str, name: &str, suffix: &str) -> String {
    format!("/v1/endpoints/{}/{}{suffix}", encode(network), encode(name))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any text is one path
/// segment or query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode("blue.net-1_x~"), "blue.net-1_x~");
        assert_eq!(encode("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
        assert_eq!(encode(".."), "..");
    }

    #[test]
    fn error_bodies() {
        let e = check(409, br#"{"error":"network with name blue already exists"}"#).unwrap_err();
        assert_eq!(e.status(), Some(409));
        assert_eq!(e.to_string(), "network with name blue already exists");
        assert_eq!(check(404, b"").unwrap_err().to_string(), "HTTP status 404");
        assert!(check(204, b"").is_ok());
    }
}
