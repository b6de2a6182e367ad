//! The commands: each reads what it needs from the environment and the configuration, asks
//! the agent, and says what to print.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use super::env::{CniEnv, Command};
use super::wire::{
    CHECK_VERSIONS, CniError, CniResult, Dns, Interface, IpConfig, LATEST_VERSION, NetConf,
    SUPPORTED_VERSIONS, VersionInfo, codes,
};
use super::{Outcome, PluginError};
use crate::api::{ApiClient, ClientError};
use crate::cnm::{AttachRequest, Attachment};
use crate::config::{ApiAddr, ROOT_API_SOCKET};

/// Runs the command the environment names on the configuration in `stdin`.
pub async fn run(env: &CniEnv, stdin: &[u8]) -> Outcome {
    let parsed = serde_json::from_slice::<NetConf>(stdin);
    // Errors are answered in the configuration's version when it is one the plugin speaks.
    let conf_version = parsed
        .as_ref()
        .ok()
        .map(|c| c.cni_version.as_str())
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(LATEST_VERSION)
        .to_owned();
    let command = match env.command() {
        Ok(c) => c,
        Err(e) => return failed(&conf_version, e),
    };
    if command == Command::Version {
        // Whatever the input: the configuration's version when the plugin speaks it.
        return version(&conf_version);
    }
    let conf = match parsed {
        Ok(c) => c,
        Err(e) => {
            return failed(
                LATEST_VERSION,
                PluginError::new(
                    codes::DECODING_FAILURE,
                    format!("the network configuration is not valid JSON: {e}"),
                ),
            );
        }
    };
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return failed(
            LATEST_VERSION,
            PluginError::new(
                codes::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {:?} is not supported: use one of {}",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ),
        );
    }
    let mut stderr = String::new();
    let result = match command {
        Command::Add => add(env, &conf).await.map(Some),
        Command::Del => del(env, &conf, &mut stderr).await.map(|()| None),
        Command::Check => check(env, &conf).await.map(|()| None),
        Command::Status => status(&conf).await.map(|()| None),
        Command::Gc => gc(&conf).await.map(|()| None),
        // Answered above.
        Command::Version => Ok(None),
    };
    match result {
        Ok(Some(value)) => Outcome {
            stdout: to_json(&value),
            stderr,
            status: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            stderr,
            status: 0,
        },
        Err(e) => failed(&conf_version, e),
    }
}

