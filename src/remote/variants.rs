//! Variants records on the remote (`relocache/v1/variants/<base key>`): the
//! path sets seen for one base key of a target with a depfile, exactly as a
//! depot stores them (sealed TOML). Fetched before the entries of a depfile
//! target can be looked up; published after an entry and its blobs, merged
//! into the remote's current record. Never writes a depot (the caller adds
//! the set it used to the local record).

use super::{io::Io, Failure, Remote, LAYOUT};
use crate::depot::variants::{parse_variants, render_variants, Variants, VariantsError};
use crate::digest::Key;
use crate::discovered::DiscoveredPath;

/// Where the record of base key `k` lives on the remote.
pub(super) fn variants_path(k: &Key) -> String {
    format!("{LAYOUT}/variants/{}", k.0.to_hex())
}

/// A record as downloaded: sealed, this schema, named for `key`.
fn parse_for(key: &Key, bytes: &[u8]) -> Result<Variants, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let v = parse_variants(text).map_err(|e| e.to_string())?;
    if v.key != *key {
        return Err(VariantsError::OtherKey(v.key).to_string());
    }
    Ok(v)
}

/// A fetched variants record.
#[derive(Debug, Clone)]
pub struct FetchedVariants {
    /// The record (sets newest first).
    pub variants: Variants,
    /// Bytes downloaded.
    pub bytes_down: u64,
}

impl Remote {
    /// The remote's variants record of base key `base`; `Ok(None)` when it
    /// has none. A record failing its seal or naming another key is
    /// [`Failure::Corrupt`]: never used, and replaced by the next upload of
    /// an entry under that base key.
    pub fn fetch_variants(&self, base: &Key) -> Result<Option<FetchedVariants>, Failure> {
        let _span = tracing::debug_span!("remote fetch variants", %base).entered();
        let io = self.io();
        self.guarded(async {
            let path = variants_path(base);
            let Some(bytes) = io.call(format!("read {path}"), io.op.read(&path)).await? else {
                return Ok(None);
            };
            let variants = parse_for(base, &bytes.to_vec()).map_err(|why| Failure::Corrupt {
                blob: None,
                message: format!(
                    "the remote variants record {base} is damaged ({why}); it was not used"
                ),
            })?;
            Ok(Some(FetchedVariants {
                variants,
                bytes_down: bytes.len() as u64,
            }))
        })
    }
}

/// Adds `paths` to the remote record of `base` (read, add newest first,
/// capped, write), called once the entry of that set is on the remote. A
/// record that is absent or damaged is replaced by one holding this set.
/// Writes nothing when the set is already there. Returns the bytes sent.
///
/// Two uploaders merging at once may each write without the other's set:
/// one set is lost, which costs a later miss, never a wrong artifact.
pub(super) async fn publish(
    io: &Io,
    base: &Key,
    paths: Vec<DiscoveredPath>,
) -> Result<u64, Failure> {
    let path = variants_path(base);
    let current = io.call(format!("read {path}"), io.op.read(&path)).await?;
    let mut v = current
        .and_then(|bytes| parse_for(base, &bytes.to_vec()).ok())
        .unwrap_or_else(|| Variants::new(*base));
    if !v.add(paths) {
        return Ok(0);
    }
    let text = render_variants(&v).into_bytes();
    let sent = text.len() as u64;
    io.call_write(format!("write {path}"), io.op.write(&path, text))
        .await?;
    Ok(sent)
}
