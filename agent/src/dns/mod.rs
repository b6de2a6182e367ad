//! Service discovery on the host: the names of every attached network ([`directory`]), kept
//! equal to the node's view of `endpoint_table`, and the embedded DNS server ([`server`]) that
//! answers from them inside each container sandbox at 127.0.0.11, forwarding other names to
//! the upstream resolvers ([`resolv_conf`]).

pub mod directory;
pub mod resolv_conf;
pub mod sandbox;
pub mod server;
