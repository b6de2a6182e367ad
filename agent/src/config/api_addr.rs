//! The control API's address, [`ApiAddr`], and its text form.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::{ConfigError, invalid};

/// The longest unix socket path in bytes (`sun_path` holds 108 bytes with the NUL).
pub const MAX_UNIX_PATH_BYTES: usize = 107;

/// The control API's address.
///
/// Written `unix:/PATH` or `/PATH` for a unix socket (absolute, at most
/// [`MAX_UNIX_PATH_BYTES`]), `tcp:IP:PORT` or `IP:PORT` for TCP. [`Display`](fmt::Display)
/// writes the prefixed form, which parses back to the same value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ApiAddr {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// A TCP listener at this address.
    Tcp(SocketAddr),
}

impl fmt::Display for ApiAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl FromStr for ApiAddr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let invalid = || invalid("api", s, API_FORMS);
        if let Some(path) = s.strip_prefix("unix:") {
            return unix_api(s, path);
        }
        if s.starts_with('/') {
            return unix_api(s, s);
        }
        let tcp = s.strip_prefix("tcp:").unwrap_or(s);
        let addr: SocketAddr = tcp.parse().map_err(|_| invalid())?;
        if addr.port() == 0 {
            return Err(invalid());
        }
        Ok(Self::Tcp(addr))
    }
}

const API_FORMS: &str = "unix:/PATH, /PATH, tcp:IP:PORT or IP:PORT, port not 0";

fn unix_api(text: &str, path: &str) -> Result<ApiAddr, ConfigError> {
    if !path.starts_with('/') || path.len() > MAX_UNIX_PATH_BYTES {
        return Err(invalid(
            "api",
            text,
            format!("{API_FORMS}; a unix path is absolute and at most {MAX_UNIX_PATH_BYTES} bytes"),
        ));
    }
    Ok(ApiAddr::Unix(PathBuf::from(path)))
}

/// Checks an [`ApiAddr`] built in code as its parser would.
pub(super) fn check_api(api: ApiAddr) -> Result<ApiAddr, ConfigError> {
    let text = api.to_string();
    match &api {
        ApiAddr::Unix(path) => match path.to_str() {
            Some(path) => unix_api(&text, path),
            None => Err(invalid("api", &text, "a UTF-8 path")),
        },
        ApiAddr::Tcp(_) => text.parse(),
    }
}
