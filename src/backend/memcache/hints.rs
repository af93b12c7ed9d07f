//! memcached's hints, kept as items of their own (see the module above): raising one with
//! put-if-newer, counting them per key and per node (`incr`/`decr`, so that a pass can skip the
//! key dump and a stand-in's copy goes only with its key's last hint), listing and dropping
//! them.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::keys::{hint_count_subject, hint_key, hint_subject, memcache_key, HINT_PREFIX};
use super::reply::error_reply;
use super::{MemcacheBackend, MAX_RACES};
use crate::backend::{BackendError, HeldHint, HintPage, Stored, Version};

/// The "key" whose hint count is the node's: no client key is empty.
const ALL_HINTS: &[u8] = b"";
/// One hint listing in this many dumps the node whatever its count of hints says.
const FULL_DUMP_EVERY: u64 = 30;

impl MemcacheBackend {
    /// Adds `by` (1 or -1) to a count of hints, `key`'s or (for [`ALL_HINTS`]) the node's
    /// (`incr`/`decr`, atomic on the server); the count after, 0 when there is none.
    async fn count_hints(&self, key: &[u8], by: i8) -> Result<u64, BackendError> {
        debug_assert!(by == 1 || by == -1);
        let ckey = hint_key(&hint_count_subject(key));
        let verb: &[u8] = if by > 0 { b"incr " } else { b"decr " };
        for _ in 0..MAX_RACES {
            let line = self.line(&[verb, &ckey, b" 1\r\n"]).await?;
            if let Ok(count) = line.parse::<u64>() {
                return Ok(count);
            }
            if line != "NOT_FOUND" {
                return Err(error_reply(&line));
            }
            if by < 0 || self.store_raw("add", &ckey, b"1", 0, None).await? {
                return Ok(u64::from(by > 0));
            }
        }
        Err(BackendError::Server(format!(
            "a hint count lost {MAX_RACES} races in a row to other writers"
        )))
    }

    /// A count of hints (see [`MemcacheBackend::count_hints`]) and its cas unique; `None`
    /// when the node has none (never kept one, or evicted it).
    async fn hint_count(&self, key: &[u8]) -> Result<Option<(u64, u64)>, BackendError> {
        let ckey = hint_key(&hint_count_subject(key));
        Ok(self.gets_raw(&ckey).await?.map(|(count, cas)| {
            let count = std::str::from_utf8(&count)
                .ok()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0);
            (count, cas)
        }))
    }

    /// Removes `mkey` (a memcached key as it is) if its cas unique is still `cas`; false if
    /// it changed or went meanwhile.
    async fn delete_if_unchanged(&self, mkey: &[u8], cas: u64) -> Result<bool, BackendError> {
        let line = self
            .line(&[b"md ", mkey, format!(" C{cas}\r\n").as_bytes()])
            .await?;
        match line.as_str() {
            "HD" => Ok(true),
            "NF" | "EX" => Ok(false),
            other => Err(error_reply(other)),
        }
    }

    /// Raises the hint `subject` (see [`hint_subject`]) to `version` unless it holds a newer
    /// one, with `add` or `cas` as put-if-newer does; a hint added counts toward its key's.
    pub(super) async fn raise_hint(
        &self,
        subject: &[u8],
        key: &[u8],
        version: Version,
    ) -> Result<(), BackendError> {
        let hkey = hint_key(subject);
        let value = [&version.to_bytes()[..], subject].concat();
        for _ in 0..MAX_RACES {
            let landed = match self.gets_raw(&hkey).await? {
                None => {
                    // Counted first: a count too high costs a dump or keeps a copy a while;
                    // one too low would hide a hint.
                    self.count_hints(ALL_HINTS, 1).await?;
                    self.count_hints(key, 1).await?;
                    let added = self.store_raw("add", &hkey, &value, 0, None).await?;
                    if !added {
                        self.count_hints(key, -1).await?;
                        self.count_hints(ALL_HINTS, -1).await?;
                    }
                    added
                }
                Some((held, cas)) => {
                    if held_hint(&held).is_some_and(|h| h.version >= version) {
                        return Ok(());
                    }
                    self.store_raw("cas", &hkey, &value, 0, Some(cas)).await?
                }
            };
            if landed {
                return Ok(());
            }
        }
        Err(BackendError::Server(format!(
            "a hint lost {MAX_RACES} races in a row to other writers"
        )))
    }

    /// The hints in the key dump, read one by one; one page. Skipped while the node's count
    /// of hints says 0: a dump costs the node a pass over every key.
    pub(super) async fn list_hints(&self) -> Result<HintPage, BackendError> {
        // Every so often a dump whatever the count says: a count lost with its item
        // (evicted) or with a reply that never came must not hide hints for good.
        let pass = self.hint_passes.fetch_add(1, Ordering::Relaxed);
        let counted = self.hint_count(ALL_HINTS).await?;
        if !pass.is_multiple_of(FULL_DUMP_EVERY) && counted.is_some_and(|(count, _)| count == 0) {
            return Ok(HintPage::default());
        }
        let mut hints = Vec::new();
        for hkey in self
            .dump()
            .await?
            .iter()
            .filter(|k| k.starts_with(HINT_PREFIX))
        {
            if let Some((value, _)) = self.gets_raw(hkey).await? {
                hints.extend(held_hint(&value));
            }
        }
        // No hint: the count starts (a new node, or evicted) or is set right (it drifted:
        // a hint was evicted) at 0, unless a writer changed it meanwhile.
        if hints.is_empty() {
            let all = hint_key(&hint_count_subject(ALL_HINTS));
            let cas = counted.map(|(_, cas)| cas);
            let verb = if cas.is_some() { "cas" } else { "add" };
            self.store_raw(verb, &all, b"0", 0, cas).await?;
        }
        Ok(HintPage { hints, next: None })
    }

    /// See [`crate::backend::Backend::drop_hint`].
    pub(super) async fn drop_held_hint(
        &self,
        key: &[u8],
        owner: &str,
        up_to: Version,
        release: bool,
    ) -> Result<(), BackendError> {
        let hkey = hint_key(&hint_subject(owner, key));
        let left = match self.gets_raw(&hkey).await? {
            Some((value, cas)) => {
                if held_hint(&value).is_some_and(|h| h.version > up_to)
                    || !self.delete_if_unchanged(&hkey, cas).await?
                {
                    // Renewed since: it stays, and so does the copy.
                    return Ok(());
                }
                self.count_hints(ALL_HINTS, -1).await?;
                self.count_hints(key, -1).await?
            }
            None => self.hint_count(key).await?.map_or(0, |(count, _)| count),
        };
        // The copy goes with the key's last hint.
        if release && left == 0 {
            if let Some((bytes, cas)) = self.gets(key).await? {
                if Stored::decode(bytes).version <= up_to {
                    self.delete_if_unchanged(&memcache_key(key), cas).await?;
                }
            }
        }
        Ok(())
    }
}

/// A hint's value back: the version, then which replica and key it is for.
fn held_hint(value: &[u8]) -> Option<HeldHint> {
    let version = Version::from_bytes(value.get(..16)?.try_into().ok()?);
    let subject = &value[16..];
    let len = u16::from_be_bytes(subject.get(..2)?.try_into().ok()?) as usize;
    let owner = std::str::from_utf8(subject.get(2..2 + len)?)
        .ok()?
        .to_owned();
    Some(HeldHint {
        key: Bytes::copy_from_slice(&subject[2 + len..]),
        owner,
        version,
    })
}
