//! The environment as a source of configuration: `NETAGENT_<FIELD>` variables, parsed by
//! their flags' own parsers, and the `XDG_*` and `HOME` variables that host-dependent
//! defaults read.
//!
//! The environment is a value ([`Env`]) handed to the merge, so tests give one of their own;
//! only [`Env::process`] reads the process's.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::{Arg, Args, Command, FromArgMatches};

use super::flags::RunArgs;

/// Environment variables by name: the process's, or a stand-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Env(BTreeMap<OsString, OsString>);

impl Env {
    /// The process environment, read now.
    pub(super) fn process() -> Self {
        std::env::vars_os().collect()
    }

    /// The value of `name`, if set (even to the empty string).
    pub(super) fn get(&self, name: &str) -> Option<&OsStr> {
        self.0.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// `name` if it holds an absolute path (XDG says relative ones are ignored).
    pub(super) fn absolute_path(&self, name: &str) -> Option<PathBuf> {
        let path = PathBuf::from(self.get(name)?);
        path.is_absolute().then_some(path)
    }

    /// `flags` over this environment: each `NETAGENT_<FIELD>` variable whose flag is not
    /// given is parsed as that flag would be (`NETAGENT_JOIN` is comma-separated,
    /// `NETAGENT_INSECURE` takes `true`, `no`, `1`...), so a bad value gets the flag's
    /// message. A variable whose flag is given is not read at all, as clap's own `env` does.
    pub(super) fn under(&self, flags: &RunArgs) -> Result<RunArgs, clap::Error> {
        let command = RunArgs::augment_args(Command::new("netagent"));
        let mut argv = vec![OsString::from("netagent")];
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let (Some(long), Some(value)) = (arg.get_long(), self.get(&var_name(id))) else {
                continue;
            };
            if flags.is_set(id) {
                continue;
            }
            // `--flag=value` keeps a value that starts with '-' a value.
            let mut flag = OsString::from(format!("--{long}="));
            flag.push(value);
            argv.push(flag);
        }
        let matches = command.try_get_matches_from(argv)?;
        Ok(flags.clone().or(RunArgs::from_arg_matches(&matches)?))
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(vars: I) -> Self {
        Self(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Appends `[env: NETAGENT_<FIELD>]` to a flag's help, where clap's own `env` would show the
/// variable (applied to every flag of [`RunArgs`] by `mut_args`).
pub(super) fn env_help(arg: Arg) -> Arg {
    let var = var_name(arg.get_id().as_str());
    let help = match arg.get_help() {
        Some(help) => format!("{help} [env: {var}]"),
        None => format!("[env: {var}]"),
    };
    let long_help = arg
        .get_long_help()
        .map(|help| format!("{help} [env: {var}]"));
    let arg = arg.help(help);
    match long_help {
        Some(long_help) => arg.long_help(long_help),
        None => arg,
    }
}

/// The variable of the field `id`: `NETAGENT_` and the field name in upper case.
fn var_name(id: &str) -> String {
    format!("NETAGENT_{}", id.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter().copied().collect()
    }

    /// A valid value for every field's variable.
    const EVERY: [(&str, &str); 27] = [
        ("NETAGENT_CONFIG", "/etc/netagent.toml"),
        ("NETAGENT_NAME", "node-1"),
        ("NETAGENT_BIND", "127.0.0.1:7000"),
        ("NETAGENT_ADVERTISE", "192.0.2.1"),
        ("NETAGENT_JOIN", "192.0.2.2,192.0.2.3:8000"),
        ("NETAGENT_KEY_FILE", "/k"),
        ("NETAGENT_TLS_CA", "/ca.pem"),
        ("NETAGENT_TLS_CERT", "/n.pem"),
        ("NETAGENT_TLS_KEY", "/n-key.pem"),
        ("NETAGENT_PACKET_SIZE", "1000"),
        ("NETAGENT_VXLAN_PORT", "4790"),
        ("NETAGENT_API", "tcp:127.0.0.1:9000"),
        ("NETAGENT_DIAG_ADDR", "127.0.0.1:2001"),
        ("NETAGENT_INSECURE", "no"),
        ("NETAGENT_STATE_DIR", "/state"),
        ("NETAGENT_LOG_FORMAT", "json"),
        ("NETAGENT_LOG_LEVEL", "debug"),
        ("NETAGENT_CLUSTER_LABEL", "blue"),
        ("NETAGENT_FAST_FAILURE_DETECTION", "1"),
        ("NETAGENT_DNS", "off"),
        ("NETAGENT_DNS_UPSTREAMS", "198.18.0.53"),
        ("NETAGENT_DNS_FORWARD", "true"),
        ("NETAGENT_VIP_BALANCER", "false"),
        ("NETAGENT_DNS_TTL", "30"),
        ("NETAGENT_DOCKER_PLUGIN", "netctl"),
        ("NETAGENT_DOCKER_PLUGIN_DIR", "/run/docker/plugins"),
        ("NETAGENT_DOCKER_API", "/var/run/docker.sock"),
    ];

    #[test]
    fn every_flag_has_a_variable() {
        let args = env(&EVERY).under(&RunArgs::default()).unwrap();
        let command = RunArgs::augment_args(Command::new("netagent"));
        for arg in command.get_arguments() {
            assert!(args.is_set(arg.get_id().as_str()), "{}", arg.get_id());
        }
        assert_eq!(command.get_arguments().count(), EVERY.len());
        assert_eq!(args.join, ["192.0.2.2", "192.0.2.3:8000"]);
        assert_eq!(args.insecure, Some(false));
        assert_eq!(args.fast_failure_detection, Some(true));
        assert_eq!(args.log_format, Some(crate::config::LogFormat::Json));
    }

    #[test]
    fn a_given_flag_hides_its_variable() {
        let flags = RunArgs {
            packet_size: Some(600),
            join: vec!["192.0.2.9".into()],
            ..RunArgs::default()
        };
        let vars = env(&[
            ("NETAGENT_PACKET_SIZE", "not a number"),
            ("NETAGENT_JOIN", "192.0.2.7"),
            ("NETAGENT_VXLAN_PORT", "4790"),
            ("OTHER", "ignored"),
        ]);
        let args = vars.under(&flags).unwrap();
        assert_eq!(args.packet_size, Some(600));
        assert_eq!(args.join, ["192.0.2.9"]);
        assert_eq!(args.vxlan_port, Some(4790));
    }

    #[test]
    fn a_bad_value_gets_the_flags_message() {
        let err = env(&[("NETAGENT_PACKET_SIZE", "lots")])
            .under(&RunArgs::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "invalid value 'lots' for '--packet-size <BYTES>': invalid packet_size: lots"
            ),
            "{err}"
        );
        let err = env(&[("NETAGENT_INSECURE", "maybe")])
            .under(&RunArgs::default())
            .unwrap_err();
        assert!(err.to_string().contains("--insecure"), "{err}");
    }

    #[test]
    fn absolute_paths_only() {
        let vars = env(&[("XDG_STATE_HOME", "relative"), ("HOME", "/home/u")]);
        assert_eq!(vars.absolute_path("XDG_STATE_HOME"), None);
        assert_eq!(vars.absolute_path("HOME"), Some("/home/u".into()));
        assert_eq!(vars.absolute_path("XDG_RUNTIME_DIR"), None);
    }
}
