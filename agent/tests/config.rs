//! `netagent run` configuration: sources and their precedence, validation messages, the
//! example file, key files and the loading of security material.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent::config::{
    AgentConfig, ApiAddr, ConfigError, LogFormat, RunArgs, SecurityConfig, example_toml, parse_keys,
};
use clap::Parser;
use cluster::crypto::Key;
use cluster::shell::Security;

mod common;
use common::scratch;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

/// Every field of the file, in the order of the documentation.
const FIELDS: [&str; 26] = [
    "name",
    "bind",
    "advertise",
    "join",
    "key_file",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "packet_size",
    "vxlan_port",
    "api",
    "diag_addr",
    "insecure",
    "state_dir",
    "log_format",
    "log_level",
    "cluster_label",
    "fast_failure_detection",
    "dns",
    "dns_upstreams",
    "dns_forward",
    "dns_ttl",
    "vip_balancer",
    "docker_plugin",
    "docker_plugin_dir",
    "docker_api",
];

/// Flags that make an otherwise default configuration valid (the state directory is given
/// because its default needs HOME or XDG_STATE_HOME when not root).
const MINIMAL: [&str; 5] = [
    "--insecure",
    "--advertise",
    "192.0.2.1",
    "--state-dir",
    "/var/tmp/netagent-test",
];

fn try_args(flags: &[&str]) -> Result<RunArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("netagent").chain(flags.iter().copied())).map(|c| c.run)
}

fn args(flags: &[&str]) -> RunArgs {
    try_args(flags).expect("flags parse")
}

fn load(flags: &[&str], file: Option<&str>) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_sources(&args(flags), file)
}

fn ok(flags: &[&str], file: Option<&str>) -> AgentConfig {
    load(flags, file).expect("configuration accepted")
}

fn err(flags: &[&str], file: Option<&str>) -> String {
    load(flags, file)
        .expect_err("configuration refused")
        .to_string()
}

fn with_minimal<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    MINIMAL.iter().chain(flags).copied().collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

#[test]
fn defaults() {
    let c = ok(&MINIMAL, None);
    assert_eq!(c.bind, addr("0.0.0.0:7946"));
    assert_eq!(c.advertise, addr("192.0.2.1:7946"));
    assert!(c.join.is_empty());
    assert_eq!(c.security, SecurityConfig::Insecure);
    assert_eq!(c.packet_size, 1400);
    assert_eq!(c.vxlan_port, 4789);
    assert_eq!(c.diag_addr, addr("127.0.0.1:2000"));
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.cluster_label, "netagent");
    assert!(!c.fast_failure_detection);
    assert!(!c.name.is_empty());
    assert!(matches!(c.api, ApiAddr::Unix(_)), "{}", c.api);

    let node = c.node_config();
    assert_eq!(node.db.packet_size, 1400);
    assert_eq!(node.validate(), Ok(()));
}

#[test]
fn flag_beats_file_beats_default() {
    let file =
        "packet_size = 1000\nvxlan_port = 4000\nlog_format = \"json\"\nname = \"from-file\"\n";
    let c = ok(
        &with_minimal(&["--packet-size", "1200", "--name", "from-flag"]),
        Some(file),
    );
    assert_eq!(c.packet_size, 1200);
    assert_eq!(c.name, "from-flag");
    assert_eq!(c.vxlan_port, 4000);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.log_level, "info");

    // A boolean set in the file can be turned off by a flag.
    let c = ok(
        &with_minimal(&["--fast-failure-detection=false"]),
        Some("fast_failure_detection = true"),
    );
    assert!(!c.fast_failure_detection);
    let c = ok(&MINIMAL, Some("fast_failure_detection = true"));
    assert!(c.fast_failure_detection);
    assert_eq!(
        c.node_config().swim.probe_period,
        cluster::NodeConfig::fast().swim.probe_period
    );

    // A join list given by flags replaces the file's.
    let c = ok(
        &with_minimal(&["--join", "192.0.2.9"]),
        Some("join = [\"192.0.2.8\"]"),
    );
    assert_eq!(c.join, vec![addr("192.0.2.9:7946")]);
    let c = ok(&MINIMAL, Some("join = [\"192.0.2.8\"]"));
    assert_eq!(c.join, vec![addr("192.0.2.8:7946")]);
}

