//! Entry signatures: a keyed blake3 MAC over an entry's cache key and its
//! exact bytes, so that whoever can write a shared cache (a bucket, an
//! archive) but lacks the team's key cannot make another machine restore
//! what they wrote. Blobs need none: an entry names them by content digest,
//! and every blob is re-hashed on read.
//!
//! The key comes from the environment only (`RELOCACHE_SIGNING_KEY`, or the
//! variable `[remote] signing_key_env` names). Only the 32-byte key derived
//! from it is kept in memory; neither is ever logged, printed or stored.
//! A signature is written as its 64 hex digits and a newline (the remote's
//! `relocache/v1/signatures/<key-hex>`, an archive's
//! `signatures-v1/ab/<key-hex>.mac`). Pure: reads the environment, nothing
//! else.

use std::fmt;

use serde::Serialize;

use crate::digest::Key;

/// The default variable holding the signing key.
pub const ENV_KEY: &str = "RELOCACHE_SIGNING_KEY";
/// blake3's key derivation context: the version of the signature scheme.
const CONTEXT: &str = "relocache entry signature v1";
/// A shorter key is refused: it could be guessed offline from one entry.
pub const MIN_KEY_BYTES: usize = 16;

/// Where the signing key was read from (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySource {
    /// The environment variable.
    pub var: String,
    /// Whether `[remote] signing_key_env` named it.
    pub from_manifest: bool,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from_manifest {
            write!(f, "{} (named by [remote] signing_key_env)", self.var)
        } else {
            f.write_str(&self.var)
        }
    }
}

/// The key that signs and checks entries. Its `Debug` shows only where it
/// came from.
#[derive(Clone)]
pub struct SigningKey {
    derived: [u8; 32],
    source: KeySource,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(from {})", self.source)
    }
}

/// The signing key cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// `[remote] signing_key_env` names a variable that is not set.
    #[error("`[remote] signing_key_env` names the environment variable {var}, which is not set\n  help: set {var} to the team's signing key (e.g. from your CI's secrets), or set RELOCACHE_REMOTE=off for a build that must run without the key (a pull-request build)")]
    Unset {
        /// The variable.
        var: String,
    },
    /// The key is too short to resist guessing.
    #[error("the signing key in {from} is {len} bytes; at least {MIN_KEY_BYTES} are needed\n  help: generate one with `openssl rand -hex 32`")]
    TooShort {
        /// Where it was read from.
        from: KeySource,
        /// Its length.
        len: usize,
    },
}

/// What checking a signature found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The signature is this key's over these bytes.
    Valid,
    /// There is no signature.
    Unsigned,
    /// There is one, but not this key's over these bytes (or unreadable).
    Bad,
}

