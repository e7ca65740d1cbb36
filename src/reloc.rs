//! Relocatability scan: finds the bytes of absolute roots (project, depot)
//! embedded in output files, streaming in chunks with an overlap so a match
//! across a chunk boundary is not missed. Never loads a whole file.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// An absolute path to look for and the placeholder naming it.
#[derive(Debug, Clone)]
pub struct Needle {
    /// The absolute path text.
    pub text: String,
    /// `@project` or `@depot`.
    pub placeholder: &'static str,
}

/// A root found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Byte offset of the first occurrence.
    pub offset: u64,
    /// Which absolute path.
    pub text: String,
    /// Its placeholder.
    pub placeholder: &'static str,
}

/// The first occurrence of any needle in the file at `path`.
pub fn scan_file(path: &Path, needles: &[Needle]) -> io::Result<Option<Found>> {
    if needles.is_empty() {
        return Ok(None);
    }
    let finders: Vec<(memchr::memmem::Finder<'_>, &Needle)> = needles
        .iter()
        .map(|n| (memchr::memmem::Finder::new(n.text.as_bytes()), n))
        .collect();
    let overlap = needles.iter().map(|n| n.text.len()).max().unwrap_or(1) - 1;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut keep = 0usize; // bytes carried over from the previous chunk
    let mut base = 0u64; // file offset of buf[0]
    loop {
        let n = match file.read(&mut buf[keep..]) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let filled = keep + n;
        let mut best: Option<Found> = None;
        for (f, needle) in &finders {
            if let Some(i) = f.find(&buf[..filled]) {
                let off = base + i as u64;
                if best.as_ref().is_none_or(|b| off < b.offset) {
                    best = Some(Found {
                        offset: off,
                        text: needle.text.clone(),
                        placeholder: needle.placeholder,
                    });
                }
            }
        }
        if best.is_some() {
            return Ok(best);
        }
        keep = overlap.min(filled);
        buf.copy_within(filled - keep..filled, 0);
        base += (filled - keep) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_a_root_across_a_chunk_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let needle = "/home/user/project";
        let mut data = vec![b'x'; (1 << 20) - 5];
        data.extend_from_slice(needle.as_bytes());
        data.extend_from_slice(b"tail");
        File::create(&p).unwrap().write_all(&data).unwrap();
        let found = scan_file(
            &p,
            &[Needle {
                text: needle.into(),
                placeholder: "@project",
            }],
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.offset, (1 << 20) - 5);
        std::fs::write(&p, "clean").unwrap();
        assert_eq!(
            scan_file(
                &p,
                &[Needle {
                    text: needle.into(),
                    placeholder: "@project"
                }]
            )
            .unwrap(),
            None
        );
    }
}