/// The environment's place in the precedence. The merge takes the environment as an input,
/// so this test gives its own rather than changing the process's.
#[test]
fn env_beats_file_and_flag_beats_env() {
    let env = [
        ("NETAGENT_PACKET_SIZE", "1100"),
        ("NETAGENT_VXLAN_PORT", "4790"),
        ("NETAGENT_JOIN", "192.0.2.7,192.0.2.8:8000"),
        ("NETAGENT_INSECURE", "true"),
        ("NETAGENT_ADVERTISE", "192.0.2.1"),
        ("NETAGENT_FAST_FAILURE_DETECTION", "false"),
        ("NETAGENT_API", "tcp:127.0.0.1:9000"),
        // The default state directory of a user other than root.
        ("HOME", "/home/netagent-test"),
    ];
    let with_env = |flags: &[&str], file: Option<&str>| {
        AgentConfig::from_env_and_file(&args(flags), env, file)
    };

    let file = "packet_size = 1000\nvxlan_port = 4000\nlog_level = \"debug\"\nfast_failure_detection = true\njoin = [\"192.0.2.99\"]\n";
    let c = with_env(&["--packet-size", "1300"], Some(file)).expect("accepted");
    assert_eq!(c.packet_size, 1300, "flag beats env");
    assert_eq!(c.vxlan_port, 4790, "env beats file");
    assert_eq!(c.log_level, "debug", "file beats default");
    assert_eq!(c.log_format, LogFormat::Text, "default");
    assert!(!c.fast_failure_detection, "env false beats file true");
    assert_eq!(c.join, vec![addr("192.0.2.7:7946"), addr("192.0.2.8:8000")]);
    assert_eq!(c.security, SecurityConfig::Insecure);
    assert_eq!(c.advertise, addr("192.0.2.1:7946"));
    assert_eq!(c.api, ApiAddr::Tcp(addr("127.0.0.1:9000")));

    let c = with_env(&["--fast-failure-detection"], None).expect("accepted");
    assert!(c.fast_failure_detection, "flag beats env");
    assert_eq!(c.packet_size, 1100, "env beats default");

    // A bad variable gets its flag's message, unless the flag is given.
    let bad = [("NETAGENT_PACKET_SIZE", "lots")];
    let e = AgentConfig::from_env_and_file(&args(&MINIMAL), bad, None)
        .expect_err("bad variable")
        .to_string();
    assert!(
        e.contains("invalid packet_size: lots (allowed: 500..=65507 bytes)"),
        "{e}"
    );
    let c =
        AgentConfig::from_env_and_file(&args(&with_minimal(&["--packet-size", "600"])), bad, None)
            .expect("the flag hides the variable");
    assert_eq!(c.packet_size, 600);
}

/// `netagent run` reads its own process environment (the one check that is not in-process).
#[test]
fn netagent_reads_its_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_netagent"))
        .arg("run")
        .args(MINIMAL)
        .env_clear()
        .env("NETAGENT_PACKET_SIZE", "499")
        .output()
        .expect("run netagent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid packet_size: 499 (allowed: 500..=65507 bytes)"),
        "{stderr}"
    );
}

