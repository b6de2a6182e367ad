//! The CNI plugin's commands against an in-process agent, as far as they need no root:
//! `VERSION`, `STATUS`, `DEL` of nothing and `DEL` without an agent, and every refusal as a
//! spec error object with its code and a message that says what to do, changing nothing. An
//! agent without root refuses `ADD` (it could give the container no interface). Attaching
//! for real: `cni_attach` (root); Podman driving the plugin: `podman_e2e`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failure")]

use std::process::{Command, Stdio};

use agent::api::ApiClient;
use agent::cni::run;
use agent::config::{AgentConfig, is_root};
use serde_json::{Value, json};

mod common;
use common::cni::{SUBNET, conf, env, id, ok, refused};
use common::scratch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing() {
    let root = scratch("cni", "refusals");
    let config = AgentConfig::local("node1", root.join("node1"));
    let _leftovers = common::OverlayLeftovers::of(&config);
    let daemon = common::start_daemon(&config).await;
    let api = daemon.api_addr().to_string();
    let client = ApiClient::new(daemon.api_addr().clone());
    let c1 = id('a');
    // A path that exists: the namespace check passes, whatever comes after.
    let netns = root.join("netns-a").display().to_string();
    std::fs::write(&netns, b"").unwrap();

    // VERSION, whatever the configuration.
    let v = ok(&run(
        &env("VERSION", "", "", "", ""),
        br#"{"cniVersion":"0.4.0"}"#,
    )
    .await);
    assert_eq!(v["cniVersion"], "0.4.0");
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.0.0"))
    );
    ok(&run(
        &env("STATUS", "", "", "", ""),
        &conf(&api, "1.1.0", json!({})),
    )
    .await);

    let add1 = env("ADD", &c1, &netns, "net1", "IgnoreUnknown=1");
    let with_subnet = conf(&api, "1.0.0", json!({"subnet": SUBNET}));
    refused(
        &run(&add1, &conf(&api, "1.0.0", json!({}))).await,
        103,
        "network web not found",
    );
    refused(
        &run(&add1, &conf(&api, "0.2.0", json!({}))).await,
        1,
        "0.2.0",
    );
    refused(
        &run(
            &add1,
            &conf(&api, "1.0.0", json!({"ipam": {"type": "host-local"}})),
        )
        .await,
        2,
        "\"ipam\" is not supported",
    );
    refused(&run(&add1, b"{not json").await, 6, "not valid JSON");
    refused(
        &run(
            &env("ADD", &c1, &netns, "net1", "IPP=198.18.120.9"),
            &with_subnet,
        )
        .await,
        4,
        "IPP",
    );
    refused(
        &run(&env("ADD", "", &netns, "net1", ""), &with_subnet).await,
        4,
        "CNI_CONTAINERID",
    );
    refused(
        &run(
            &env("ADD", &c1, &netns, "net1", "IP=198.18.120.9"),
            &conf(
                &api,
                "1.0.0",
                json!({"subnet": SUBNET, "runtimeConfig": {"ips": ["198.18.120.10/24"]}}),
            ),
        )
        .await,
        7,
        "two addresses",
    );
    refused(
        &run(&env("ADD", &c1, &netns, "net1", "IP=fd00::5"), &with_subnet).await,
        7,
        "IPv4 only",
    );
    refused(
        &run(&env("ADD", &c1, "/no/such/netns", "net1", ""), &with_subnet).await,
        100,
        "does not exist here",
    );
    refused(
        &run(&env("ADD", &c1, &netns, "a/b", ""), &with_subnet).await,
        4,
        "CNI_IFNAME: invalid interface name",
    );
    refused(
        &run(
            &add1,
            &conf(
                &api,
                "1.0.0",
                json!({"subnet": SUBNET, "agent": "relative.sock"}),
            ),
        )
        .await,
        7,
        "\"agent\"",
    );
    if !is_root() {
        // Without root the agent configures no interface: it says so.
        refused(&run(&add1, &with_subnet).await, 11, "needs root");
    }
    assert!(client.sandboxes().await.unwrap().is_empty(), "nothing made");
    assert!(
        client.endpoints(None).await.unwrap().is_empty(),
        "nothing made"
    );

    // Found by review: a subnet another network overlaps made the attach retry its create
    // forever, holding every other attach and detach of the agent.
    let other = client
        .create_network(&agent::cnm::NetworkCreate {
            name: "other".into(),
            subnet: "198.18.120.0/25".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let overlapping =
        tokio::time::timeout(std::time::Duration::from_secs(10), run(&add1, &with_subnet))
            .await
            .expect("answered");
    refused(&overlapping, 100, "overlaps");
    // Found by review: a configuration's name that is a prefix of another network's ID
    // attached to that network; only an exact name or ID counts.
    let prefix = &other.id[..6];
    let mut by_prefix: Value = serde_json::from_slice(&conf(&api, "1.0.0", json!({}))).unwrap();
    by_prefix["name"] = json!(prefix);
    refused(
        &run(&add1, &serde_json::to_vec(&by_prefix).unwrap()).await,
        103,
        "not found",
    );
    client.remove_network("other").await.unwrap();

    // DEL of what was never attached, and CHECK of it.
    ok(&run(&env("DEL", &c1, &netns, "net1", ""), &with_subnet).await);
    refused(
        &run(
            &env("CHECK", &c1, &netns, "net1", ""),
            &conf(
                &api,
                "1.0.0",
                json!({"prevResult": {"cniVersion": "1.0.0"}}),
            ),
        )
        .await,
        3,
        "not attached",
    );

    // Without the agent: STATUS says so, DEL succeeds and says why on standard error.
    daemon.shutdown().await;
    refused(
        &run(&env("STATUS", "", "", "", ""), &with_subnet).await,
        50,
        "netagent is not running",
    );
    refused(
        &run(&add1, &with_subnet).await,
        11,
        "netagent is not running",
    );
    let gone = run(&env("DEL", &c1, &netns, "net1", ""), &with_subnet).await;
    ok(&gone);
    assert!(gone.stderr.contains("not running"), "{gone:?}");
}

/// The binary prints what `run` answers and exits with its status.
#[test]
fn the_binary_speaks_the_protocol() {
    let bin = env!("CARGO_BIN_EXE_netctl-cni");
    let call = |command: Option<&str>, input: &str| {
        let mut cmd = Command::new(bin);
        cmd.env_clear();
        if let Some(c) = command {
            cmd.env("CNI_COMMAND", c);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = call(Some("VERSION"), r#"{"cniVersion":"1.0.0"}"#);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    let out = call(None, "");
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["code"], 4);
    assert!(e["msg"].as_str().unwrap().contains("CNI plugin"), "{e}");
}
