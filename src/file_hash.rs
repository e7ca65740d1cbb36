//! Content hashing of files on disk: blake3, streaming or through a memory
//! map guarded against the file's truncation ([`mapped`]), never a
//! whole-file load into memory. Owns nothing else: no caching, no walking.

mod mapped;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::digest::Digest;

/// Files at least this large are not read into one buffer whole.
const WHOLE_MAX: u64 = 256 * 1024;
/// Files at least this large are hashed on several threads.
pub(crate) const RAYON_MIN: u64 = 4 * 1024 * 1024;

/// Opens a regular file for reading. A fifo (whose plain open blocks until
/// a writer comes), socket or device is an error, never a hang.
pub fn open_regular(path: &Path) -> io::Result<File> {
    open_regular_len(path).map(|(file, _)| file)
}

/// [`open_regular`], with the file's size from the same `fstat`.
pub fn open_regular_len(path: &Path) -> io::Result<(File, u64)> {
    let file = open_nonblocking(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(not_regular());
    }
    Ok((file, md.len()))
}

thread_local! {
    /// The reused read buffer of [`hash_file_len`] and [`hash_file_unsized`].
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (a fifo, socket or device cannot be read as one)",
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
    if len >= WHOLE_MAX {
        return hash_file(path);
    }
    // The caller's stat found a file of `len` bytes; only a size of 0 can be
    // a fifo, socket or device (their sizes are 0), so only then is the
    // opened file checked: no second stat per file on the hot path.
    let mut file = if len == 0 {
        open_regular(path)?
    } else {
        open_nonblocking(path)?
    };
    READ_BUF.with(|b| {
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
/// and, when large, read on every core. A symlink found there (one swapped
/// in since the walk) is an error, never followed.
pub fn hash_file_unsized(path: &Path) -> io::Result<(Digest, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    const BUF: usize = 64 * 1024;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    READ_BUF.with(|b| {
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
        if md.len() >= WHOLE_MAX {
            return hash_large(&mut file, md.len());
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

/// blake3 of a file's bytes, with the number of bytes hashed. A file of
/// [`WHOLE_MAX`] bytes or more is hashed through a guarded memory map
/// (see [`mapped`]), on every core from [`RAYON_MIN`] bytes, as b3sum does.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let (mut file, len) = open_regular_len(path)?;
    if len >= WHOLE_MAX {
        return hash_large(&mut file, len);
    }
    hash_reader(&mut file)
}

/// blake3 of the first `len` bytes of `file`, through a map where one can
/// be made, else by reading. A file that shrinks meanwhile is an error.
fn hash_large(file: &mut File, len: u64) -> io::Result<(Digest, u64)> {
    let Some(map) = mapped::Mapped::new(file, len) else {
        return if len >= RAYON_MIN {
            hash_pieces(file, len)
        } else {
            hash_reader(file)
        };
    };
    let mut hasher = blake3::Hasher::new();
    if len >= RAYON_MIN {
        hasher.update_rayon(map.bytes());
    } else {
        hasher.update(map.bytes());
    }
    if map.truncated() {
        return Err(shrank());
    }
    Ok((hasher.finalize().into(), len))
}

fn shrank() -> io::Error {
    io::Error::other("the file shrank while it was hashed")
}

/// Bytes read and hashed as one piece by [`hash_pieces`]: a power of two
/// of blake3 chunks, so each piece is a subtree of blake3's tree.
const PIECE: u64 = 1 << 20;

/// blake3 of the first `len` bytes of `file` (more than one [`PIECE`]),
/// read with `pread` piece by piece in parallel and joined through
/// blake3's tree (`hazmat`), as its rayon mode joins a map's: for when no
/// map can be made. The copy costs: on 3 × 64 MiB just written (large page
/// cache folios, cheap to map) 1.2× the map's time.
fn hash_pieces(file: &File, len: u64) -> io::Result<(Digest, u64)> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_root, Mode};
    debug_assert!(len > PIECE);
    let left = left_subtree_len(len);
    let (l, r) = rayon::join(
        || subtree(file, 0, left),
        || subtree(file, left, len - left),
    );
    let root = merge_subtrees_root(&l?, &r?, Mode::Hash);
    Ok((root.into(), len))
}

/// The chaining value of the subtree of `len` bytes at `offset`.
fn subtree(file: &File, offset: u64, len: u64) -> io::Result<blake3::hazmat::ChainingValue> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, HasherExt, Mode};
    use std::os::unix::fs::FileExt;
    if len <= PIECE {
        thread_local! {
            static PIECE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        return PIECE_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            buf.resize(len as usize, 0);
            file.read_exact_at(&mut buf, offset).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    shrank()
                } else {
                    e
                }
            })?;
            Ok(blake3::Hasher::new()
                .set_input_offset(offset)
                .update(&buf)
                .finalize_non_root())
        });
    }
    let left = left_subtree_len(len);
    let (l, r) = rayon::join(
        || subtree(file, offset, left),
        || subtree(file, offset + left, len - left),
    );
    Ok(merge_subtrees_non_root(&l?, &r?, Mode::Hash))
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
        for size in [
            0usize,
            10,
            WHOLE_MAX as usize + 3,
            RAYON_MIN as usize,
            RAYON_MIN as usize + 5,
            RAYON_MIN as usize + PIECE as usize * 3 + 1024,
            RAYON_MIN as usize * 3 - 1,
            RAYON_MIN as usize * 4 + 1,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let p = dir.path().join(format!("f{size}"));
            File::create(&p).unwrap().write_all(&data).unwrap();
            let (d, n) = hash_file(&p).unwrap();
            assert_eq!(d, Digest::of(&data));
            assert_eq!(n, size as u64);
            assert_eq!(hash_file_len(&p, size as u64).unwrap(), (d, n));
            assert_eq!(hash_file_unsized(&p).unwrap(), (d, n));
            if size as u64 > PIECE {
                // The fallback when no map can be made.
                let f = File::open(&p).unwrap();
                assert_eq!(hash_pieces(&f, size as u64).unwrap(), (d, n), "{size}");
            }
        }
    }

    /// Cuts the file at `p` to `len` bytes, as another process would.
    fn truncate(p: &Path, len: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    #[test]
    fn unsized_reads_every_length_around_its_buffer_and_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let k = 64 * 1024;
        for size in [1, k - 1, k, k + 1, 2 * k, 3 * k + 7, WHOLE_MAX as usize - 1] {
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

    #[test]
    fn a_large_file_that_shrinks_while_hashed_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let len = RAYON_MIN * 4;
        File::create(&p).unwrap().set_len(len).unwrap();
        let file = File::open(&p).unwrap();
        // As if truncated between the stat and the reads.
        truncate(&p, len / 2);
        let e = hash_pieces(&file, len).unwrap_err();
        assert!(e.to_string().contains("shrank"), "{e}");
    }

    #[test]
    fn a_mapped_file_truncated_while_hashed_is_an_error_not_a_sigbus() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let len = RAYON_MIN * 4;
        let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8 + 1).collect();
        File::create(&p).unwrap().write_all(&data).unwrap();
        let mut file = File::open(&p).unwrap();
        assert_eq!(hash_large(&mut file, len).unwrap().0, Digest::of(&data));
        let map = mapped::Mapped::new(&file, len).expect("a map");
        truncate(&p, len / 2);
        // Without the guard this read is killed by SIGBUS.
        let tail: u64 = map.bytes()[len as usize / 2..]
            .iter()
            .map(|b| *b as u64)
            .sum();
        assert_eq!(tail, 0, "the lost pages read as zeros");
        assert!(map.truncated());
        assert_eq!(map.bytes()[0], 1, "the kept pages still read the file");
        drop(map);
        let e = hash_large(&mut file, len).unwrap_err();
        assert!(e.to_string().contains("shrank"), "{e}");
        // The file as it now is hashes as it should.
        assert_eq!(
            hash_file(&p).unwrap(),
            (Digest::of(&data[..len as usize / 2]), len / 2)
        );
    }
}
