//! Node addresses: `http(s)://host[:port]`, `redis://[[user]:password@]host[:port][/db]`,
//! `memcache://host[:port]`, parsed strictly and never printed with their password.

use std::fmt;

use serde::Deserialize;

/// The protocols a node can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `PUT / GET / DELETE <url>/kv/<key>`: the built-in node or any such store.
    Http,
    /// The same over TLS.
    Https,
    /// Redis GET / SET / DEL.
    Redis,
    /// memcached get / set / delete (text protocol).
    Memcache,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Redis => "redis",
            Scheme::Memcache => "memcache",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Redis => 6379,
            Scheme::Memcache => 11211,
        }
    }
}

/// A node address.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NodeUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Redis only: `(user, password)` from the URL.
    pub credentials: Option<(String, String)>,
    /// Redis only: the database number.
    pub db: u32,
    /// `scheme://host:port` (plus `/db` for Redis), never the password: the prefix of every
    /// HTTP request URL, and how the node is named in logs.
    pub base: String,
}

/// Never prints the password.
impl fmt::Debug for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl TryFrom<String> for NodeUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let bad = |why: &str| format!("url: bad URL {:?}: {why}", redact(&raw));
        let (scheme_name, rest) = raw
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host:port"))?;
        let scheme = match scheme_name {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "redis" => Scheme::Redis,
            "memcache" => Scheme::Memcache,
            other => {
                return Err(format!(
                    "url: unsupported scheme {other:?} in {:?} (supported: http, https, redis, memcache)",
                    redact(&raw)
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some(_) if scheme != Scheme::Redis => {
                return Err(bad("credentials are only supported for redis"))
            }
            Some((userinfo, host_port)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or(("", userinfo));
                (Some((user.to_owned(), password.to_owned())), host_port)
            }
            None => (None, authority),
        };
        let authority: http::uri::Authority =
            host_port.parse().map_err(|e| bad(&format!("{e}")))?;
        let host = authority.host().to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // `http::uri::Authority` reads an unparsable port as none; refuse it instead.
        let after_host = &host_port[host_port.rfind(']').map_or(0, |i| i + 1)..];
        let port = match after_host.rsplit_once(':') {
            Some((_, port)) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("bad port {port:?}")))?,
            None => scheme.default_port(),
        };
        let db = match (scheme, path) {
            (_, "" | "/") => 0,
            (Scheme::Redis, path) => path[1..].parse().map_err(|_| {
                bad("the path must be a database number, as in redis://host:6379/0")
            })?,
            (Scheme::Http | Scheme::Https, _) => {
                return Err(bad(
                    "must have no path or query (requests go to <url>/kv/<key>)",
                ))
            }
            (Scheme::Memcache, _) => return Err(bad("must have no path or query")),
        };
        let base = match scheme {
            Scheme::Redis => format!("redis://{host}:{port}/{db}"),
            _ => format!("{}://{host}:{port}", scheme.name()),
        };
        Ok(NodeUrl {
            scheme,
            host,
            port,
            credentials,
            db,
            base,
        })
    }
}

/// The URL with any password replaced, for error messages.
fn redact(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}://***@{}", &raw[..start], &raw[at + 1..])
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_of_every_scheme() {
        let url = |raw: &str| NodeUrl::try_from(raw.to_string());
        let redis = url("redis://:s3cret@cache:6380/2").unwrap();
        assert_eq!(
            (redis.scheme, redis.port, redis.db),
            (Scheme::Redis, 6380, 2)
        );
        assert_eq!(redis.credentials, Some((String::new(), "s3cret".into())));
        assert_eq!(redis.base, "redis://cache:6380/2");
        assert!(!format!("{redis:?}").contains("s3cret"));
        assert!(!format!("{redis}").contains("s3cret"));
        assert_eq!(url("redis://h").unwrap().port, 6379);
        assert_eq!(url("http://cache-1").unwrap().port, 80);
        let mc = url("memcache://127.0.0.1").unwrap();
        assert_eq!(
            (mc.scheme, mc.port, mc.base.as_str()),
            (Scheme::Memcache, 11211, "memcache://127.0.0.1:11211")
        );
        for (raw, why) in [
            ("http://h:99999", "bad port"),
            ("http://h:abc", "bad port"),
            ("http://h:", "bad port"),
            ("http://h:0", "bad port"),
            ("http://u:p@h:1", "credentials are only supported for redis"),
            ("redis://h:1/x", "database number"),
            ("memcache://h:1/x", "no path"),
            ("http://h:1/path", "no path"),
            ("ftp://h:1", "supported: http, https, redis, memcache"),
            ("not a url", "expected scheme://host:port"),
        ] {
            let err = url(raw).unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
        }
        let err = url("redis://:pw@h:99999").unwrap_err();
        assert!(!err.contains("pw"), "password leaked: {err}");
        assert!(err.contains("***@h:99999"), "{err}");
    }
}
