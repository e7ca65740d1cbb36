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
        return Err(not_regular());
    }
    Ok(file)
}

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (a fifo, socket or device cannot be hashed)",
    )
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
        let filled = read_full(&mut file, &mut buf)?;
        Ok((Digest::of(&buf[..filled]), filled as u64))
    })
}

/// blake3 of the regular file at `path` when nobody stat'ed it (a walk
/// that took the type from the directory): one `open` and `read`s into a
/// reused 64 KiB buffer up to the end of the file, so a small file costs no
/// stat at all; one that fills the buffer is stat'ed through the open file
/// and, when large, hashed by [`hash_file`]. A symlink found there (one
/// swapped in since the walk) is an error, never followed.
pub fn hash_file_unsized(path: &Path) -> io::Result<(Digest, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    const BUF: usize = 64 * 1024;
    thread_local! {
        static BUF_64K: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    BUF_64K.with(|b| {
        let mut buf = b.borrow_mut();
        buf.resize(BUF, 0);
        let filled = read_full(&mut file, &mut buf)?;
        if filled < BUF {
            // A fifo, socket or device reads as empty (or fails) here.
            if filled == 0 && !file.metadata()?.is_file() {
                return Err(not_regular());
            }
            return Ok((Digest::of(&buf[..filled]), filled as u64));
        }
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(not_regular());
        }
        if md.len() >= MMAP_MIN {
            return hash_file(path);
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&buf);
        loop {
            let n = read_full(&mut file, &mut buf)?;
            hasher.update(&buf[..n]);
            if n < BUF {
                return Ok((hasher.finalize().into(), hasher.count()));
            }
        }
    })
}

/// Reads into `buf` until it is full or the file ends; the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
            assert_eq!(hash_file_unsized(&p).unwrap(), (d, n));
        }
    }

    #[test]
    fn unsized_reads_every_length_around_its_buffer_and_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let k = 64 * 1024;
        for size in [1, k - 1, k, k + 1, 2 * k, 3 * k + 7, MMAP_MIN as usize - 1] {
            let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let p = dir.path().join(format!("f{size}"));
            File::create(&p).unwrap().write_all(&data).unwrap();
            assert_eq!(
                hash_file_unsized(&p).unwrap(),
                (Digest::of(&data), size as u64),
                "{size} bytes"
            );
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("f1"), &link).unwrap();
        assert!(
            hash_file_unsized(&link).is_err(),
            "a symlink is not followed"
        );
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let e = hash_file_unsized(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
