//! The control-API commands of `netagent`: `network`, `endpoint`, `sandbox` and `info`, thin
//! clients of a running agent's control API ([`crate::api`]).
//!
//! The agent is found at `--api ADDR` (given after the command group, as in `netagent
//! network ls --api ADDR`, or before it, as in `netagent --api ADDR network ls`), else
//! `NETAGENT_API`, else the same default as `netagent run` (see [`default_api`]). Listings
//! are aligned text tables, `inspect` prints pretty JSON. An error the agent returns is
//! printed as `Error response from agent: <message>`; any failure exits with status 1.
//!
//! An endpoint is named `NETWORK/NAME`, or `NAME` alone when only one network of this agent
//! has an endpoint of that name, or by a prefix of its ID.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::api::{ApiClient, ClientError};
use crate::cnm::{
    DnsQuery, Endpoint, EndpointCreate, NetworkCreate, NetworkSpec, SandboxCreate, SandboxInfo,
    ServiceCreate,
};
use crate::config::ApiAddr;

/// Exit status of a failed command.
pub const EXIT_FAILURE: u8 = 1;

/// Exit status of an unusable `--api` (the status clap uses for a bad command line).
pub const EXIT_USAGE: u8 = 2;

/// The commands that talk to a running agent.
#[derive(Subcommand, Debug)]
pub enum ControlCommand {
    /// Manage networks (cluster-wide: a network created on one agent is known to all).
    Network {
        /// Where the agent listens.
        #[command(flatten)]
        api: ApiArg,
        /// What to do.
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// Manage this agent's endpoints (a container's attachment to a network).
    Endpoint {
        /// Where the agent listens.
        #[command(flatten)]
        api: ApiArg,
        /// What to do.
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Manage this agent's sandboxes (a container's network namespace).
    Sandbox {
        /// Where the agent listens.
        #[command(flatten)]
        api: ApiArg,
        /// What to do.
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Service discovery: what a container's DNS query gets.
    Dns {
        /// Where the agent listens.
        #[command(flatten)]
        api: ApiArg,
        /// What to do.
        #[command(subcommand)]
        command: DnsCommand,
    },
    /// Address management: who owns a network's address blocks; reclaiming the space of a
    /// node gone for good.
    Ipam {
        /// Where the agent listens.
        #[command(flatten)]
        api: ApiArg,
        /// What to do.
        #[command(subcommand)]
        command: IpamCommand,
    },
    /// Show the agent's node name, address and cluster size.
    Info {
        /// Where the agent listens.
        #[command(flatten)]
        api: ApiArg,
    },
}

/// The `--api` option of a command group.
#[derive(Args, Debug, Clone, Default)]
pub struct ApiArg {
    /// The agent's control API: unix:/PATH or /PATH, tcp:IP:PORT or IP:PORT [default:
    /// NETAGENT_API, else the default of netagent run].
    #[arg(long, global = true, value_name = "ADDR")]
    pub api: Option<String>,
}

/// `netagent network ...`.
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network; prints its ID.
    Create {
        /// The driver (only overlay).
        #[arg(long, short = 'd', default_value = "overlay")]
        driver: String,
        /// The IPv4 subnet, CIDR (prefix length 8 to 30).
        #[arg(long)]
        subnet: String,
        /// The VXLAN ID, 1 to 16777215 [default: the lowest free one from 4096].
        #[arg(long)]
        vni: Option<u32>,
        /// The network's name.
        name: String,
    },
    /// List the networks of the cluster.
    #[command(visible_alias = "list")]
    Ls,
    /// Show networks (by name, ID or ID prefix) as JSON.
    Inspect {
        /// The networks.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks (refused while this agent has endpoints on one).
    #[command(visible_alias = "remove")]
    Rm {
        /// The networks.
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

/// `netagent endpoint ...`.
#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Create an endpoint on a network; prints its ID.
    Create {
        /// The network (name or ID).
        network: String,
        /// The endpoint's name.
        name: String,
        /// The IPv4 address [default: allocated from the subnet].
        #[arg(long)]
        ip: Option<String>,
        /// The MAC address [default: 02:42 and the four bytes of the address].
        #[arg(long)]
        mac: Option<String>,
        /// The service this endpoint is a task of.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// The service's virtual IP.
        #[arg(long, requires = "service")]
        vip: Option<String>,
        /// A container-level network alias (repeatable): resolves to this endpoint.
        #[arg(long = "alias", value_name = "ALIAS")]
        aliases: Vec<String>,
        /// A service-level alias (repeatable): resolves like the service name.
        #[arg(long = "service-alias", value_name = "ALIAS", requires = "service")]
        service_aliases: Vec<String>,
    },
    /// List this agent's endpoints.
    #[command(visible_alias = "list")]
    Ls {
        /// Only the endpoints of this network.
        #[arg(long)]
        network: Option<String>,
    },
    /// Show endpoints as JSON.
    Inspect {
        /// The endpoints (NETWORK/NAME, NAME or ID prefix).
        #[arg(required = true)]
        endpoints: Vec<String>,
    },
    /// Remove endpoints (refused while joined to a sandbox).
    #[command(visible_alias = "remove")]
    Rm {
        /// The endpoints (NETWORK/NAME, NAME or ID prefix).
        #[arg(required = true)]
        endpoints: Vec<String>,
    },
    /// Join an endpoint to a sandbox, publishing it to the cluster.
    Join {
        /// The endpoint (NETWORK/NAME, NAME or ID prefix).
        endpoint: String,
        /// The sandbox.
        sandbox: String,
        /// The interface's name in the sandbox; default: the first free of eth0, eth1, ...
        #[arg(long)]
        ifname: Option<String>,
    },
    /// Take an endpoint out of its sandbox, withdrawing it from the cluster.
    Leave {
        /// The endpoint (NETWORK/NAME, NAME or ID prefix).
        endpoint: String,
    },
    /// Drain a service task: every node stops resolving its names (it stays reachable).
    Disable {
        /// The endpoint (NETWORK/NAME, NAME or ID prefix).
        endpoint: String,
    },
    /// Undo `disable`: the task's names resolve again.
    Enable {
        /// The endpoint (NETWORK/NAME, NAME or ID prefix).
        endpoint: String,
    },
}

/// `netagent sandbox ...`.
#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Create a sandbox.
    Create {
        /// The sandbox's name.
        name: String,
        /// The absolute path of its network namespace (need not exist yet).
        #[arg(long)]
        netns: PathBuf,
        /// The container's resolv.conf, which the agent writes to point at the embedded DNS
        /// server (127.0.0.11) when the first endpoint joins [default: not managed].
        #[arg(long, value_name = "PATH")]
        resolv_conf: Option<PathBuf>,
    },
    /// List this agent's sandboxes.
    #[command(visible_alias = "list")]
    Ls,
    /// Show sandboxes as JSON.
    Inspect {
        /// The sandboxes.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// Remove sandboxes (refused while an endpoint is joined).
    #[command(visible_alias = "remove")]
    Rm {
        /// The sandboxes.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
}

/// `netagent dns ...`.
#[derive(Subcommand, Debug)]
pub enum DnsCommand {
    /// Show what a container on a network (or in a sandbox) gets for a name, or for an
    /// address (PTR), from this agent's records. Exit status 1 when the name is unknown here
    /// (the embedded server would forward the query upstream).
    Lookup {
        /// The name, or an IP address for a reverse lookup.
        name: String,
        /// Resolve as a container on this network (name or ID).
        #[arg(long, required_unless_present = "sandbox", conflicts_with = "sandbox")]
        network: Option<String>,
        /// Resolve as a container in this sandbox.
        #[arg(long)]
        sandbox: Option<String>,
        /// A, AAAA or PTR [default: PTR for an address, else A].
        #[arg(long = "type", value_name = "TYPE")]
        record_type: Option<String>,
    },
}

/// `netagent ipam ...`.
#[derive(Subcommand, Debug)]
pub enum IpamCommand {
    /// Show who owns a network's address blocks, as this agent's replica says.
    Show {
        /// The network (name or ID).
        network: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take over the address and VNI blocks of a node whose host is gone for good and will
    /// not come back with its state (refused while the node is alive). Its blocks go to the
    /// live node owning the most. If the node was only cut off and still allocates, two
    /// nodes own its blocks: wipe its state directory before it ever runs again.
    Reclaim {
        /// The node's configured name.
        node: String,
    },
}

impl ControlCommand {
    fn api(&self) -> Option<&str> {
        match self {
            Self::Network { api, .. }
            | Self::Endpoint { api, .. }
            | Self::Sandbox { api, .. }
            | Self::Ipam { api, .. }
            | Self::Dns { api, .. }
            | Self::Info { api } => api.api.as_deref(),
        }
    }
}

/// Runs a command against the agent at the command's `--api`, else `outer_api` (the
/// top-level `--api` or `NETAGENT_API`), else [`default_api`]. Prints the result to stdout and
/// errors to stderr; returns the exit status.
pub async fn run(outer_api: Option<String>, command: ControlCommand) -> u8 {
    let addr = match command.api().map(str::to_owned).or(outer_api) {
        Some(text) => match text.parse::<ApiAddr>() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("netagent: {e}");
                return EXIT_USAGE;
            }
        },
        None => match default_api() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("netagent: {e}");
                return EXIT_USAGE;
            }
        },
    };
    let client = ApiClient::new(addr);
    let mut out = Output::default();
    execute(&client, command, &mut out).await;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if out.failed { EXIT_FAILURE } else { 0 }
}

/// The default control-API address, the same as `netagent run`'s
/// ([`crate::config::default_api`]).
pub fn default_api() -> Result<ApiAddr, String> {
    crate::config::default_api().map_err(|e| format!("{e}; pass --api or set NETAGENT_API"))
}

/// What a command printed and whether it failed.
#[derive(Debug, Default)]
struct Output {
    stdout: String,
    stderr: String,
    failed: bool,
}

impl Output {
    fn line(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(self.stdout, "{text}");
    }

