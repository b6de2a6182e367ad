//! Ethernet (MAC-48) addresses in the text form libnetwork writes into `PeerRecord`s and the
//! agent's control API and state file use.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A 48-bit Ethernet address.
///
/// Displays as six lower-case, colon-separated hex pairs (`02:42:0a:00:01:05`), as Go's
/// `net.HardwareAddr.String()` does. Parses that form, upper-case hex, and the
/// hyphen-separated form (`02-42-0A-00-01-05`); the separator must not change within one
/// address. Go's `net.ParseMAC` also accepts dotted (`0242.0a00.0105`) and 8/20-byte forms,
/// which libnetwork never writes for overlay endpoints; they are refused here.
///
/// With the `serde` feature it serializes as that text (`"02:42:0a:00:01:05"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// libnetwork's default endpoint MAC (`netutils.GenerateMACFromIP`): `02:42:` followed by
    /// the four IPv4 octets, so the MAC moves with the IP.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let [a, b, c, d] = ip.octets();
        Self([0x02, 0x42, a, b, c, d])
    }

    /// The six octets.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Whether the group bit is set: a multicast or the broadcast address, which no endpoint
    /// may have.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

/// Why text is not a [`Mac`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseMacError {
    /// Not six hex pairs separated by one kind of `:` or `-`.
    #[error("not a MAC address (six hex pairs like 02:42:c6:12:0a:05)")]
    Syntax,
}

impl FromStr for Mac {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        // "aa:bb:cc:dd:ee:ff" is exactly 17 bytes.
        if bytes.len() != 17 {
            return Err(ParseMacError::Syntax);
        }
        let sep = bytes[2];
        if sep != b':' && sep != b'-' {
            return Err(ParseMacError::Syntax);
        }
        let mut out = [0u8; 6];
        for (i, octet) in out.iter_mut().enumerate() {
            let at = i * 3;
            if i > 0 && bytes[at - 1] != sep {
                return Err(ParseMacError::Syntax);
            }
            let hi = hex_digit(bytes[at]).ok_or(ParseMacError::Syntax)?;
            let lo = hex_digit(bytes[at + 1]).ok_or(ParseMacError::Syntax)?;
            *octet = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The value of one ASCII hex digit (either case).
fn hex_digit(c: u8) -> Option<u8> {
    // `to_digit` refuses every non-ASCII char, so the cast below never truncates.
    char::from(c).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_displays() {
        let m: Mac = "02:42:0A:00:01:ff".parse().unwrap();
        assert_eq!(m, Mac([0x02, 0x42, 0x0a, 0x00, 0x01, 0xff]));
        assert_eq!(m.to_string(), "02:42:0a:00:01:ff");
        assert_eq!("02-42-0a-00-01-ff".parse::<Mac>().unwrap(), m);
        assert_eq!(format!("{m:?}"), "02:42:0a:00:01:ff");
    }

    #[test]
    fn refuses_bad_text() {
        for bad in [
            "",
            "02:42:0a:00:01",
            "02:42:0a:00:01:ff:",
            "02:42-0a:00:01:ff",
            "02:42:0g:00:01:ff",
            "02.42.0a.00.01.ff",
            "0242.0a00.01ff",
            "02:42:0a:00:01:f",
            "+2:42:0a:00:01:ff",
            "02:42:0a:00:01:ﬀ",
        ] {
            assert_eq!(bad.parse::<Mac>(), Err(ParseMacError::Syntax), "{bad}");
        }
    }

    #[test]
    fn default_mac_from_ip() {
        let m = Mac::from_ipv4(Ipv4Addr::new(10, 0, 1, 5));
        assert_eq!(m.to_string(), "02:42:0a:00:01:05");
        assert!(!m.is_multicast());
        assert!(Mac([0xff; 6]).is_multicast());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_is_the_text_form() {
        let m = Mac([0x02, 0x42, 0xc6, 0x12, 0x0a, 0x05]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"02:42:c6:12:0a:05\"");
        assert_eq!(serde_json::from_str::<Mac>(&json).unwrap(), m);
        assert_eq!(
            serde_json::from_str::<Mac>("\"02:42:C6:12:0A:05\"").unwrap(),
            m
        );
        assert!(serde_json::from_str::<Mac>("\"02:42:c6:12:0a\"").is_err());
        assert!(serde_json::from_str::<Mac>("[2,66,198,18,10,5]").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(o in any::<[u8; 6]>()) {
            let m = Mac(o);
            prop_assert_eq!(m.to_string().parse::<Mac>().unwrap(), m);
        }

        #[test]
        fn parse_never_panics(s in ".{0,20}") {
            let _ = s.parse::<Mac>();
        }
    }
}
