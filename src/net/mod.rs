//! The network edge shared by every listener and client: the HTTP/1.1 server loops (hyper's for
//! the admin API, the built-in node and TLS; our own for the data listener), request
//! reading and responses, key encoding on the wire, the request context (id and via), TLS and
//! bearer tokens.

pub(crate) mod auth;
pub(crate) mod context;
pub mod error;
pub(crate) mod http1;
pub mod key;
pub mod request;
pub(crate) mod respond;
pub(crate) mod server;
pub(crate) mod tls;
pub(crate) mod workers;

pub use self::error::RequestError;
pub use self::request::Ttl;