    fn fail(&mut self, error: &CliError) {
        let _ = writeln!(self.stderr, "{error}");
        self.failed = true;
    }

    fn json<T: serde::Serialize>(&mut self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => self.line(text),
            Err(e) => self.fail(&CliError::Local(format!("cannot print JSON: {e}"))),
        }
    }
}

/// A failed command, as printed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The agent refused.
    #[error("Error response from agent: {0}")]
    Agent(String),
    /// The agent could not be reached or answered nonsense.
    #[error("netagent: {0}. Is the agent running?")]
    Unreachable(ClientError),
    /// The command is wrong before reaching the agent.
    #[error("Error: {0}")]
    Local(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { message, .. } => Self::Agent(message),
            ClientError::Connect { .. } => Self::Unreachable(e),
            other => Self::Local(other.to_string()),
        }
    }
}

async fn execute(client: &ApiClient, command: ControlCommand, out: &mut Output) {
    let result = match command {
        ControlCommand::Network { command, .. } => network(client, command, out).await,
        ControlCommand::Endpoint { command, .. } => endpoint(client, command, out).await,
        ControlCommand::Sandbox { command, .. } => sandbox(client, command, out).await,
        ControlCommand::Dns { command, .. } => dns(client, command, out).await,
        ControlCommand::Ipam { command, .. } => ipam(client, command, out).await,
        ControlCommand::Info { .. } => info(client, out).await,
    };
    if let Err(e) = result {
        out.fail(&e);
    }
}

