//! Optional bearer tokens for the data and admin listeners, read from files named in the
//! config (re-read with every reload), compared in constant time, never logged.

use std::path::{Path, PathBuf};

use http::HeaderMap;

use super::tls::ReadFile;
use crate::config::{AuthConfig, ConfigError};

/// A token; its Debug output hides it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The tokens in force; `None` leaves that listener open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub data: Option<Secret>,
    pub admin: Option<Secret>,
}

impl Tokens {
    /// Reads the token files of `auth`, relative to `config_dir`, with `read`.
    pub(crate) fn load(
        auth: &AuthConfig,
        config_dir: &Path,
        read: ReadFile<'_>,
    ) -> Result<Tokens, ConfigError> {
        let read = |field: &str, file: &Option<PathBuf>| -> Result<Option<Secret>, ConfigError> {
            let Some(file) = file else { return Ok(None) };
            let path = config_dir.join(file);
            let invalid = |why: String| {
                ConfigError::invalid(format!("auth.{field}: {}: {why}", path.display()))
            };
            let text = read(&path).map_err(|e| invalid(e.to_string()))?;
            let token = text.trim_ascii().to_vec();
            if token.is_empty() {
                return Err(invalid("the token file is empty".into()));
            }
            Ok(Some(Secret(token)))
        };
        Ok(Tokens {
            data: read("data_token_file", &auth.data_token_file)?,
            admin: read("admin_token_file", &auth.admin_token_file)?,
        })
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>` for `required` (always true when no
/// token is required). The comparison takes the same time wherever the first difference is.
pub(crate) fn allows(required: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(Secret(expected)) = required else {
        return true;
    };
    // The scheme is case-insensitive (RFC 9110); the token is not.
    let given = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map_or(&b""[..], |v| &v[7..]);
    constant_time_eq(given, expected)
}

impl Secret {
    /// Whether `given` is this secret, in the same time wherever the first difference is.
    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq(given, &self.0)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        differ |= usize::from(x ^ y);
    }
    differ == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let secret = Secret(b"s3cret".to_vec());
        let mut headers = HeaderMap::new();
        assert!(allows(None, &headers));
        assert!(!allows(Some(&secret), &headers));
        for (value, ok) in [
            ("Bearer s3cret", true),
            ("Bearer s3cre", false),
            ("Bearer s3cret2", false),
            ("bearer s3cret", true),
            ("BEARER s3cret", true),
            ("bearer S3CRET", false),
            ("Bearer", false),
            ("Basic s3cret", false),
            ("s3cret", false),
        ] {
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(allows(Some(&secret), &headers), ok, "{value}");
        }
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
