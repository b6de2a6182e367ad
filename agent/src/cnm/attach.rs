//! Attachments: a runtime's container namespace connected to a network in one step, and
//! taken off again, as a CNI runtime asks (`ADD`, `DEL`, `CHECK`; see [`crate::cni`]).
//!
//! An attachment is an ordinary sandbox (named after the container, [`Engine::Cni`]) with an
//! ordinary endpoint joined to it; the composite steps are undone when a later one fails, and
//! each is idempotent: attaching what is attached answers the attachment, detaching what is
//! not attached succeeds. A sandbox whose namespace is gone (the runtime removed the
//! container while the agent could not hear it) is swept before every attach and by
//! [`Cnm::sweep_attachments`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nodecore::{CoreError, Endpoint, Engine, check_ifname, check_name};
use serde::{Deserialize, Serialize};

use super::error::CnmError;
use super::service::Cnm;
use crate::cnm::{EndpointCreate, JoinRequest, SandboxCreate};

/// How long one reading of a container's interface may take.
const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The body of `POST /v1/attachments`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// The sandbox, named after the container (a CNI runtime's `CNI_CONTAINERID`).
    pub sandbox: String,
    /// The container's network namespace (absolute path; it must exist).
    pub netns: String,
    /// The network, by name or ID.
    pub network: String,
    /// The interface's name in the namespace.
    pub ifname: String,
    /// The endpoint's name: the container's name on the network (DNS).
    pub name: String,
    /// Container-level aliases (DNS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The address; default: allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The MAC address; default: derived from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The network's subnet: the network is created with it when the catalogue has no
    /// network of that name; an existing one must have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
}

/// An attachment, as `POST /v1/attachments` and `GET /v1/attachments/{sandbox}/{network}`
/// answer it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The sandbox.
    pub sandbox: String,
    /// The container's namespace.
    pub netns: PathBuf,
    /// The interface's name in it.
    pub ifname: String,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The network's gateway (the address of the network's bridge on every host).
    pub gateway: Ipv4Addr,
    /// The nameserver the container uses: the sandbox's embedded DNS server; `None` when
    /// the agent runs none (not root, or `dns = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<Ipv4Addr>,
}

/// The query of `GET /v1/attachments/{sandbox}/{network}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentQuery {
    /// Also read the interface back from the kernel and refuse (409) when it is missing,
    /// down, or has another MAC or address.
    #[serde(default)]
    pub verify: bool,
}