async fn network(
    client: &ApiClient,
    command: NetworkCommand,
    out: &mut Output,
) -> Result<(), CliError> {
    match command {
        NetworkCommand::Create {
            driver,
            subnet,
            vni,
            name,
        } => {
            let req = NetworkCreate {
                name,
                driver: Some(driver),
                subnet,
                vni,
            };
            out.line(client.create_network(&req).await?.id);
        }
        NetworkCommand::Ls => out
            .stdout
            .push_str(&network_table(&client.networks().await?)),
        NetworkCommand::Inspect { networks } => {
            let mut found = Vec::new();
            for reference in networks {
                match client.network(&reference).await {
                    Ok(spec) => found.push(spec),
                    Err(e) => out.fail(&e.into()),
                }
            }
            out.json(&found);
        }
        NetworkCommand::Rm { networks } => {
            for reference in networks {
                match client.remove_network(&reference).await {
                    Ok(()) => out.line(reference),
                    Err(e) => out.fail(&e.into()),
                }
            }
        }
    }
    Ok(())
}

async fn endpoint(
    client: &ApiClient,
    command: EndpointCommand,
    out: &mut Output,
) -> Result<(), CliError> {
    match command {
        EndpointCommand::Create {
            network,
            name,
            ip,
            mac,
            service,
            vip,
            aliases,
            service_aliases,
        } => {
            let req = EndpointCreate {
                network,
                name,
                ip,
                mac,
                service: service.map(|name| ServiceCreate {
                    name,
                    vip,
                    aliases: service_aliases,
                }),
                aliases,
            };
            out.line(client.create_endpoint(&req).await?.id);
        }
        EndpointCommand::Ls { network } => {
            let list = client.endpoints(network.as_deref()).await?;
            out.stdout.push_str(&endpoint_table(&list));
        }
        EndpointCommand::Inspect { endpoints } => {
            let mut found = Vec::new();
            for reference in endpoints {
                match find_endpoint(client, &reference).await {
                    Ok((network, name)) => match client.endpoint(&network, &name).await {
                        Ok(e) => found.push(e),
                        Err(e) => out.fail(&e.into()),
                    },
                    Err(e) => out.fail(&e),
                }
            }
            out.json(&found);
        }
        EndpointCommand::Rm { endpoints } => {
            for reference in endpoints {
                let removed = match find_endpoint(client, &reference).await {
                    Ok((network, name)) => client
                        .remove_endpoint(&network, &name)
                        .await
                        .map_err(CliError::from),
                    Err(e) => Err(e),
                };
                match removed {
                    Ok(()) => out.line(reference),
                    Err(e) => out.fail(&e),
                }
            }
        }
        EndpointCommand::Join {
            endpoint,
            sandbox,
            ifname,
        } => {
            let (network, name) = find_endpoint(client, &endpoint).await?;
            client
                .join_with(
                    &network,
                    &name,
                    &crate::cnm::JoinRequest { sandbox, ifname },
                )
                .await?;
        }
        EndpointCommand::Leave { endpoint } => {
            let (network, name) = find_endpoint(client, &endpoint).await?;
            client.leave(&network, &name).await?;
        }
        EndpointCommand::Disable { endpoint } => {
            let (network, name) = find_endpoint(client, &endpoint).await?;
            client.set_service_enabled(&network, &name, false).await?;
        }
        EndpointCommand::Enable { endpoint } => {
            let (network, name) = find_endpoint(client, &endpoint).await?;
            client.set_service_enabled(&network, &name, true).await?;
        }
    }
    Ok(())
}

