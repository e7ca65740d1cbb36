//! Tar member classification: which depot layout form a member path names
//! ([`crate::depot::layout`] spells the names), or why it is refused. The
//! accepted names are the archive format and are pinned.

use crate::depot::layout::{
    is_shard, CACHEDIR_TAG_FILE, DEPOT_TOML, ENTRIES_DIR, ENTRY_SUFFIX, LEGACY_ENTRIES_DIR,
    LOCAL_DIRS, OBJECTS_DIR, SIGNATURES_DIR, SIGNATURE_SUFFIX, VARIANTS_DIR, VARIANTS_SUFFIX,
    VERSIONED_PREFIXES,
};
use crate::digest::{Digest, Key};

/// What a member path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Member {
    Dir,
    CacheTag,
    DepotToml,
    Blob(Digest),
    Entry(Key),
    /// A variants record, by its base key.
    Variants(Key),
    /// The signature of the entry of a key.
    Signature(Key),
}

/// Maps a member path to the one depot layout form it must be, or says why not.
pub(super) fn classify(path: &str, is_dir: bool) -> Result<Member, String> {
    if path.starts_with('/') {
        return Err("is an absolute path".into());
    }
    let trimmed = if is_dir {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts.contains(&"..") {
        return Err("climbs out of the depot with `..`".into());
    }
    if trimmed.contains('\\') || parts.iter().any(|c| c.is_empty() || *c == ".") {
        return Err("is not a normalized relative path".into());
    }
    let outside = || {
        let top = parts[0];
        let newer = VERSIONED_PREFIXES.iter().any(|p| top.starts_with(p))
            || top.starts_with("signatures-v");
        if LOCAL_DIRS.contains(&top) {
            format!("is not part of the depot layout an archive carries (`{top}/` is local state)")
        } else if top == LEGACY_ENTRIES_DIR {
            "uses depot layout `entries-v1` of an older relocache, whose entries carry no checksum (make the archive again with this relocache)".to_owned()
        } else if newer && ![OBJECTS_DIR, ENTRIES_DIR, VARIANTS_DIR, SIGNATURES_DIR].contains(&top)
        {
            format!("uses depot layout `{top}`, which this relocache does not know (made by a newer relocache? then upgrade)")
        } else {
            "is not part of the depot layout".to_owned()
        }
    };
    if is_dir {
        return match parts.as_slice() {
            [OBJECTS_DIR | ENTRIES_DIR | VARIANTS_DIR | SIGNATURES_DIR] => Ok(Member::Dir),
            [OBJECTS_DIR | ENTRIES_DIR | VARIANTS_DIR | SIGNATURES_DIR, s] if is_shard(s) => {
                Ok(Member::Dir)
            }
            _ => Err(outside()),
        };
    }
    match parts.as_slice() {
        [CACHEDIR_TAG_FILE] => Ok(Member::CacheTag),
        [DEPOT_TOML] => Ok(Member::DepotToml),
        [OBJECTS_DIR, s, name] if is_shard(s) => match name.parse::<Digest>() {
            Ok(d) if name.starts_with(s) => Ok(Member::Blob(d)),
            _ => Err(
                "is not named `objects-v1/ab/<blake3 hex>` with `ab` its first two digits".into(),
            ),
        },
        [ENTRIES_DIR, s, name] if is_shard(s) => {
            match name
                .strip_suffix(ENTRY_SUFFIX)
                .map(|h| (h, h.parse::<Key>()))
            {
                Some((h, Ok(k))) if h.starts_with(s) => Ok(Member::Entry(k)),
                _ => Err(
                    "is not named `entries-v2/ab/<key hex>.toml` with `ab` its first two digits"
                        .into(),
                ),
            }
        }
        [VARIANTS_DIR, s, name] if is_shard(s) => {
            match name
                .strip_suffix(VARIANTS_SUFFIX)
                .map(|h| (h, h.parse::<Key>()))
            {
                Some((h, Ok(k))) if h.starts_with(s) => Ok(Member::Variants(k)),
                _ => Err(
                    "is not named `variants-v1/ab/<key hex>.toml` with `ab` its first two digits"
                        .into(),
                ),
            }
        }
        [SIGNATURES_DIR, s, name] if is_shard(s) => {
            match name
                .strip_suffix(SIGNATURE_SUFFIX)
                .map(|h| (h, h.parse::<Key>()))
            {
                Some((h, Ok(k))) if h.starts_with(s) => Ok(Member::Signature(k)),
                _ => Err(
                    "is not named `signatures-v1/ab/<key hex>.mac` with `ab` its first two digits"
                        .into(),
                ),
            }
        }
        _ => Err(outside()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_depot_layout_is_accepted() {
        let hex = Digest::of(b"x").to_hex();
        let blob = format!("objects-v1/{}/{hex}", &hex[..2]);
        assert!(matches!(classify(&blob, false), Ok(Member::Blob(_))));
        let entry = format!("entries-v2/{}/{hex}.toml", &hex[..2]);
        assert!(matches!(classify(&entry, false), Ok(Member::Entry(_))));
        let variants = format!("variants-v1/{}/{hex}.toml", &hex[..2]);
        assert!(matches!(
            classify(&variants, false),
            Ok(Member::Variants(_))
        ));
        assert_eq!(classify("variants-v1/0a/", true), Ok(Member::Dir));
        let signature = format!("signatures-v1/{}/{hex}.mac", &hex[..2]);
        assert!(matches!(
            classify(&signature, false),
            Ok(Member::Signature(_))
        ));
        assert!(classify(&format!("signatures-v1/{}/{hex}", &hex[..2]), false).is_err());
        assert!(classify("signatures-v2/ab/x.mac", false)
            .unwrap_err()
            .contains("newer relocache"));
        assert!(classify(&format!("variants-v1/{}/{hex}", &hex[..2]), false).is_err());
        assert_eq!(classify("objects-v1/", true), Ok(Member::Dir));
        assert_eq!(classify("entries-v2/0a/", true), Ok(Member::Dir));
        assert_eq!(classify("DEPOT.toml", false), Ok(Member::DepotToml));
        let wrong_shard = if &hex[..2] == "00" { "01" } else { "00" };
        for bad in [
            format!("objects-v1/{wrong_shard}/{hex}"),
            format!("objects-v1/{}/{}", &hex[..2], hex.to_uppercase()),
            format!("entries-v2/{}/{hex}", &hex[..2]),
            format!("./{blob}"),
            format!("/{blob}"),
            format!("objects-v1/{}/../../{hex}", &hex[..2]),
            "objects-v1//x".into(),
            "tmp/x".into(),
            "projects-v2/p/t.toml".into(),
            "DEPOT.toml/x".into(),
        ] {
            assert!(classify(&bad, false).is_err(), "{bad}");
        }
        assert!(classify("tmp/", true).is_err());
        assert!(classify("objects-v2/ab/x", false)
            .unwrap_err()
            .contains("newer relocache"));
        assert!(classify("../x", false).unwrap_err().contains(".."));
        assert!(classify("/etc/passwd", false)
            .unwrap_err()
            .contains("absolute"));
    }
}