/// The error object for `e`, exit status 1.
pub(super) fn failed(version: &str, e: PluginError) -> Outcome {
    let body = CniError {
        cni_version: version.to_owned(),
        code: e.code,
        msg: e.msg,
        details: e.details,
    };
    Outcome {
        stdout: to_json(&body),
        stderr: String::new(),
        status: 1,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // These types always serialize.
    let mut text = serde_json::to_string(value).unwrap_or_default();
    text.push('\n');
    text
}

/// The answer to `VERSION`, in `version` (the configuration's when the plugin speaks it).
fn version(version: &str) -> Outcome {
    Outcome {
        stdout: to_json(&VersionInfo {
            cni_version: version.to_owned(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
        }),
        stderr: String::new(),
        status: 0,
    }
}

/// The agent's client, from the configuration's `agent`.
fn client(conf: &NetConf) -> Result<ApiClient, PluginError> {
    let text = conf.agent.as_deref().unwrap_or(ROOT_API_SOCKET);
    let addr = ApiAddr::from_str(text).map_err(|e| {
        PluginError::new(
            codes::INVALID_CONFIG,
            format!("invalid \"agent\" in the network configuration: {e}"),
        )
    })?;
    Ok(ApiClient::new(addr).with_timeout(AGENT_TIMEOUT))
}

/// How long the plugin waits for the agent: longer than an attach that waits for the
/// cluster twice (a VNI for a new network, then an address, up to 20 s each).
const AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The prevResult, parsed (a chained ADD, DEL and CHECK receive it).
fn prev_result(conf: &NetConf) -> Result<Option<CniResult>, PluginError> {
    conf.prev_result
        .as_ref()
        .map(|v| {
            serde_json::from_value::<CniResult>(v.clone()).map_err(|e| {
                PluginError::new(codes::DECODING_FAILURE, format!("invalid prevResult: {e}"))
            })
        })
        .transpose()
}

/// `CNI_IFNAME`, which must be a name the kernel takes.
fn ifname(env: &CniEnv) -> Result<&str, PluginError> {
    let ifname = env.ifname()?;
    nodecore::check_ifname(ifname)
        .map_err(|e| PluginError::new(codes::INVALID_ENVIRONMENT, format!("CNI_IFNAME: {e}")))?;
    Ok(ifname)
}

/// The cluster network the configuration names.
fn network(conf: &NetConf) -> Result<&str, PluginError> {
    let network = conf.network.as_deref().unwrap_or(&conf.name);
    if network.is_empty() {
        return Err(PluginError::new(
            codes::INVALID_CONFIG,
            "the network configuration has no \"name\" (and no \"network\")",
        ));
    }
    Ok(network)
}

/// Fields this plugin refuses rather than ignores.
fn check_fields(conf: &NetConf) -> Result<(), PluginError> {
    if conf.ipam.is_some() {
        return Err(PluginError::new(
            codes::UNSUPPORTED_FIELD,
            "\"ipam\" is not supported: the agent gives addresses from the cluster network's \
             pool, unique cluster-wide; remove the section (ask for an address with \
             runtimeConfig \"ips\" or CNI_ARGS IP=)",
        ));
    }
    Ok(())
}

/// An agent error as a CNI error.
fn agent_error(e: ClientError) -> PluginError {
    match e {
        ClientError::Connect { addr, source } => PluginError {
            code: codes::TRY_AGAIN_LATER,
            msg: format!(
                "netagent is not running here: cannot connect to its control API at {addr}"
            ),
            details: source.to_string(),
        },
        ClientError::Timeout { addr, timeout } => PluginError::new(
            codes::TRY_AGAIN_LATER,
            format!("netagent at {addr} did not answer within {timeout:?}"),
        ),
        ClientError::Api {
            status,
            code,
            message,
        } => {
            let code = match (status, code.as_deref()) {
                (400, _) => codes::INVALID_CONFIG,
                (_, Some("no_such_network")) => codes::UNKNOWN_NETWORK,
                (_, Some("address_in_use")) => codes::ADDRESS_IN_USE,
                (_, Some("pool_exhausted")) => codes::EXHAUSTED,
                (503, _) => codes::TRY_AGAIN_LATER,
                _ => codes::REFUSED,
            };
            PluginError::new(code, message)
        }
        other => PluginError::new(codes::IO_FAILURE, other.to_string()),
    }
}

/// The one address asked for, from `CNI_ARGS` `IP`, `runtimeConfig.ips` or `args.cni.ips`.
fn asked_ip(conf: &NetConf, cni_ip: Option<&str>) -> Result<Option<String>, PluginError> {
    let mut asked: Vec<(&str, &str)> = Vec::new();
    if let Some(ip) = cni_ip {
        asked.push(("CNI_ARGS IP", ip));
    }
    for ip in &conf.runtime_config.ips {
        asked.push(("runtimeConfig ips", ip));
    }
    if let Some(cni) = conf.args.as_ref().and_then(|a| a.cni.as_ref()) {
        for ip in &cni.ips {
            asked.push(("args.cni.ips", ip));
        }
    }
    let mut found: Option<Ipv4Addr> = None;
    for (source, text) in asked {
        let addr = text.split_once('/').map_or(text, |(a, _)| a);
        let ip = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ip,
            Ok(IpAddr::V6(_)) => {
                return Err(PluginError::new(
                    codes::INVALID_CONFIG,
                    format!("{source} asks for {text}: cluster networks are IPv4 only"),
                ));
            }
            Err(_) => {
                return Err(PluginError::new(
                    codes::INVALID_CONFIG,
                    format!("{source}: invalid address {text:?}"),
                ));
            }
        };
        match found {
            Some(other) if other != ip => {
                return Err(PluginError::new(
                    codes::INVALID_CONFIG,
                    format!(
                        "two addresses asked for, {other} and {ip}: one IPv4 address per network"
                    ),
                ));
            }
            _ => found = Some(ip),
        }
    }
    Ok(found.map(|ip| ip.to_string()))
}

/// The MAC asked for, from `CNI_ARGS` `MAC`, `runtimeConfig.mac` or `args.cni.mac`.
fn asked_mac(conf: &NetConf, cni_mac: Option<&str>) -> Result<Option<String>, PluginError> {
    let candidates = [
        cni_mac,
        conf.runtime_config.mac.as_deref(),
        conf.args
            .as_ref()
            .and_then(|a| a.cni.as_ref())
            .and_then(|c| c.mac.as_deref()),
    ];
    let mut found: Option<&str> = None;
    for mac in candidates.into_iter().flatten() {
        match found {
            Some(other) if !other.eq_ignore_ascii_case(mac) => {
                return Err(PluginError::new(
                    codes::INVALID_CONFIG,
                    format!("two MAC addresses asked for, {other} and {mac}"),
                ));
            }
            _ => found = Some(mac),
        }
    }
    Ok(found.map(str::to_owned))
}

async fn add(env: &CniEnv, conf: &NetConf) -> Result<CniResult, PluginError> {
    check_fields(conf)?;
    let network = network(conf)?;
    let container = env.container_id()?;
    let netns = env.netns()?;
    let ifname = ifname(env)?;
    let args = env.cni_args()?;
    let prev = prev_result(conf)?;
    let mut aliases: Vec<String> = conf
        .runtime_config
        .aliases
        .get(&conf.name)
        .cloned()
        .unwrap_or_default();
    let name = match &args.pod_name {
        Some(pod) => pod.clone(),
        None if !aliases.is_empty() => aliases.remove(0),
        None => container.chars().take(12).collect(),
    };
    let mut seen = std::collections::BTreeSet::from([name.clone()]);
    aliases.retain(|a| seen.insert(a.clone()));
    let req = AttachRequest {
        sandbox: container.to_owned(),
        netns: netns.to_owned(),
        network: network.to_owned(),
        ifname: ifname.to_owned(),
        name,
        aliases,
        ip: asked_ip(conf, args.ip.as_deref())?,
        mac: asked_mac(conf, args.mac.as_deref())?,
        subnet: conf.subnet.clone(),
    };
    let attachment = client(conf)?.attach(&req).await.map_err(agent_error)?;
    Ok(result(&conf.cni_version, &attachment, prev))
}

/// The result of an attachment in `version`'s form, added to a previous plugin's.
fn result(version: &str, a: &Attachment, prev: Option<CniResult>) -> CniResult {
    let mut out = prev.unwrap_or_else(|| CniResult {
        cni_version: version.to_owned(),
        interfaces: Vec::new(),
        ips: Vec::new(),
        routes: Vec::new(),
        dns: Dns::default(),
        extra: serde_json::Map::new(),
    });
    out.cni_version = version.to_owned();
    let index = out.interfaces.len();
    out.interfaces.push(Interface {
        name: a.ifname.clone(),
        mac: a.endpoint.mac.to_string(),
        sandbox: a.netns.display().to_string(),
        extra: serde_json::Map::new(),
    });
    let legacy = !version.starts_with('1');
    out.ips.push(IpConfig {
        version: legacy.then(|| "4".to_owned()),
        address: format!("{}/{}", a.endpoint.ip, a.endpoint.prefix_len),
        gateway: Some(a.gateway.to_string()),
        interface: Some(index),
        extra: serde_json::Map::new(),
    });
    if let Some(ns) = a.nameserver.map(|ip| ip.to_string())
        && !out.dns.nameservers.contains(&ns)
    {
        out.dns.nameservers.insert(0, ns);
    }
    out
}

async fn del(env: &CniEnv, conf: &NetConf, stderr: &mut String) -> Result<(), PluginError> {
    let network = network(conf)?;
    let container = env.container_id()?;
    let ifname = ifname(env)?;
    match client(conf)?.detach(container, network, Some(ifname)).await {
        Ok(()) => Ok(()),
        // Spec: DEL completes even when resources are missing. The agent withdraws the
        // attachments of containers whose namespace is gone once it runs again.
        Err(ClientError::Connect { addr, .. }) => {
            stderr.push_str(&format!(
                "netctl-cni: netagent is not running (no control API at {addr}): nothing to \
                 remove now; the agent withdraws the attachment when it runs again and the \
                 container's namespace is gone\n"
            ));
            Ok(())
        }
        Err(e) => Err(agent_error(e)),
    }
}

async fn check(env: &CniEnv, conf: &NetConf) -> Result<(), PluginError> {
    if !CHECK_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(PluginError::new(
            codes::INCOMPATIBLE_VERSION,
            format!(
                "CHECK needs cniVersion 0.4.0 or later, not {}",
                conf.cni_version
            ),
        ));
    }
    check_fields(conf)?;
    let network = network(conf)?;
    let container = env.container_id()?;
    let ifname = ifname(env)?;
    let Some(prev) = prev_result(conf)? else {
        return Err(PluginError::new(
            codes::INVALID_CONFIG,
            "CHECK needs the prevResult of the ADD",
        ));
    };
    let a = client(conf)?
        .attachment(container, network, true)
        .await
        .map_err(|e| match e {
            ClientError::Api {
                status: 404,
                code,
                message,
            } if code.as_deref() != Some("no_such_network") => {
                PluginError::new(codes::UNKNOWN_CONTAINER, message)
            }
            ClientError::Api {
                status: 409,
                message,
                ..
            } => PluginError::new(codes::CHECK_FAILED, message),
            e => agent_error(e),
        })?;
    let mismatch = |what: String| Err(PluginError::new(codes::CHECK_FAILED, what));
    if a.ifname != ifname {
        return mismatch(format!(
            "the attachment to network {network} is interface {}, not {ifname}",
            a.ifname
        ));
    }
    if let Some(netns) = env.netns.as_deref().filter(|n| !n.is_empty())
        && std::path::Path::new(netns) != a.netns
    {
        return mismatch(format!(
            "the attachment to network {network} is in namespace {}, not {netns}",
            a.netns.display()
        ));
    }
    let Some(index) = prev.interfaces.iter().position(|i| {
        i.name == ifname && (i.sandbox.is_empty() || i.sandbox == a.netns.display().to_string())
    }) else {
        return mismatch(format!(
            "prevResult has no interface {ifname} in the container"
        ));
    };
    let mac = &prev.interfaces[index].mac;
    if !mac.is_empty() && !mac.eq_ignore_ascii_case(&a.endpoint.mac.to_string()) {
        return mismatch(format!(
            "prevResult says MAC {mac}, the agent's endpoint has {}",
            a.endpoint.mac
        ));
    }
    let address = format!("{}/{}", a.endpoint.ip, a.endpoint.prefix_len);
    if !prev
        .ips
        .iter()
        .any(|ip| ip.address == address && ip.interface.is_none_or(|i| i == index))
    {
        return mismatch(format!(
            "prevResult does not hold the endpoint's address {address} on {ifname}"
        ));
    }
    Ok(())
}

