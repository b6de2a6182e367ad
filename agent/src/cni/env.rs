//! The plugin's environment: the `CNI_*` variables a runtime sets, and the `CNI_ARGS` keys
//! the plugin understands.

use std::collections::BTreeMap;

use super::PluginError;
use super::wire::codes;

/// The operation a runtime asks for (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Say which spec versions the plugin speaks.
    Version,
    /// Spec 1.1: whether the plugin can attach containers now.
    Status,
    /// Spec 1.1: detach what is not in `cni.dev/valid-attachments`.
    Gc,
}

/// What the runtime set in the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Option<String>,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`.
    pub args: Option<String>,
}

impl CniEnv {
    /// Reads the variables from the process environment (a value that is not UTF-8 counts
    /// as absent).
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        Self {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
        }
    }

    /// The command.
    pub fn command(&self) -> Result<Command, PluginError> {
        match self.command.as_deref() {
            Some("ADD") => Ok(Command::Add),
            Some("DEL") => Ok(Command::Del),
            Some("CHECK") => Ok(Command::Check),
            Some("VERSION") => Ok(Command::Version),
            Some("STATUS") => Ok(Command::Status),
            Some("GC") => Ok(Command::Gc),
            Some(other) => Err(invalid_env(format!(
                "unknown CNI_COMMAND {other:?}: ADD, DEL, CHECK, VERSION, STATUS or GC"
            ))),
            None => Err(invalid_env(
                "CNI_COMMAND is not set: this program is a CNI plugin, run by a container \
                 runtime (see the README's \"With Podman (CNI)\")"
                    .into(),
            )),
        }
    }

    /// `CNI_CONTAINERID`, which must be set.
    pub fn container_id(&self) -> Result<&str, PluginError> {
        required(self.container_id.as_deref(), "CNI_CONTAINERID")
    }

    /// `CNI_IFNAME`, which must be set.
    pub fn ifname(&self) -> Result<&str, PluginError> {
        required(self.ifname.as_deref(), "CNI_IFNAME")
    }

    /// `CNI_NETNS`, which must be set.
    pub fn netns(&self) -> Result<&str, PluginError> {
        required(self.netns.as_deref(), "CNI_NETNS")
    }

    /// `CNI_ARGS`, parsed.
    pub fn cni_args(&self) -> Result<CniArgs, PluginError> {
        CniArgs::parse(self.args.as_deref().unwrap_or(""))
    }
}

fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, PluginError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(invalid_env(format!("{name} is not set"))),
    }
}

fn invalid_env(msg: String) -> PluginError {
    PluginError::new(codes::INVALID_ENVIRONMENT, msg)
}

/// The keys of `CNI_ARGS` the plugin uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `IP`: the address asked for (Podman's `--ip`).
    pub ip: Option<String>,
    /// `MAC`: the MAC asked for (Podman's `--mac-address`).
    pub mac: Option<String>,
    /// `K8S_POD_NAME`: the pod's (Podman: the container's) name.
    pub pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
}

/// Keys runtimes pass that the plugin knowingly does not use.
const KNOWN_UNUSED: [&str; 3] = ["K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID", "IgnoreUnknown"];

impl CniArgs {
    /// Parses `KEY=VALUE;KEY=VALUE`. An unknown key is refused unless `IgnoreUnknown` is
    /// `1` or `true` (CNI conventions), so a misspelt `IP` is not silently dropped.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let mut pairs = BTreeMap::new();
        for item in text.split(';').filter(|i| !i.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(invalid_env(format!(
                    "invalid CNI_ARGS item {item:?}: expected KEY=VALUE"
                )));
            };
            pairs.insert(key.to_owned(), value.to_owned());
        }
        let ignore_unknown = pairs
            .get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let mut args = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "IP" => args.ip = Some(value),
                "MAC" => args.mac = Some(value),
                "K8S_POD_NAME" => args.pod_name = Some(value),
                "K8S_POD_NAMESPACE" => args.pod_namespace = Some(value),
                k if KNOWN_UNUSED.contains(&k) || ignore_unknown => {}
                _ => {
                    return Err(invalid_env(format!(
                        "unknown CNI_ARGS key {key:?}: this plugin understands IP, MAC, \
                         K8S_POD_NAME and K8S_POD_NAMESPACE (IgnoreUnknown=1 ignores others)"
                    )));
                }
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAME=web;IP=198.18.1.5;MAC=02:00:00:00:00:01;X=y",
        )
        .unwrap();
        assert_eq!(a.pod_name.as_deref(), Some("web"));
        assert_eq!(a.ip.as_deref(), Some("198.18.1.5"));
        assert_eq!(a.mac.as_deref(), Some("02:00:00:00:00:01"));
    }

    #[test]
    fn unknown_keys_are_refused_unless_ignored() {
        let e = CniArgs::parse("IPP=198.18.1.5").unwrap_err();
        assert_eq!(e.code, codes::INVALID_ENVIRONMENT);
        assert!(e.msg.contains("IPP"), "{}", e.msg);
        assert!(CniArgs::parse("noequals").is_err());
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    #[test]
    fn commands() {
        let env = |c: &str| CniEnv {
            command: Some(c.into()),
            ..CniEnv::default()
        };
        assert_eq!(env("ADD").command().unwrap(), Command::Add);
        assert_eq!(env("GC").command().unwrap(), Command::Gc);
        assert_eq!(env("add").command().unwrap_err().code, 4);
        assert_eq!(CniEnv::default().command().unwrap_err().code, 4);
    }
}