async fn dns(client: &ApiClient, command: DnsCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        DnsCommand::Lookup {
            name,
            network,
            sandbox,
            record_type,
        } => {
            let query = DnsQuery {
                name,
                network,
                sandbox,
                record_type,
            };
            let answer = client.dns_lookup(&query).await?;
            let on = answer.networks.join(", ");
            match answer.outcome.as_str() {
                "answer" => {
                    for a in &answer.answers {
                        out.line(format!("{} {} {a}", answer.name, answer.record_type));
                    }
                }
                "nodata" => out.line(format!(
                    "{}: no {} record on {on} (the name exists: a container gets an empty answer)",
                    answer.name, answer.record_type
                )),
                _ => {
                    return Err(CliError::Agent(format!(
                        "{}: no {} record on {on}; a container's query would be forwarded to the upstream resolvers",
                        answer.name, answer.record_type
                    )));
                }
            }
        }
    }
    Ok(())
}

async fn sandbox(
    client: &ApiClient,
    command: SandboxCommand,
    out: &mut Output,
) -> Result<(), CliError> {
    match command {
        SandboxCommand::Create {
            name,
            netns,
            resolv_conf,
        } => {
            let req = SandboxCreate {
                name,
                netns: netns.to_string_lossy().into_owned(),
                resolv_conf: resolv_conf.map(|p| p.to_string_lossy().into_owned()),
                engine: None,
            };
            out.line(client.create_sandbox(&req).await?.name);
        }
        SandboxCommand::Ls => out
            .stdout
            .push_str(&sandbox_table(&client.sandboxes().await?)),
        SandboxCommand::Inspect { sandboxes } => {
            let mut found = Vec::new();
            for name in sandboxes {
                match client.sandbox(&name).await {
                    Ok(s) => found.push(s),
                    Err(e) => out.fail(&e.into()),
                }
            }
            out.json(&found);
        }
        SandboxCommand::Rm { sandboxes } => {
            for name in sandboxes {
                match client.remove_sandbox(&name).await {
                    Ok(()) => out.line(name),
                    Err(e) => out.fail(&e.into()),
                }
            }
        }
    }
    Ok(())
}

async fn ipam(client: &ApiClient, command: IpamCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        IpamCommand::Show { network, json } => {
            let pool = client.pool(&network).await?;
            if json {
                out.json(&pool);
            } else {
                out.line(format!(
                    "{} {} ({} addresses per block)",
                    pool.network, pool.subnet, pool.block_size
                ));
                out.stdout.push_str(&table(
                    &["OWNER", "BLOCKS"],
                    pool.owners
                        .iter()
                        .map(|(owner, n)| vec![owner.clone(), n.to_string()])
                        .collect(),
                ));
            }
        }
        IpamCommand::Reclaim { node } => {
            let answer = client.reclaim(&node).await?;
            out.line(format!(
                "reclaimed {} blocks of {}",
                answer.blocks, answer.node
            ));
        }
    }
    Ok(())
}