async fn status(conf: &NetConf) -> Result<(), PluginError> {
    match client(conf)?.info().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = agent_error(e);
            Err(PluginError {
                code: codes::NOT_AVAILABLE,
                ..e
            })
        }
    }
}

/// Spec 1.1 `GC`: detaches this network's attachments that the runtime does not list and
/// whose namespace is gone. One whose namespace exists is kept: it may be another runtime's
/// on the same cluster network (an attachment does not record its runtime), and the runtime
/// that made it will DEL it.
async fn gc(conf: &NetConf) -> Result<(), PluginError> {
    let network = network(conf)?;
    let Some(valid) = &conf.valid_attachments else {
        return Ok(());
    };
    let client = client(conf)?;
    let sandboxes = client.sandboxes().await.map_err(agent_error)?;
    for sb in sandboxes {
        if sb.engine != Some(nodecore::Engine::Cni) {
            continue;
        }
        let a = match client.attachment(&sb.name, network, false).await {
            Ok(a) => a,
            Err(ClientError::Api { status: 404, .. }) => continue,
            Err(e) => return Err(agent_error(e)),
        };
        let listed = valid
            .iter()
            .any(|v| v.container_id == sb.name && v.ifname == a.ifname);
        let gone = matches!(a.netns.try_exists(), Ok(false));
        if !listed && gone {
            client
                .detach(&sb.name, network, Some(&a.ifname))
                .await
                .map_err(agent_error)?;
        }
    }
    Ok(())
}