/// Attachment operations by kind (`attach`, `detach`, `check`, `sweep`) and outcome (`ok`,
/// `refused`), for `/metrics`; a sweep counts each attachment it withdrew.
#[derive(Debug, Default)]
pub struct AttachmentStats {
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl AttachmentStats {
    fn count(&self, op: &'static str, ok: bool, n: u64) {
        if n == 0 {
            return;
        }
        let outcome = if ok { "ok" } else { "refused" };
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((op, outcome))
            .or_default() += n;
    }

    /// The counters so far: `(operation, outcome) -> count`.
    pub fn snapshot(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The query of `DELETE /v1/attachments/{sandbox}/{network}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachQuery {
    /// Only the attachment with this interface name (CNI identifies an attachment by
    /// container, network and interface).
    #[serde(default)]
    pub ifname: Option<String>,
}

impl Cnm {
    /// Connects a container's namespace to a network: creates the network (when `subnet`
    /// is given and it does not exist), the sandbox, the endpoint, and joins it. An
    /// attachment that exists is answered as it is.
    pub async fn attach(&self, req: AttachRequest) -> Result<Attachment, CnmError> {
        let result = self.attach_steps(req).await;
        self.attachment_stats().count("attach", result.is_ok(), 1);
        result
    }

    async fn attach_steps(&self, req: AttachRequest) -> Result<Attachment, CnmError> {
        check_name("sandbox", &req.sandbox)?;
        check_name("endpoint", &req.name)?;
        check_ifname(&req.ifname)?;
        if !Path::new(&req.netns).is_absolute() {
            return Err(invalid(format!(
                "invalid netns {:?}: must be an absolute path",
                req.netns
            )));
        }
        let _one = self.attachments.lock().await;
        self.sweep_locked().await;
        match Path::new(&req.netns).try_exists() {
            Ok(true) => {}
            Ok(false) => {
                return Err(CnmError::from(CoreError::NotFound(format!(
                    "the container's namespace {} does not exist here: is the agent running in \
                     the host's mount namespace?",
                    req.netns
                ))));
            }
            Err(e) => {
                return Err(invalid(format!(
                    "cannot look at the container's namespace {}: {e}",
                    req.netns
                )));
            }
        }
        let spec = self.network_for(&req).await?;
        match self.sandbox(&req.sandbox).await {
            Ok(info) if info.engine != Some(Engine::Cni) => {
                return Err(conflict(format!(
                    "sandbox {} exists and is not a CNI container's",
                    req.sandbox
                )));
            }
            Ok(info) if info.netns != Path::new(&req.netns) => {
                // The container's namespace changed without a DEL: what was attached to the
                // old one is stale.
                self.detach_all(&req.sandbox).await?;
                self.create_cni_sandbox(&req).await?;
            }
            Ok(_) => {}
            Err(_) => self.create_cni_sandbox(&req).await?,
        }
        if let Some(existing) = self.find_attachment(&req.sandbox, &spec.id).await? {
            return same_attachment(&req, existing);
        }
        // A leftover of an attach that stopped between the endpoint and the join (a crash):
        // unjoined, it holds the container's name and address; replaced, as the Docker
        // plugin's join does.
        if let Ok(old) = self.endpoint(&spec.id, &req.name).await
            && old.sandbox.is_none()
        {
            self.remove_endpoint(&spec.id, &old.name).await?;
        }
        let created = self
            .create_endpoint(EndpointCreate {
                network: spec.id.clone(),
                name: req.name.clone(),
                ip: req.ip.clone(),
                mac: req.mac.clone(),
                service: None,
                aliases: req.aliases.clone(),
            })
            .await;
        let endpoint = match created {
            Ok(e) => e,
            Err(e) => {
                self.remove_cni_sandbox_if_empty(&req.sandbox).await;
                return Err(e);
            }
        };
        let join = JoinRequest {
            sandbox: req.sandbox.clone(),
            ifname: Some(req.ifname.clone()),
        };
        if let Err(e) = self.join_sandbox(&spec.id, &endpoint.name, join).await {
            if let Err(undo) = self.remove_endpoint(&spec.id, &endpoint.name).await {
                tracing::warn!(endpoint = %endpoint.name, error = %undo, "cannot remove the endpoint of a failed attach: the next attach of the name replaces it");
            }
            self.remove_cni_sandbox_if_empty(&req.sandbox).await;
            return Err(e);
        }
        self.find_attachment(&req.sandbox, &spec.id)
            .await?
            .ok_or(CnmError::Stopped)
    }

    /// Takes a container off a network: leaves, removes the endpoint, and the sandbox with
    /// its last one. Nothing attached (under `ifname`, when given) is not an error (`None`).
    pub async fn detach(
        &self,
        sandbox: &str,
        network: &str,
        ifname: Option<&str>,
    ) -> Result<Option<Endpoint>, CnmError> {
        let result = self.detach_steps(sandbox, network, ifname).await;
        self.attachment_stats().count("detach", result.is_ok(), 1);
        result
    }

    async fn detach_steps(
        &self,
        sandbox: &str,
        network: &str,
        ifname: Option<&str>,
    ) -> Result<Option<Endpoint>, CnmError> {
        let _one = self.attachments.lock().await;
        let found = self.find_attachment(sandbox, network).await?;
        let Some(endpoint) = found
            .filter(|a| ifname.is_none_or(|i| a.ifname == i))
            .map(|a| a.endpoint)
        else {
            self.remove_cni_sandbox_if_empty(sandbox).await;
            return Ok(None);
        };
        self.take_off(&endpoint).await?;
        self.remove_cni_sandbox_if_empty(sandbox).await;
        Ok(Some(endpoint))
    }

    /// A container's attachment to a network; with `query.verify`, also checked against
    /// the kernel (the interface exists, is up, and has the endpoint's MAC and address).
    pub async fn attachment(
        &self,
        sandbox: &str,
        network: &str,
        query: AttachmentQuery,
    ) -> Result<Attachment, CnmError> {
        let attachment = self
            .find_attachment(sandbox, network)
            .await?
            .ok_or_else(|| {
                CnmError::from(CoreError::NotFound(format!(
                    "container {sandbox} is not attached to network {network}"
                )))
            })?;
        if query.verify {
            let verified = self.verify(&attachment).await;
            self.attachment_stats().count("check", verified.is_ok(), 1);
            verified?;
        }
        Ok(attachment)
    }

    /// Detaches every attachment whose container namespace is gone (the runtime removed the
    /// container while the agent was stopped or could not be reached); returns how many.
    pub async fn sweep_attachments(&self) -> usize {
        let _one = self.attachments.lock().await;
        self.sweep_locked().await
    }

    async fn sweep_locked(&self) -> usize {
        let Ok(sandboxes) = self.sandboxes().await else {
            return 0;
        };
        let mut swept = 0;
        for sb in sandboxes {
            // Only a namespace known to be gone: an error (permissions, say) is no proof.
            if sb.engine != Some(Engine::Cni) || !matches!(sb.netns.try_exists(), Ok(false)) {
                continue;
            }
            match self.detach_all(&sb.name).await {
                Ok(n) => {
                    swept += n;
                    self.attachment_stats().count("sweep", true, n as u64);
                    tracing::info!(sandbox = %sb.name, netns = %sb.netns.display(), endpoints = n, "container namespace gone: attachments withdrawn");
                }
                Err(e) => {
                    self.attachment_stats().count("sweep", false, 1);
                    tracing::warn!(sandbox = %sb.name, error = %e, "cannot withdraw the attachments of a container whose namespace is gone");
                }
            }
        }
        swept
    }

    /// Takes every endpoint of `sandbox` off, then removes the sandbox.
    async fn detach_all(&self, sandbox: &str) -> Result<usize, CnmError> {
        let endpoints: Vec<Endpoint> = self
            .endpoints(None)
            .await?
            .into_iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox))
            .collect();
        for e in &endpoints {
            self.take_off(e).await?;
        }
        let _ = self.remove_sandbox(sandbox).await;
        Ok(endpoints.len())
    }

    /// Leaves and removes one endpoint.
    async fn take_off(&self, endpoint: &Endpoint) -> Result<(), CnmError> {
        if endpoint.sandbox.is_some() {
            self.leave(&endpoint.network_id, &endpoint.name).await?;
        }
        match self
            .remove_endpoint(&endpoint.network_id, &endpoint.name)
            .await
        {
            Ok(_) => Ok(()),
            Err(CnmError::Core(e)) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_cni_sandbox(&self, req: &AttachRequest) -> Result<(), CnmError> {
        self.create_sandbox(SandboxCreate {
            name: req.sandbox.clone(),
            netns: req.netns.clone(),
            resolv_conf: None,
            engine: Some(Engine::Cni),
        })
        .await
        .map(drop)
    }

    /// Removes a CNI sandbox without endpoints: after a detach, or after an attach whose
    /// later step failed.
    async fn remove_cni_sandbox_if_empty(&self, sandbox: &str) {
        if let Ok(info) = self.sandbox(sandbox).await
            && info.engine == Some(Engine::Cni)
            && info.endpoints.is_empty()
        {
            let _ = self.remove_sandbox(sandbox).await;
        }
    }

    /// The network an attach names (exactly: a name or an ID, never an ID prefix); created
    /// when it does not exist and a subnet is given.
    async fn network_for(&self, req: &AttachRequest) -> Result<nodecore::NetworkSpec, CnmError> {
        let Some(subnet) = &req.subnet else {
            return self.network_named(&req.network).await?.ok_or_else(|| {
                CnmError::from(CoreError::NoSuchNetwork(format!(
                    "network {} not found: create it first (netagent network create {} \
                     --subnet CIDR) or give \"subnet\" in the CNI configuration",
                    req.network, req.network
                )))
            });
        };
        let wanted = nodecore::parse_subnet(subnet)?;
        let spec = self.network_or_create(&req.network, subnet).await?;
        if spec.subnet != wanted {
            return Err(conflict(format!(
                "network {} exists with subnet {}, not {wanted}: use that subnet in the \
                 configuration, or another network name",
                spec.name, spec.subnet
            )));
        }
        Ok(spec)
    }

    /// The attachment of CNI sandbox `sandbox` to `network` (by name or ID), if any: one
    /// read of the core's state.
    async fn find_attachment(
        &self,
        sandbox: &str,
        network: &str,
    ) -> Result<Option<Attachment>, CnmError> {
        let (sandbox, network) = (sandbox.to_owned(), network.to_owned());
        let dns = self.settings().dns.is_some();
        self.core(move |core, _, _| {
            let state = core.state();
            let sb = state
                .sandboxes
                .get(&sandbox)
                .filter(|sb| sb.engine == Some(Engine::Cni))?;
            let endpoint = state.endpoints.values().find(|e| {
                e.sandbox.as_deref() == Some(sandbox.as_str())
                    && (e.network == network || e.network_id == network)
            })?;
            let known = state.networks.get(&endpoint.network_id)?;
            Some(Attachment {
                sandbox: sandbox.clone(),
                netns: sb.netns.clone(),
                ifname: endpoint.sandbox_ifname().to_owned(),
                endpoint: endpoint.clone(),
                gateway: known.spec.gateway,
                nameserver: dns.then(|| crate::dns::listen_ip(sb.engine)),
            })
        })
        .await
    }

    /// Reads the attachment's interface back from the kernel.
    async fn verify(&self, a: &Attachment) -> Result<(), CnmError> {
        if self.settings().dataplane.is_none() {
            return Err(CnmError::from(CoreError::Unavailable(
                "this agent runs no overlay dataplane (it needs root and netlink): it cannot \
                 read the container's interface"
                    .into(),
            )));
        }
        let state = overlay::netlink::inspect_interface(&a.netns, &a.ifname, INSPECT_TIMEOUT)
            .await
            .map_err(|e| {
                conflict(format!(
                    "cannot read interface {} in {}: {e}",
                    a.ifname,
                    a.netns.display()
                ))
            })?;
        let Some(state) = state else {
            return Err(conflict(format!(
                "interface {} is missing from {}",
                a.ifname,
                a.netns.display()
            )));
        };
        let addr = ipnet::Ipv4Net::new(a.endpoint.ip, a.endpoint.prefix_len)
            .map_err(|e| invalid(e.to_string()))?;
        let mut wrong = Vec::new();
        if state.mac != Some(a.endpoint.mac) {
            wrong.push(format!(
                "MAC {} instead of {}",
                state
                    .mac
                    .map_or_else(|| "none".to_owned(), |m| m.to_string()),
                a.endpoint.mac
            ));
        }
        if !state.ipv4.contains(&addr) {
            wrong.push(format!("no address {addr}"));
        }
        if !state.up {
            wrong.push("down".to_owned());
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(conflict(format!(
                "interface {} in {}: {}",
                a.ifname,
                a.netns.display(),
                wrong.join(", ")
            )))
        }
    }
}

/// An attach of what is attached: the attachment, unless the request asks for something
/// else (another interface, address or MAC), which is refused.
fn same_attachment(req: &AttachRequest, existing: Attachment) -> Result<Attachment, CnmError> {
    let mut differs = Vec::new();
    if existing.ifname != req.ifname {
        differs.push(format!("as {}", existing.ifname));
    }
    if let Some(ip) = &req.ip
        && *ip != existing.endpoint.ip.to_string()
    {
        differs.push(format!("with address {}", existing.endpoint.ip));
    }
    if let Some(mac) = &req.mac
        && !mac.eq_ignore_ascii_case(&existing.endpoint.mac.to_string())
    {
        differs.push(format!("with MAC {}", existing.endpoint.mac));
    }
    if differs.is_empty() {
        return Ok(existing);
    }
    Err(conflict(format!(
        "container {} is attached to network {} already, {}: detach it first",
        req.sandbox,
        existing.endpoint.network,
        differs.join(", ")
    )))
}

fn invalid(message: String) -> CnmError {
    CnmError::from(CoreError::Invalid(message))
}

fn conflict(message: String) -> CnmError {
    CnmError::from(CoreError::Conflict(message))
}
