//! Content hashing of files on disk: blake3, streaming or memory-mapped, never
//! a whole-file load into memory. Owns nothing else: no caching, no walking.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::digest::Digest;

/// Files at least this large are hashed through a memory map.
const MMAP_MIN: u64 = 256 * 1024;
/// Files at least this large are also hashed on several threads.
pub(crate) const RAYON_MIN: u64 = 4 * 1024 * 1024;

/// Opens a regular file for reading. A fifo (whose plain open blocks until
/// a writer comes), socket or device is an error, never a hang.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = open_nonblocking(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a fifo, socket or device cannot be hashed)",
        ));
    }
    Ok(file)
}

/// Opens `path` for reading without waiting for a fifo's writer.
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// blake3 of a file whose size `len` the caller just read from `stat`:
/// small files take one `open` + one `read` into a reused buffer (exactly
/// `len` bytes, as git does), large ones go through [`hash_file`]. A file
/// that changes size meanwhile hashes to what was read; the stat memo and
/// the after-build input check compare stamps, so that never sticks.
pub fn hash_file_len(path: &Path, len: u64) -> io::Result<(Digest, u64)> {
    if len >= MMAP_MIN {
        return hash_file(path);
    }
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // The caller's stat found a file of `len` bytes; only a size of 0 can be
    // a fifo, socket or device (their sizes are 0), so only then is the
    // opened file checked: no second stat per file on the hot path.
    let mut file = if len == 0 {
        open_regular(path)?
    } else {
        open_nonblocking(path)?
    };
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.resize(len as usize, 0);
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((Digest::of(&buf[..filled]), filled as u64))
    })
}

/// blake3 of a file's bytes, with the number of bytes hashed.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len >= MMAP_MIN {
        let mut hasher = blake3::Hasher::new();
        if len >= RAYON_MIN {
            hasher.update_mmap_rayon(path)?;
        } else {
            hasher.update_mmap(path)?;
        }
        return Ok((hasher.finalize().into(), hasher.count()));
    }
    hash_reader(&mut file)
}

/// blake3 of everything `reader` yields.
pub fn hash_reader(reader: &mut impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().into(), hasher.count()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn small_and_mapped_files_hash_like_blake3() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 10, MMAP_MIN as usize + 3, RAYON_MIN as usize + 5] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let p = dir.path().join(format!("f{size}"));
            File::create(&p).unwrap().write_all(&data).unwrap();
            let (d, n) = hash_file(&p).unwrap();
            assert_eq!(d, Digest::of(&data));
            assert_eq!(n, size as u64);
            assert_eq!(hash_file_len(&p, size as u64).unwrap(), (d, n));
        }
    }
}
