//! [`Digest`] and [`Key`]: the two 32-byte blake3 values the depot is addressed by,
//! and [`RootDigest`], which an entry records to tell where it was built.
//!
//! They are distinct types so a blob name can never be used as an entry key or
//! the other way round.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// blake3 of a blob's uncompressed bytes (or of a canonical encoding).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

/// Identifies one execution of a target; see [`crate::key`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub Digest);

/// Where an entry was built, without saying where: the keyed blake3 of the
/// project root's canonical path bytes (`derive_key("relocache project root
/// v1", path)`). Two builds at the same place, on any machine, record the
/// same value; the path itself never enters a depot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootDigest(pub Digest);

/// blake3 `derive_key` context of [`RootDigest`].
pub const ROOT_DIGEST_CONTEXT: &str = "relocache project root v1";

impl RootDigest {
    /// The digest of the root spelled `canonical` (symlinks resolved, so
    /// every way of reaching one directory gives one value).
    pub fn of(canonical: &std::path::Path) -> RootDigest {
        use std::os::unix::ffi::OsStrExt;
        let mut h = blake3::Hasher::new_derive_key(ROOT_DIGEST_CONTEXT);
        h.update(canonical.as_os_str().as_bytes());
        RootDigest(h.finalize().into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.0.short()
    }
}

impl FromStr for RootDigest {
    type Err = BadHex;
    fn from_str(s: &str) -> Result<RootDigest, BadHex> {
        s.parse().map(RootDigest)
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a 64-digit lowercase hex digest")]
pub struct BadHex(pub String);

impl Digest {
    /// blake3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_owned()
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Digest {
        Digest(*h.as_bytes())
    }
}

impl FromStr for Digest {
    type Err = BadHex;
    fn from_str(s: &str) -> Result<Digest, BadHex> {
        let lower = s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if s.len() != 64 || !lower {
            return Err(BadHex(s.to_owned()));
        }
        blake3::Hash::from_hex(s)
            .map(Digest::from)
            .map_err(|_| BadHex(s.to_owned()))
    }
}

impl FromStr for Key {
    type Err = BadHex;
    fn from_str(s: &str) -> Result<Key, BadHex> {
        s.parse().map(Key)
    }
}

impl Key {
    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.0.short()
    }
}

macro_rules! hex_serde {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.short())
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_serde!(Digest);
hex_serde!(Key);
hex_serde!(RootDigest);

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned: entries on disk carry it, so it must not drift.
    #[test]
    fn root_digest_is_pinned_and_never_the_path() {
        let d = RootDigest::of(std::path::Path::new("/home/me/proj"));
        // printf %s /home/me/proj | b3sum --derive-key "relocache project root v1"
        assert_eq!(
            d.to_hex(),
            "bb5927a919f2362fc40c5201b7e38ac71e16ade6e60d297b1189153aafae16e6"
        );
        assert_ne!(d.0, Digest::of(b"/home/me/proj"));
        assert_ne!(d, RootDigest::of(std::path::Path::new("/home/me/proj2")));
    }

    #[test]
    fn hex_round_trips_and_rejects_uppercase() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        assert!(d.to_hex().to_uppercase().parse::<Digest>().is_err());
        assert!("abc".parse::<Digest>().is_err());
    }
}
