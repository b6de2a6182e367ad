//! A small client of dockerd's Engine API, on its unix socket: the plugin protocol carries no
//! names, so the plugin asks dockerd what a network and a container are called.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;

/// The longest wait for one answer of dockerd.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The API version asked for (Docker 20.10's; newer engines serve it too).
const API_VERSION: &str = "v1.41";

/// dockerd could not be asked, or its answer not understood.
#[derive(Debug, thiserror::Error)]
pub enum EngineApiError {
    /// Connecting or talking to the socket failed.
    #[error("cannot reach dockerd's API at {}: {reason}", socket.display())]
    Unreachable {
        /// The socket.
        socket: PathBuf,
        /// Why.
        reason: String,
    },
    /// dockerd answered with an error status.
    #[error("dockerd's API answered {status} to {path}")]
    Status {
        /// The request's path.
        path: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not what the API documents.
    #[error("unexpected answer of dockerd's API to {path}: {source}")]
    Decode {
        /// The request's path.
        path: String,
        /// What is wrong.
        source: serde_json::Error,
    },
}

/// What the plugin needs of a Docker network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerNetwork {
    /// The network's name.
    pub name: String,
    /// Its driver.
    pub driver: String,
    /// Its IPv4 subnets.
    pub subnets: Vec<String>,
    /// Endpoint ID -> the name of the container (libnetwork names an endpoint after its
    /// container).
    pub endpoints: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkJson {
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default, rename = "IPAM")]
    ipam: Option<IpamJson>,
    #[serde(default)]
    containers: Option<BTreeMap<String, ContainerJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamJson {
    #[serde(default)]
    config: Option<Vec<IpamConfigJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamConfigJson {
    #[serde(default)]
    subnet: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerJson {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "EndpointID")]
    endpoint_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectJson {
    #[serde(default)]
    network_settings: Option<SettingsJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SettingsJson {
    #[serde(default)]
    networks: Option<BTreeMap<String, EndpointSettingsJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointSettingsJson {
    #[serde(default)]
    aliases: Option<Vec<String>>,
}

/// dockerd's API on a unix socket.
#[derive(Clone, Debug)]
pub struct EngineApi {
    socket: PathBuf,
}

impl EngineApi {
    /// The API at `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// A network by ID; `None` if dockerd does not know it (yet: dockerd stores a network
    /// only after its driver created it).
    pub async fn network(&self, id: &str) -> Result<Option<DockerNetwork>, EngineApiError> {
        let path = format!("/{API_VERSION}/networks/{id}");
        let Some(json) = self.get::<NetworkJson>(&path).await? else {
            return Ok(None);
        };
        let subnets = json
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.subnet)
            .filter(|s| !s.is_empty())
            .collect();
        let endpoints = json
            .containers
            .unwrap_or_default()
            .into_values()
            .filter(|c| !c.endpoint_id.is_empty())
            .map(|c| (c.endpoint_id, c.name))
            .collect();
        Ok(Some(DockerNetwork {
            name: json.name,
            driver: json.driver,
            subnets,
            endpoints,
        }))
    }

    /// The `--network-alias`es of a container (by name or ID) on a network (by name); `None`
    /// if dockerd does not know the container. dockerd answers only once it lets go of the
    /// container: not while it starts it (and calls the plugin's `Join`).
    pub async fn aliases(
        &self,
        container: &str,
        network: &str,
    ) -> Result<Option<Vec<String>>, EngineApiError> {
        let path = format!("/{API_VERSION}/containers/{container}/json");
        let Some(json) = self.get::<InspectJson>(&path).await? else {
            return Ok(None);
        };
        Ok(Some(
            json.network_settings
                .and_then(|s| s.networks)
                .and_then(|mut n| n.remove(network))
                .and_then(|e| e.aliases)
                .unwrap_or_default(),
        ))
    }

    /// `GET path`, decoded; `None` on 404.
    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
    ) -> Result<Option<T>, EngineApiError> {
        let (status, body) = tokio::time::timeout(TIMEOUT, self.request(path))
            .await
            .map_err(|_| self.unreachable(format!("no answer within {} s", TIMEOUT.as_secs())))??;
        match status {
            200 => {
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|source| EngineApiError::Decode {
                        path: path.to_owned(),
                        source,
                    })
            }
            404 => Ok(None),
            status => Err(EngineApiError::Status {
                path: path.to_owned(),
                status,
            }),
        }
    }

    async fn request(&self, path: &str) -> Result<(u16, Bytes), EngineApiError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let result = async {
            let request = Request::builder()
                .method("GET")
                .uri(path)
                .header(HOST, "docker")
                .body(Empty::<Bytes>::new())
                .map_err(|e| self.unreachable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        result
    }

    fn unreachable(&self, reason: String) -> EngineApiError {
        EngineApiError::Unreachable {
            socket: self.socket.clone(),
            reason,
        }
    }
}