#[test]
fn packet_size_out_of_range_refused() {
    let expected = "invalid packet_size: 499 (allowed: 500..=65507 bytes)";
    assert_eq!(
        err(&with_minimal(&["--packet-size", "499"]), None),
        expected
    );
    assert_eq!(err(&MINIMAL, Some("packet_size = 499")), expected);
    assert_eq!(
        err(&MINIMAL, Some("packet_size = 65508")),
        "invalid packet_size: 65508 (allowed: 500..=65507 bytes)"
    );
    assert_eq!(
        err(&MINIMAL, Some("packet_size = -1")),
        "invalid packet_size: -1 (allowed: 500..=65507 bytes)"
    );
    let clap = try_args(&["--packet-size", "lots"]).expect_err("not a number");
    assert!(
        clap.to_string()
            .contains("invalid packet_size: lots (allowed: 500..=65507 bytes)"),
        "{clap}"
    );
    assert_eq!(
        ok(&with_minimal(&["--packet-size", "500"]), None).packet_size,
        500
    );
}

#[test]
fn vxlan_port_out_of_range_refused() {
    let expected = "invalid vxlan_port: 0 (allowed: 1..=65535)";
    assert_eq!(err(&with_minimal(&["--vxlan-port", "0"]), None), expected);
    assert_eq!(err(&MINIMAL, Some("vxlan_port = 0")), expected);
    assert_eq!(
        err(&MINIMAL, Some("vxlan_port = 70000")),
        "invalid vxlan_port: 70000 (allowed: 1..=65535)"
    );
    let clap = try_args(&["--vxlan-port", "70000"]).expect_err("beyond u16");
    assert!(
        clap.to_string()
            .contains("invalid vxlan_port: 70000 (allowed: 1..=65535)"),
        "{clap}"
    );
}

#[test]
fn unknown_file_key_refused_by_name() {
    let e = err(&MINIMAL, Some("packet_size = 1400\npacket_sise = 1400\n"));
    assert!(e.contains("packet_sise"), "{e}");
    assert!(e.starts_with("invalid config file <inline>"), "{e}");

    let e = err(&MINIMAL, Some("vxlan_port = \"4789\""));
    assert!(e.contains("vxlan_port"), "{e}");
}

