//! The Docker plugin's counters: calls by method and outcome, for `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Calls answered, by method and outcome (`ok` or `refused`); shared by the plugin and the
/// metrics endpoint.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl PluginStats {
    /// Counts one call of `method` (a method dockerd does not have is counted as `other`).
    pub fn count(&self, method: &str, ok: bool) {
        let method = if KNOWN.contains(&method) {
            method
        } else {
            "other"
        };
        let outcome = if ok { "ok" } else { "refused" };
        *self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((method.to_owned(), outcome))
            .or_default() += 1;
    }

    /// The counters so far: `(method, outcome) -> calls`.
    pub fn snapshot(&self) -> BTreeMap<(String, &'static str), u64> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The methods of the two protocols (others are counted as `other`, so a caller cannot grow
/// the set of series).
const KNOWN: &[&str] = &[
    "Plugin.Activate",
    "NetworkDriver.GetCapabilities",
    "NetworkDriver.CreateNetwork",
    "NetworkDriver.DeleteNetwork",
    "NetworkDriver.CreateEndpoint",
    "NetworkDriver.DeleteEndpoint",
    "NetworkDriver.EndpointOperInfo",
    "NetworkDriver.Join",
    "NetworkDriver.Leave",
    "NetworkDriver.DiscoverNew",
    "NetworkDriver.DiscoverDelete",
    "NetworkDriver.ProgramExternalConnectivity",
    "NetworkDriver.RevokeExternalConnectivity",
    "NetworkDriver.AllocateNetwork",
    "NetworkDriver.FreeNetwork",
    "IpamDriver.GetCapabilities",
    "IpamDriver.GetDefaultAddressSpaces",
    "IpamDriver.RequestPool",
    "IpamDriver.ReleasePool",
    "IpamDriver.RequestAddress",
    "IpamDriver.ReleaseAddress",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_series() {
        let s = PluginStats::default();
        s.count("NetworkDriver.Join", true);
        s.count("NetworkDriver.Join", false);
        s.count("Evil.Method1", false);
        s.count("Evil.Method2", false);
        let snap = s.snapshot();
        assert_eq!(snap[&("NetworkDriver.Join".to_owned(), "ok")], 1);
        assert_eq!(snap[&("other".to_owned(), "refused")], 2);
        assert_eq!(snap.len(), 3);
    }
}