impl SigningKey {
    /// The key the environment holds: the variable `named` (from
    /// `[remote] signing_key_env`), which must be set, else
    /// `RELOCACHE_SIGNING_KEY`; `None` when signing is off.
    pub fn from_env(named: Option<&str>) -> Result<Option<SigningKey>, SigningError> {
        let (var, from_manifest) = match named {
            Some(v) => (v, true),
            None => (ENV_KEY, false),
        };
        let value = std::env::var_os(var).filter(|v| !v.is_empty());
        let source = KeySource {
            var: var.to_owned(),
            from_manifest,
        };
        match value {
            None if from_manifest => Err(SigningError::Unset {
                var: var.to_owned(),
            }),
            None => Ok(None),
            Some(v) => SigningKey::new(v.as_encoded_bytes(), source).map(Some),
        }
    }

    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: &[u8], source: KeySource) -> Result<SigningKey, SigningError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(SigningError::TooShort {
                from: source,
                len: bytes.len(),
            });
        }
        Ok(SigningKey {
            derived: blake3::derive_key(CONTEXT, bytes),
            source,
        })
    }

    /// Where the key came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The MAC of entry `entry` stored under `key`: each length-prefixed,
    /// so no other split of the same bytes has the same MAC.
    pub fn sign(&self, key: &Key, entry: &[u8]) -> blake3::Hash {
        let k = &key.0 .0;
        let mut h = blake3::Hasher::new_keyed(&self.derived);
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(entry.len() as u64).to_le_bytes());
        h.update(entry);
        h.finalize()
    }

    /// The text of the signature of `entry` under `key`.
    pub fn signature(&self, key: &Key, entry: &[u8]) -> String {
        format!("{}\n", self.sign(key, entry).to_hex())
    }

    /// Checks `signature` (the text [`SigningKey::signature`] writes, or
    /// `None` when there is none) against `entry` under `key`. The
    /// comparison takes constant time (`blake3::Hash`'s `==`).
    pub fn check(&self, key: &Key, entry: &[u8], signature: Option<&[u8]>) -> Verdict {
        let Some(text) = signature else {
            return Verdict::Unsigned;
        };
        let parsed = std::str::from_utf8(text)
            .ok()
            .and_then(|t| blake3::Hash::from_hex(t.trim()).ok());
        match parsed {
            Some(mac) if mac == self.sign(key, entry) => Verdict::Valid,
            _ => Verdict::Bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn key(bytes: &[u8]) -> SigningKey {
        SigningKey::new(
            bytes,
            KeySource {
                var: ENV_KEY.into(),
                from_manifest: false,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_signature_binds_the_key_the_cache_key_and_the_bytes() {
        let k = key(b"0123456789abcdef-team");
        let (a, b) = (Key(Digest::of(b"a")), Key(Digest::of(b"b")));
        let sig = k.signature(&a, b"entry");
        assert_eq!(sig.len(), 65);
        assert_eq!(k.check(&a, b"entry", Some(sig.as_bytes())), Verdict::Valid);
        assert_eq!(k.check(&b, b"entry", Some(sig.as_bytes())), Verdict::Bad);
        assert_eq!(k.check(&a, b"entry!", Some(sig.as_bytes())), Verdict::Bad);
        assert_eq!(k.check(&a, b"entry", None), Verdict::Unsigned);
        assert_eq!(k.check(&a, b"entry", Some(b"not hex")), Verdict::Bad);
        let other = key(b"0123456789abcdef-other");
        assert_eq!(
            other.check(&a, b"entry", Some(sig.as_bytes())),
            Verdict::Bad
        );
        // The derived key, not the raw one: a plain keyed hash differs.
        assert_ne!(
            k.sign(&a, b"entry"),
            blake3::keyed_hash(&[0; 32], b"entry"),
            "sanity"
        );
    }

    /// The signature format: changing it makes every signed entry a
    /// bad-signature miss, so it changes only with a new context string.
    #[test]
    fn known_signature_is_pinned() {
        let k = key(b"relocache-test-signing-key");
        let cache_key = Key(Digest::of(b"key"));
        let sig = k.signature(&cache_key, b"schema = 2\n");
        assert_eq!(
            sig,
            "e54cca9a08f814c2543c54ca8e4236477a1f5ca0f6e8c68b0ec44c8169002fb7\n"
        );
        // The documented formula, spelled out.
        let mut message = 32u64.to_le_bytes().to_vec();
        message.extend_from_slice(&cache_key.0 .0);
        message.extend_from_slice(&11u64.to_le_bytes());
        message.extend_from_slice(b"schema = 2\n");
        let derived = blake3::derive_key(CONTEXT, b"relocache-test-signing-key");
        assert_eq!(
            sig.trim(),
            blake3::keyed_hash(&derived, &message).to_hex().as_str()
        );
    }

    #[test]
    fn the_key_never_shows_and_short_keys_are_refused() {
        let k = key(b"hunter2hunter2hunter2");
        assert!(!format!("{k:?}").contains("hunter2"));
        let short = SigningKey::new(
            b"short",
            KeySource {
                var: ENV_KEY.into(),
                from_manifest: false,
            },
        )
        .unwrap_err();
        assert!(short.to_string().contains("at least 16"), "{short}");
        assert!(!short.to_string().contains("short\n"), "{short}");
    }
}