#[test]
fn load_names_the_file() {
    let dir = scratch("config", "load");
    let path = write(&dir, "netagent.toml", "bogus = true\n");
    let mut run = args(&MINIMAL);
    run.config = Some(path.clone());
    let e = AgentConfig::load(&run)
        .expect_err("unknown key")
        .to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("bogus"),
        "{e}"
    );

    let path = write(&dir, "netagent.toml", "packet_size = 9000\n");
    run.config = Some(path);
    assert_eq!(AgentConfig::load(&run).expect("valid").packet_size, 9000);

    run.config = Some(dir.join("absent.toml"));
    let e = AgentConfig::load(&run).expect_err("absent").to_string();
    assert!(
        e.starts_with("cannot read config file") && e.contains("absent.toml"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn security_requires_material_or_insecure() {
    let e = err(&["--advertise", "192.0.2.1"], None);
    assert!(
        e.contains("missing key_file, tls_ca, tls_cert, tls_key") && e.contains("--insecure"),
        "{e}"
    );
    let e = err(&["--advertise", "192.0.2.1", "--key-file", "/k"], None);
    assert!(e.contains("missing tls_ca, tls_cert, tls_key"), "{e}");

    let tls = [
        "--tls-ca",
        "/ca.pem",
        "--tls-cert",
        "/n.pem",
        "--tls-key",
        "/n-key.pem",
    ];
    let e = err(
        &[&["--advertise", "192.0.2.1"][..], &tls[..]].concat(),
        None,
    );
    assert!(e.contains("missing key_file"), "{e}");

    let c = ok(
        &[
            &["--advertise", "192.0.2.1", "--key-file", "/k"][..],
            &tls[..],
        ]
        .concat(),
        None,
    );
    assert_eq!(
        c.security,
        SecurityConfig::Secure {
            key_file: "/k".into(),
            tls_ca: "/ca.pem".into(),
            tls_cert: "/n.pem".into(),
            tls_key: "/n-key.pem".into(),
        }
    );
    assert!(matches!(
        c.security().expect_err("no files"),
        ConfigError::Load {
            field: "key_file",
            ..
        }
    ));

    assert_eq!(ok(&MINIMAL, None).security, SecurityConfig::Insecure);
    assert_eq!(
        ok(&["--advertise", "192.0.2.1"], Some("insecure = true")).security,
        SecurityConfig::Insecure
    );
}

#[test]
fn partial_tls_refused_even_when_insecure() {
    for flags in [
        vec!["--advertise", "192.0.2.1", "--tls-cert", "/n.pem"],
        with_minimal(&["--tls-cert", "/n.pem"]),
    ] {
        let e = err(&flags, None);
        assert_eq!(
            e,
            "incomplete TLS material: tls_cert given but tls_ca, tls_key missing (give all of tls_ca, tls_cert and tls_key)"
        );
    }
}

#[test]
fn insecure_with_material_is_contradictory() {
    let e = err(&with_minimal(&["--key-file", "/k"]), None);
    assert!(e.contains("insecure") && e.contains("key_file"), "{e}");
}

#[test]
fn advertise_rules() {
    let e = err(&["--insecure"], None);
    assert!(e.starts_with("missing advertise:"), "{e}");
    let e = err(&["--insecure", "--bind", "[::]:7946"], None);
    assert!(e.starts_with("missing advertise:"), "{e}");

    let c = ok(&["--insecure", "--bind", "127.0.0.1:7000"], None);
    assert_eq!(c.advertise, addr("127.0.0.1:7000"));
    let c = ok(
        &[
            "--insecure",
            "--bind",
            "0.0.0.0:7000",
            "--advertise",
            "192.0.2.3",
        ],
        None,
    );
    assert_eq!(c.advertise, addr("192.0.2.3:7000"));
    let c = ok(&["--insecure", "--advertise", "[2001:db8::3]"], None);
    assert_eq!(c.advertise, addr("[2001:db8::3]:7946"));
    let c = ok(&["--insecure", "--advertise", "192.0.2.3:8000"], None);
    assert_eq!(c.advertise, addr("192.0.2.3:8000"));

    let e = err(&["--insecure", "--advertise", "0.0.0.0"], None);
    assert!(e.starts_with("invalid advertise: 0.0.0.0 (allowed:"), "{e}");
    let e = err(&MINIMAL, Some("bind = \"0.0.0.0:0\""));
    assert!(e.starts_with("invalid bind: 0.0.0.0:0 (allowed:"), "{e}");
    let clap = try_args(&["--bind", "nowhere"]).expect_err("bad bind");
    assert!(clap.to_string().contains("invalid bind: nowhere"), "{clap}");
}

#[test]
fn join_entries_with_and_without_port() {
    let c = ok(
        &with_minimal(&[
            "--join",
            "192.0.2.5",
            "--join",
            "192.0.2.6:8000",
            "--join",
            "[2001:db8::1]",
            "--join",
            "[2001:db8::2]:9000,2001:db8::3",
            "--join",
            "192.0.2.5:7946",
        ]),
        None,
    );
    assert_eq!(
        c.join,
        vec![
            addr("192.0.2.5:7946"),
            addr("192.0.2.6:8000"),
            addr("[2001:db8::1]:7946"),
            addr("[2001:db8::2]:9000"),
            addr("[2001:db8::3]:7946"),
        ]
    );

    let c = ok(&with_minimal(&["--join", "localhost:7000"]), None);
    assert_eq!(c.join.len(), 1);
    assert!(
        c.join[0].ip().is_loopback() && c.join[0].port() == 7000,
        "{:?}",
        c.join
    );

    for bad in ["192.0.2.5:0", "bad host!", "0.0.0.0", ""] {
        let e = err(&with_minimal(&["--join", bad]), None);
        assert!(e.starts_with("invalid join:"), "{bad}: {e}");
    }
}

#[test]
fn api_addresses_round_trip() {
    for (text, want) in [
        ("unix:/run/x.sock", ApiAddr::Unix("/run/x.sock".into())),
        ("/run/x.sock", ApiAddr::Unix("/run/x.sock".into())),
        ("tcp:127.0.0.1:9000", ApiAddr::Tcp(addr("127.0.0.1:9000"))),
        ("127.0.0.1:9000", ApiAddr::Tcp(addr("127.0.0.1:9000"))),
        ("tcp:[::1]:9000", ApiAddr::Tcp(addr("[::1]:9000"))),
    ] {
        let got: ApiAddr = text.parse().expect("valid api");
        assert_eq!(got, want, "{text}");
        assert_eq!(
            got.to_string().parse::<ApiAddr>().expect("round trip"),
            want
        );
    }
    assert_eq!(
        ApiAddr::Unix("/run/x.sock".into()).to_string(),
        "unix:/run/x.sock"
    );
    for bad in [
        "unix:relative.sock",
        "localhost:80",
        "tcp:127.0.0.1:0",
        "tcp:",
    ] {
        let e = bad.parse::<ApiAddr>().expect_err(bad).to_string();
        assert!(e.starts_with("invalid api:"), "{e}");
    }
    let long = format!("/{}", "x".repeat(200));
    assert!(long.parse::<ApiAddr>().is_err());
    let c = ok(&MINIMAL, Some("api = \"unix:/tmp/a.sock\""));
    assert_eq!(c.api, ApiAddr::Unix("/tmp/a.sock".into()));
}

#[test]
fn other_fields_validated() {
    for (flags, prefix) in [
        (
            vec!["--name", "node_1"],
            "invalid name: \"node_1\" (allowed: 1..=63 letters",
        ),
        (vec!["--name=-node"], "invalid name:"),
        (vec!["--name", "1234"], "invalid name:"),
        (vec!["--name", ""], "invalid name:"),
        (
            vec!["--log-level", "info,cluster=loud"],
            "invalid log_level:",
        ),
        (vec!["--cluster-label", ""], "invalid cluster_label:"),
        (
            vec!["--docker-plugin", "net/ctl"],
            "invalid docker_plugin: \"net/ctl\" (allowed: 1..=64 ASCII letters",
        ),
        (vec!["--docker-plugin", ""], "invalid docker_plugin:"),
    ] {
        let e = err(&with_minimal(&flags), None);
        assert!(e.starts_with(prefix), "{flags:?}: {e}");
    }
    assert_eq!(
        err(&MINIMAL, Some("diag_addr = \"127.0.0.1:0\"")),
        "invalid diag_addr: 127.0.0.1:0 (allowed: IP:PORT with port 1..=65535)"
    );
    let long = "n".repeat(64);
    assert!(err(&with_minimal(&["--name", &long]), None).starts_with("invalid name:"));
    assert_eq!(
        ok(&with_minimal(&["--name", &long[..63]]), None).name,
        &long[..63]
    );
    assert_eq!(
        ok(&with_minimal(&["--name", "Node-1"]), None).name,
        "Node-1"
    );

    assert_eq!(
        err(&MINIMAL, Some("log_format = \"xml\"")),
        "invalid log_format: xml (allowed: text, json)"
    );
    let clap = try_args(&["--log-format", "xml"]).expect_err("bad format");
    assert!(
        clap.to_string().contains("invalid log_format: xml"),
        "{clap}"
    );
    assert_eq!(
        ok(&with_minimal(&["--log-level", "cluster=debug,info"]), None).log_level,
        "cluster=debug,info"
    );
}

#[test]
fn dns_settings() {
    let c = ok(&MINIMAL, None);
    assert!(c.dns);
    assert!(
        c.dns_upstreams.is_empty(),
        "default: the host's resolv.conf"
    );
    assert_eq!(c.dns_ttl, 600);

    let c = ok(
        &with_minimal(&[
            "--dns-upstream",
            "198.18.0.53",
            "--dns-upstream",
            "[::1]:5353",
            "--dns-upstream",
            "198.18.0.53:53",
            "--dns-ttl",
            "30",
            "--dns=false",
        ]),
        Some("dns_upstreams = [\"192.0.2.1\"]\ndns_ttl = 99\n"),
    );
    assert_eq!(
        c.dns_upstreams,
        vec![addr("198.18.0.53:53"), addr("[::1]:5353")],
        "flags beat the file; a duplicate counts once"
    );
    assert_eq!(c.dns_ttl, 30);
    assert!(!c.dns);
    let c = ok(
        &MINIMAL,
        Some("dns_upstreams = [\"192.0.2.1:54\"]\ndns = false\n"),
    );
    assert_eq!(c.dns_upstreams, vec![addr("192.0.2.1:54")]);
    assert!(!c.dns);

    let four = "dns_upstreams = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\", \"192.0.2.4\"]";
    assert!(
        err(&MINIMAL, Some(four)).contains("invalid dns_upstreams")
            && err(&MINIMAL, Some(four)).contains("at most 3 resolvers"),
        "{}",
        err(&MINIMAL, Some(four))
    );
    let c = ok(&with_minimal(&["--dns-forward=false"]), None);
    assert!(!c.dns_forward);
    assert!(ok(&MINIMAL, None).dns_forward);
    let e = err(
        &with_minimal(&["--dns-forward=false", "--dns-upstream", "192.0.2.1"]),
        None,
    );
    assert_eq!(
        e,
        "invalid dns_upstreams: 192.0.2.1:53 (allowed: none when dns_forward is false)"
    );
    let e = err(&MINIMAL, Some("dns_upstreams = [\"127.0.0.11\"]"));
    assert!(e.contains("other than 127.0.0.11"), "{e}");
    let e = err(&MINIMAL, Some("dns_upstreams = [\"resolver.example\"]"));
    assert!(
        e.starts_with("invalid dns_upstreams: resolver.example (allowed: IP or IP:PORT"),
        "{e}"
    );
    assert_eq!(
        err(&MINIMAL, Some("dns_ttl = -1")),
        "invalid dns_ttl: -1 (allowed: 0..=2147483647)"
    );
    let clap = try_args(&["--dns-ttl", "2147483648"]).expect_err("beyond 2^31-1");
    assert!(
        clap.to_string()
            .contains("invalid dns_ttl: 2147483648 (allowed: 0..=2147483647)"),
        "{clap}"
    );
}

#[test]
fn example_toml_parses_and_holds_the_defaults() {
    let example = example_toml();
    for field in FIELDS {
        let present = example.lines().any(|line| {
            line.trim_start_matches("# ")
                .starts_with(&format!("{field} = "))
        });
        assert!(present, "{field} missing from the example");
    }

    // As shipped: the defaults.
    let from_example = ok(&MINIMAL, Some(example));
    assert_eq!(from_example, ok(&MINIMAL, None));

    // Every commented setting uncommented (replacing the active default of the same key).
    let commented: Vec<&str> = FIELDS
        .iter()
        .copied()
        .filter(|f| example.lines().any(|l| l.starts_with(&format!("# {f} = "))))
        .collect();
    let uncommented: String = example
        .lines()
        .filter(|l| !commented.iter().any(|f| l.starts_with(&format!("{f} = "))))
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if commented
                    .iter()
                    .any(|f| rest.starts_with(&format!("{f} = "))) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = ok(&[], Some(&uncommented));
    assert_eq!(c.name, "node-1");
    assert_eq!(c.advertise, addr("192.0.2.10:7946"));
    assert_eq!(
        c.join,
        vec![addr("192.0.2.11:7946"), addr("192.0.2.12:7946")]
    );
    assert!(matches!(c.security, SecurityConfig::Secure { .. }));
    assert_eq!(c.api, ApiAddr::Unix("/run/netagent/netagent.sock".into()));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/netagent"));
}

fn counting_key(start: u8) -> Key {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = start.wrapping_add(i as u8);
    }
    Key::new(bytes)
}

#[test]
fn key_file_parsing() {
    let hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    let upper: String = (1u8..33).map(|b| format!("{b:02X}")).collect();
    let text = format!(
        "# gossip keys, primary first\n\n  {hex}  \n# rotated in:\n{upper}\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n"
    );
    let keys = parse_keys(&text).expect("valid keys");
    assert_eq!(
        keys,
        vec![
            counting_key(0),
            counting_key(1),
            counting_key(0),
            counting_key(0)
        ]
    );

    let short = &hex[..62];
    let e = parse_keys(&format!("# c\n{hex}\n{short}\n"))
        .expect_err("short key")
        .to_string();
    assert!(e.starts_with("invalid gossip key on line 3:"), "{e}");
    assert!(!e.contains(short), "the key text must not be echoed: {e}");

    let e = parse_keys("AAECAwQFBgcICQoLDA0ODw==\n")
        .expect_err("16 bytes")
        .to_string();
    assert!(e.contains("base64 of 16 bytes, not 32"), "{e}");
    let e = parse_keys("not a key\n").expect_err("garbage").to_string();
    assert!(e.starts_with("invalid gossip key on line 1:"), "{e}");
    let e = parse_keys("AAEC=AwQF\n")
        .expect_err("bad base64")
        .to_string();
    assert!(e.contains("not valid base64"), "{e}");
    assert!(matches!(
        parse_keys("\n# only comments\n"),
        Err(ConfigError::NoKeys)
    ));
}

#[test]
fn security_loads_keys_and_pem_files() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    let dir = scratch("config", "security");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let node_key = KeyPair::generate().expect("node key");
    let node = CertificateParams::new(vec!["node-1".to_owned()])
        .expect("node params")
        .signed_by(&node_key, &ca)
        .expect("node cert");

    let hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    let other: String = (1u8..33).map(|b| format!("{b:02x}")).collect();
    let key_file = write(&dir, "gossip.key", &format!("{hex}\n{other}\n"));
    let tls_ca = write(&dir, "ca.pem", &ca.pem());
    let tls_cert = write(&dir, "node.pem", &node.pem());
    let tls_key = write(&dir, "node-key.pem", &node_key.serialize_pem());
    let mut run = args(&["--name", "node-1", "--advertise", "192.0.2.1"]);
    run.key_file = Some(key_file.clone());
    run.tls_ca = Some(tls_ca.clone());
    run.tls_cert = Some(tls_cert.clone());
    run.tls_key = Some(tls_key.clone());
    let config = AgentConfig::from_sources(&run, None).expect("valid");

    match config.security().expect("material loads") {
        Security::Secure { keyring, tls } => {
            assert_eq!(
                keyring.fingerprints(),
                vec![counting_key(0).fingerprint(), counting_key(1).fingerprint()]
            );
            assert_eq!(tls.chain.len(), 1);
        }
        Security::Insecure => panic!("expected secure"),
    }

    // A certificate file without a certificate names the field and the file.
    let mut broken = config.clone();
    if let SecurityConfig::Secure { tls_cert, .. } = &mut broken.security {
        *tls_cert = tls_key.clone();
    }
    let e = broken.security().expect_err("no certificate").to_string();
    assert!(
        e.starts_with("cannot load tls_cert") && e.contains("node-key.pem"),
        "{e}"
    );

    // A key that does not match the certificate.
    let stranger = write(
        &dir,
        "stranger.pem",
        &KeyPair::generate().expect("key").serialize_pem(),
    );
    let mut mismatched = config.clone();
    if let SecurityConfig::Secure { tls_key, .. } = &mut mismatched.security {
        *tls_key = stranger;
    }
    let e = mismatched.security().expect_err("mismatch").to_string();
    assert!(e.starts_with("invalid TLS material"), "{e}");

    // A bad key file names key_file and the line.
    std::fs::write(&key_file, "# keys\nzz\n").expect("rewrite");
    let e = config.security().expect_err("bad key").to_string();
    assert!(
        e.starts_with("cannot load key_file") && e.contains("line 2"),
        "{e}"
    );

    assert!(matches!(
        ok(&MINIMAL, None).security().expect("insecure"),
        Security::Insecure
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
