//! [`Digest`] and [`Key`]: the two 32-byte blake3 values the depot is addressed by.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_uppercase() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        assert!(d.to_hex().to_uppercase().parse::<Digest>().is_err());
        assert!("abc".parse::<Digest>().is_err());
    }
}
