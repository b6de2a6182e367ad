//! Helpers of the CNI plugin's tests: configurations, environments, and reading the plugin's
//! answers.

use agent::cni::{CniEnv, Outcome};
use serde_json::{Value, json};

/// The subnet the tests' configurations give.
pub const SUBNET: &str = "198.18.120.0/24";

/// A network configuration for network `web` of the agent at `api`, with `extra` fields.
pub fn conf(api: &str, version: &str, extra: Value) -> Vec<u8> {
    let mut c = json!({
        "cniVersion": version,
        "name": "web",
        "type": "netctl-cni",
        "agent": api,
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&c).unwrap()
}

/// The environment a runtime sets.
pub fn env(command: &str, container: &str, netns: &str, ifname: &str, args: &str) -> CniEnv {
    CniEnv {
        command: Some(command.into()),
        container_id: Some(container.into()),
        netns: Some(netns.into()),
        ifname: Some(ifname.into()),
        args: Some(args.into()),
    }
}

/// Asserts success; the printed result (`Null` when nothing was printed).
pub fn ok(outcome: &Outcome) -> Value {
    assert_eq!(outcome.status, 0, "{outcome:?}");
    if outcome.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&outcome.stdout).unwrap()
    }
}

/// Asserts an error object with `code` whose message contains `needle`.
pub fn refused(outcome: &Outcome, code: u64, needle: &str) -> Value {
    assert_eq!(outcome.status, 1, "{outcome:?}");
    let e: Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(e["code"], code, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    e
}

/// A container ID: 64 times `tag`.
pub fn id(tag: char) -> String {
    std::iter::repeat_n(tag, 64).collect()
}