async fn info(client: &ApiClient, out: &mut Output) -> Result<(), CliError> {
    let info = client.info().await?;
    out.stdout.push_str(&table(
        &[],
        vec![
            vec!["Name:".into(), info.name],
            vec!["Node:".into(), info.node],
            vec!["Advertise:".into(), info.advertise.to_string()],
            vec!["Members:".into(), info.members.to_string()],
            vec!["Networks:".into(), info.networks.to_string()],
            vec!["Endpoints:".into(), info.endpoints.to_string()],
            vec!["Sandboxes:".into(), info.sandboxes.to_string()],
        ],
    ));
    Ok(())
}

/// Resolves an endpoint reference to (network, name): `NETWORK/NAME` as given, else a name
/// unique among this agent's endpoints, else a unique ID prefix.
async fn find_endpoint(client: &ApiClient, reference: &str) -> Result<(String, String), CliError> {
    if let Some((network, name)) = reference.split_once('/') {
        return Ok((network.to_owned(), name.to_owned()));
    }
    let all = client.endpoints(None).await?;
    let pick = |matches: Vec<&Endpoint>| match matches.as_slice() {
        [one] => Ok(Some((one.network.clone(), one.name.clone()))),
        [] => Ok(None),
        many => Err(CliError::Local(format!(
            "endpoint {reference} is ambiguous (in networks {}); use NETWORK/NAME",
            many.iter()
                .map(|e| e.network.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    };
    if let Some(found) = pick(all.iter().filter(|e| e.name == reference).collect())? {
        return Ok(found);
    }
    if let Some(found) = pick(all.iter().filter(|e| e.id.starts_with(reference)).collect())? {
        return Ok(found);
    }
    Err(CliError::Local(format!("endpoint {reference} not found")))
}

/// `network ls`: NETWORK ID (12 characters), NAME, DRIVER, SUBNET, VNI.
fn network_table(list: &[NetworkSpec]) -> String {
    table(
        &["NETWORK ID", "NAME", "DRIVER", "SUBNET", "VNI"],
        list.iter()
            .map(|n| {
                vec![
                    short(&n.id),
                    n.name.clone(),
                    n.driver.clone(),
                    n.subnet.to_string(),
                    n.vni.to_string(),
                ]
            })
            .collect(),
    )
}

/// `endpoint ls`: ENDPOINT ID, NAME, NETWORK, IP, MAC, SANDBOX.
fn endpoint_table(list: &[Endpoint]) -> String {
    table(
        &["ENDPOINT ID", "NAME", "NETWORK", "IP", "MAC", "SANDBOX"],
        list.iter()
            .map(|e| {
                vec![
                    short(&e.id),
                    e.name.clone(),
                    e.network.clone(),
                    format!("{}/{}", e.ip, e.prefix_len),
                    e.mac.to_string(),
                    e.sandbox.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

/// `sandbox ls`: NAME, NETNS, ENDPOINTS.
fn sandbox_table(list: &[SandboxInfo]) -> String {
    table(
        &["NAME", "NETNS", "ENDPOINTS"],
        list.iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.netns.display().to_string(),
                    s.endpoints.join(","),
                ]
            })
            .collect(),
    )
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Left-aligned columns three spaces apart (as docker's tabwriter), no trailing spaces.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    if !headers.is_empty() {
        all.push(headers.iter().map(|h| (*h).to_owned()).collect());
    }
    all.extend(rows);
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            all.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &all {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned() {
        let spec = NetworkSpec {
            name: "blue".into(),
            id: "0123456789abcdef".repeat(4),
            driver: "overlay".into(),
            subnet: "198.18.10.0/24".parse().unwrap(),
            gateway: "198.18.10.1".parse().unwrap(),
            vni: 4096,
            created_by: "n1".into(),
        };
        let other = NetworkSpec {
            name: "a-much-longer-name".into(),
            vni: 4097,
            ..spec.clone()
        };
        assert_eq!(
            network_table(&[spec, other]),
            "NETWORK ID     NAME                 DRIVER    SUBNET           VNI\n\
             0123456789ab   blue                 overlay   198.18.10.0/24   4096\n\
             0123456789ab   a-much-longer-name   overlay   198.18.10.0/24   4097\n"
        );
        assert_eq!(
            network_table(&[]),
            "NETWORK ID   NAME   DRIVER   SUBNET   VNI\n"
        );
    }

    #[test]
    fn empty_last_column_leaves_no_trailing_space() {
        let text = table(&["A", "B"], vec![vec!["x".into(), String::new()]]);
        assert_eq!(text, "A   B\nx\n");
    }
}
