//! `unpack`: reading an archive into a depot. Streams members once,
//! classifies each ([`super::members`]), checks every blob against its
//! name while it streams ([`super::check`]), and publishes entries only after
//! the whole archive was read and every blob they name is present. Writes
//! the depot only through [`Depot`] methods.
//!
//! The new blobs go into one new pack ([`PackWriter`]), in one sequential
//! write, made durable with its index before the first entry is published:
//! restoring a CI cache then creates the outputs, not a file per blob as
//! well. An archive bringing fewer than [`LOOSE_LIMIT`] new blobs keeps
//! them loose, as git keeps a small fetch loose (`fetch.unpackLimit`).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};

use rayon::prelude::*;
use serde::Serialize;

use super::check::{
    check_error, stored_content_digest, Budget, CheckError, ContentCheck, CountingReader, Guard,
    Trip,
};
use super::members::{classify, Member};
use super::{
    ArchiveError, EntryRef, BUF, DEFAULT_MAX_RATIO, DEFAULT_MAX_SIZE, MAX_ENTRY_BYTES,
    MAX_SMALL_FILE,
};
use crate::depot::blobs::ZSTD_MAGIC;
use crate::depot::entries::{parse_entry, Entry};
use crate::depot::ingest::Durability;
use crate::depot::packs::PackWriter;
use crate::depot::variants::{parse_variants, Variants};
use crate::depot::{parse_config, Depot, DepotError, DEPOT_FORMAT};
use crate::digest::{Digest, Key};
use crate::report::Reporter;
use crate::signing::Verdict;
use crate::units::format_size;

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Bound on the decompressed stream, and on each blob's content.
    pub max_size: u64,
    /// Bound on decompressed / compressed bytes past [`BOMB_MIN`](super::BOMB_MIN); 0 turns it off.
    pub max_ratio: u64,
    /// The archive's size when known, for progress.
    pub archive_len: Option<u64>,
    /// Refuse the archive unless every entry carries a valid signature by
    /// this key (see [`crate::signing`]).
    pub require_signed: Option<crate::signing::SigningKey>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            max_size: DEFAULT_MAX_SIZE,
            max_ratio: DEFAULT_MAX_RATIO,
            archive_len: None,
            require_signed: None,
        }
    }
}

/// What `unpack` added to the depot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnpackSummary {
    /// Entries published, by key.
    pub entries_added: Vec<EntryRef>,
    /// Entries the depot already had.
    pub entries_present: u64,
    /// Blobs written.
    pub blobs_added: u64,
    /// Blobs the depot already had (verified, not written).
    pub blobs_present: u64,
    /// Bytes written into the depot (blobs as stored).
    pub bytes_added: u64,
    /// The id of the pack the new blobs went into; `None` when they were
    /// few enough to stay loose (or there were none).
    pub pack: Option<String>,
    /// Compressed bytes read.
    pub archive_bytes: u64,
    /// Decompressed tar bytes read.
    pub tar_bytes: u64,
}

/// State of one unpack.
pub(super) struct Unpacking<'a> {
    depot: &'a Depot,
    opts: &'a UnpackOptions,
    summary: UnpackSummary,
    entries: BTreeMap<Key, Entry>,
    /// Variants records, by base key: merged into the depot's after the
    /// entries are published.
    variants: BTreeMap<Key, Variants>,
    blobs: HashSet<Digest>,
    /// The depot's loose fan-out directories asked about so far, and
    /// whether each exists ([`Depot::holds_blob`]).
    loose_dirs: HashMap<PathBuf, bool>,
    /// With `require_signed`: each entry's member name and exact bytes.
    entry_texts: BTreeMap<Key, (String, String)>,
    /// Signature members, by key (kept whether or not they are checked).
    signatures: BTreeMap<Key, Vec<u8>>,
    trip: Rc<Cell<Option<Trip>>>,
    /// Small blobs read but not yet checked and written (see [`Pending`]).
    pending: Vec<Pending>,
    pending_bytes: usize,
    /// Compressed bytes read so far.
    compressed: Arc<AtomicU64>,
    /// Content of every blob checked so far.
    content: Arc<AtomicU64>,
    /// Where new blobs go.
    sink: Sink,
    /// The batch of small blobs being checked, if any.
    in_check: Option<InCheck>,
    /// The thread appending checked batches, started by the first.
    appender: Option<Appender>,
    /// Buffers of blobs already written, back from the appender for the
    /// next blobs read: a buffer is zeroed only where it grows, never
    /// again per blob.
    spare: Option<mpsc::Receiver<Vec<u8>>>,
}

/// A batch of small blobs being checked on all cores, then handed to the
/// [`Appender`]: `Ok(false)` when the appender had stopped (its failure
/// says why), `Err` the batch's first failure in archive order.
type InCheck = std::thread::JoinHandle<Result<bool, ArchiveError>>;

/// The thread that appends checked batches to the pack in archive order
/// (with loose blobs, written by their check, it only counts them), so
/// that reading the stream, checking one batch and writing the one before
/// run at once. It holds at most one batch waiting: reading never runs
/// more than two batches ahead of the disk.
struct Appender {
    tx: mpsc::SyncSender<Checked>,
    handle: std::thread::JoinHandle<Appended>,
    /// Whether it appends to the pack (else the blobs are loose or were all
    /// present when it started).
    packs: bool,
}

/// A checked batch: its blobs and their content sizes.
type Checked = (Vec<Pending>, Vec<u64>);

/// What the appender did, and its failure, after which it wrote nothing
/// more and took no more batches.
#[derive(Default)]
struct Appended {
    blobs_added: u64,
    blobs_present: u64,
    bytes_added: u64,
    failed: Option<ArchiveError>,
}

impl Drop for Unpacking<'_> {
    /// An unpack that fails waits for the batch still being checked, so no
    /// thread of it outlives the call.
    fn drop(&mut self) {
        if let Some(checking) = self.in_check.take() {
            let _ = checking.join();
        }
        if let Some(appender) = self.appender.take() {
            drop(appender.tx);
            let _ = appender.handle.join();
        }
    }
}

/// Where an unpack's new blobs go, decided by the first that needs writing.
enum Sink {
    /// No new blob written yet.
    Undecided,
    /// Loose files: a small archive.
    Loose,
    /// One new pack, published before the entries; shared with the thread
    /// appending a checked batch while the stream is read on.
    Pack(Arc<Mutex<PackWriter>>),
}

/// An archive bringing fewer new blobs than this keeps them loose (git's
/// default `fetch.unpackLimit`). Below it a pack saves little (creating a
/// hundred small files takes milliseconds), while loose blobs need no
/// repacking by gc, serve hard links, and keep a depot that never received
/// a large archive readable by a relocache without packs. The decision is
/// taken at the first batch of blobs ([`PENDING_COUNT`] blobs or
/// [`PENDING_BYTES`]): only an archive that ends within it stays loose.
pub(super) const LOOSE_LIMIT: usize = 100;

/// A small blob member read into memory, to be checked and written with the
/// rest of its batch on all cores while the stream is read on.
pub(super) struct Pending {
    name: String,
    digest: Digest,
    bytes: Vec<u8>,
    /// Already in the depot or earlier in the archive: check only.
    present: bool,
}

/// Blobs up to this size are batched; larger ones are streamed one by one.
pub(super) const PENDING_MAX_BLOB: u64 = 4 << 20;
/// A batch is processed once it holds this many blobs or bytes.
pub(super) const PENDING_COUNT: usize = 128;
pub(super) const PENDING_BYTES: usize = 32 << 20;

/// Checks one batched blob against its name and returns its content size;
/// with `loose` and unless present, also writes it into the depot as a
/// loose file (durable with the batch's `syncfs`).
pub(super) fn settle_pending(
    depot: &Depot,
    limit: u64,
    budget: &Budget,
    p: &Pending,
    loose: bool,
) -> Result<u64, ArchiveError> {
    let (actual, size) = stored_content_digest(&p.bytes, limit, budget)
        .map_err(|e| check_error(&p.name, limit, budget, e))?;
    if actual != p.digest {
        return Err(ArchiveError::BlobMismatch {
            member: p.name.clone(),
            actual,
        });
    }
    if loose && !p.present {
        let mut staged = depot.ingest_blob()?;
        staged.write_all(&p.bytes)?;
        staged.persist(&p.digest, &actual, Durability::Batched)?;
    }
    Ok(size)
}

/// The appender's loop: appends each checked batch's new blobs to `pack`
/// (or, without one, counts the loose blobs their check wrote) and hands
/// their buffers back through `spare`.
fn append_batches(
    batches: mpsc::Receiver<Checked>,
    pack: Option<Arc<Mutex<PackWriter>>>,
    spare: mpsc::Sender<Vec<u8>>,
) -> Appended {
    let mut done = Appended::default();
    for (batch, sizes) in batches {
        let mut pack = pack
            .as_ref()
            .map(|p| p.lock().expect("the pack writer's lock"));
        for (p, size) in batch.iter().zip(sizes) {
            if p.present {
                done.blobs_present += 1;
                continue;
            }
            if let Some(pack) = pack.as_mut() {
                let raw = !p.bytes.starts_with(&ZSTD_MAGIC);
                // Checked against its name by the batch's check.
                if let Err(e) = pack.add_checked(&p.digest, &p.bytes, raw, size) {
                    done.failed = Some(pack_error(&p.name, e));
                    return done;
                }
            }
            done.blobs_added += 1;
            done.bytes_added += p.bytes.len() as u64;
        }
        drop(pack);
        for p in batch {
            let _ = spare.send(p.bytes);
        }
    }
    done
}

/// A blob member on its way into a pack: every byte the pack writer pulls
/// passes the archive's own content check ([`ContentCheck`]: the limits and
/// the budget) first, so a decompression bomb stops here, before the
/// writer's own verification decompresses it.
struct Checking<R> {
    inner: R,
    check: ContentCheck,
    got: u64,
    failed: Option<Failed>,
}

/// Why a [`Checking`] reader stopped.
enum Failed {
    Read(io::Error),
    Check(CheckError),
}

impl<R: Read> Read for Checking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failed = Some(Failed::Read(e));
                return Err(io::Error::other("the archive could not be read"));
            }
        };
        self.got += n as u64;
        if let Err(e) = self.check.feed(&buf[..n]) {
            self.failed = Some(Failed::Check(e));
            return Err(io::Error::other("the blob failed the archive's checks"));
        }
        Ok(n)
    }
}

impl Unpacking<'_> {
    /// What the blobs' content may add up to now: `--max-size`, and past
    /// [`BOMB_MIN`] `--max-ratio` times the compressed bytes read so far.
    fn budget(&self) -> Budget {
        Budget {
            used: self.content.clone(),
            compressed: Some(self.compressed.clone()),
            max_size: self.opts.max_size,
            max_ratio: self.opts.max_ratio,
        }
    }

    /// Sends the pending blobs to be checked on all cores, then appended to
    /// the pack by the [`Appender`] (loose ones are written by the check),
    /// while the stream is read on: the thread reading the archive neither
    /// hashes nor writes small blobs. One batch is checked at a time; the
    /// one before is waited for first, so a failure surfaces a batch late at
    /// most, and within a batch the first in archive order is the one
    /// reported. `last`: the archive has no more blobs; every batch is
    /// written before this returns.
    fn flush_pending(&mut self, last: bool) -> Result<(), ArchiveError> {
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let new = batch.iter().filter(|p| !p.present).count();
        if new > 0 && matches!(self.sink, Sink::Undecided) {
            self.sink = if last && new < LOOSE_LIMIT {
                Sink::Loose
            } else {
                Sink::Pack(Arc::new(Mutex::new(self.depot.pack_writer()?)))
            };
        }
        self.wait_for_check()?;
        if !batch.is_empty() {
            let tx = self.appender()?.tx.clone();
            let loose = matches!(self.sink, Sink::Loose);
            let (depot, limit, budget) = (self.depot.clone(), self.opts.max_size, self.budget());
            self.in_check = Some(std::thread::spawn(move || {
                let sizes = batch
                    .par_iter()
                    .map(|p| settle_pending(&depot, limit, &budget, p, loose))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Result<Vec<u64>, _>>()?;
                Ok(tx.send((batch, sizes)).is_ok())
            }));
        }
        if last {
            self.wait_for_check()?;
            self.finish_appender()?;
        }
        Ok(())
    }

    /// The appender for the sink as it is now: started when the first
    /// batch is checked, and started again once a pack is opened after
    /// batches of blobs all present (or a large blob) went by without one.
    fn appender(&mut self) -> Result<&Appender, ArchiveError> {
        let pack = match &self.sink {
            Sink::Pack(pack) => Some(pack.clone()),
            _ => None,
        };
        if (self.appender.as_ref()).is_some_and(|a| a.packs != pack.is_some()) {
            self.finish_appender()?;
        }
        Ok(self.appender.get_or_insert_with(|| {
            let (tx, rx) = mpsc::sync_channel(1);
            let (spare_tx, spare_rx) = mpsc::channel();
            let packs = pack.is_some();
            let handle = std::thread::spawn(move || append_batches(rx, pack, spare_tx));
            self.spare = Some(spare_rx);
            Appender { tx, handle, packs }
        }))
    }

    /// Waits for the batch being checked, if any.
    fn wait_for_check(&mut self) -> Result<(), ArchiveError> {
        let Some(checking) = self.in_check.take() else {
            return Ok(());
        };
        match checking.join().expect("checking a batch of blobs panicked") {
            Ok(true) => Ok(()),
            // The appender stopped: its failure is the one to report. Only
            // a failure stops it while batches are handed over; were it
            // ever otherwise, the batch it did not take must still fail
            // the unpack, never go missing.
            Ok(false) => self.finish_appender().and(Err(ArchiveError::Io {
                action: "append blobs to the new pack in",
                path: self.depot.root().to_path_buf(),
                source: io::Error::other("the thread writing the pack stopped"),
            })),
            Err(e) => Err(e),
        }
    }

    /// Waits for the appender to write every batch handed to it, and counts
    /// what it added.
    fn finish_appender(&mut self) -> Result<(), ArchiveError> {
        let Some(Appender { tx, handle, .. }) = self.appender.take() else {
            return Ok(());
        };
        drop(tx);
        let done = handle.join().expect("appending blobs to the pack panicked");
        self.summary.blobs_added += done.blobs_added;
        self.summary.blobs_present += done.blobs_present;
        self.summary.bytes_added += done.bytes_added;
        done.failed.map_or(Ok(()), Err)
    }

    /// The pack new blobs go into, opened when the first needs it; `None`
    /// when this unpack keeps its blobs loose.
    fn pack(&mut self) -> Result<Option<Arc<Mutex<PackWriter>>>, ArchiveError> {
        if matches!(self.sink, Sink::Undecided) {
            self.sink = Sink::Pack(Arc::new(Mutex::new(self.depot.pack_writer()?)));
        }
        Ok(match &self.sink {
            Sink::Pack(pack) => Some(pack.clone()),
            _ => None,
        })
    }

    /// An I/O error from the stream: a tripped limit, or corruption.
    fn read_err(&self, e: io::Error) -> ArchiveError {
        match self.trip.get() {
            Some(Trip::TooLarge) => ArchiveError::TooLarge {
                limit: self.opts.max_size,
            },
            Some(Trip::Bomb {
                decompressed,
                compressed,
            }) => ArchiveError::Bomb {
                ratio: self.opts.max_ratio,
                decompressed,
                compressed,
            },
            None => ArchiveError::Corrupt(e),
        }
    }

    fn member<R: Read>(&mut self, mut m: tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let name = String::from_utf8_lossy(&m.path_bytes()).into_owned();
        let bad = |problem: &str| ArchiveError::BadMember {
            member: name.clone(),
            problem: problem.to_owned(),
        };
        use tar::EntryType as T;
        let kind = m.header().entry_type();
        let is_dir = match kind {
            T::Regular => false,
            T::Directory => true,
            T::Symlink => return Err(bad("is a symbolic link (a depot archive holds none)")),
            T::Link => return Err(bad("is a hard link (a depot archive holds none)")),
            T::Char | T::Block => return Err(bad("is a device file")),
            T::Fifo => return Err(bad("is a fifo")),
            other => {
                return Err(bad(&format!(
                    "has tar type `{}`, not a regular file or directory",
                    other.as_byte() as char
                )))
            }
        };
        if std::str::from_utf8(&m.path_bytes()).is_err() {
            return Err(bad("is not valid UTF-8"));
        }
        let size = m.size();
        match classify(&name, is_dir).map_err(|p| bad(&p))? {
            Member::Dir => Ok(()),
            Member::CacheTag => {
                self.small(&mut m, &name, size)?;
                Ok(())
            }
            Member::DepotToml => {
                let text = self.small(&mut m, &name, size)?;
                let config = parse_config(&text, Path::new(crate::depot::layout::DEPOT_TOML))
                    .map_err(|e| {
                        bad(&format!(
                            "is not a valid DEPOT.toml: {}",
                            e.source_text().lines().next().unwrap_or_default()
                        ))
                    })?;
                if config.format > DEPOT_FORMAT {
                    return Err(ArchiveError::NewerFormat {
                        found: config.format,
                    });
                }
                if config.format < DEPOT_FORMAT {
                    return Err(ArchiveError::OlderFormat {
                        found: config.format,
                    });
                }
                Ok(())
            }
            Member::Blob(d) => self.blob(&mut m, &name, d, size),
            Member::Entry(k) => self.entry(&mut m, &name, k, size),
            Member::Variants(k) => self.variants(&mut m, &name, k, size),
            Member::Signature(k) => {
                let text = self.small(&mut m, &name, size)?;
                insert_once(&mut self.signatures, &name, k, k, text.into_bytes())
            }
        }
    }

    /// Reads a member of at most `limit` bytes completely.
    fn read_all(
        &self,
        m: &mut impl Read,
        name: &str,
        size: u64,
        limit: u64,
        what: &str,
    ) -> Result<String, ArchiveError> {
        if size > limit {
            return Err(ArchiveError::BadMember {
                member: name.to_owned(),
                problem: format!(
                    "is {}, too large for {what} (at most {})",
                    format_size(size),
                    format_size(limit)
                ),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        m.read_to_end(&mut bytes).map_err(|e| self.read_err(e))?;
        if bytes.len() as u64 != size {
            return Err(ArchiveError::Truncated);
        }
        String::from_utf8(bytes).map_err(|_| ArchiveError::BadMember {
            member: name.to_owned(),
            problem: "is not UTF-8 text".into(),
        })
    }

    fn small(&self, m: &mut impl Read, name: &str, size: u64) -> Result<String, ArchiveError> {
        self.read_all(m, name, size, MAX_SMALL_FILE, "this file")
    }

    fn entry(
        &mut self,
        m: &mut impl Read,
        name: &str,
        key: Key,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let text = self.read_all(m, name, size, MAX_ENTRY_BYTES, "an entry")?;
        let entry = parse_entry(&text).map_err(|message| ArchiveError::BadMember {
            member: name.to_owned(),
            problem: format!("is not a valid entry: {message}"),
        })?;
        let recorded = entry.key;
        insert_once(&mut self.entries, name, key, recorded, entry)?;
        if self.opts.require_signed.is_some() {
            self.entry_texts.insert(key, (name.to_owned(), text));
        }
        Ok(())
    }

    /// With `require_signed`: the first entry (in key order, the archive's)
    /// without a valid signature refuses the whole archive.
    fn check_signatures(&self) -> Result<(), ArchiveError> {
        let Some(signing) = &self.opts.require_signed else {
            return Ok(());
        };
        for (key, (member, text)) in &self.entry_texts {
            let sig = self.signatures.get(key).map(Vec::as_slice);
            let (problem, help) = match signing.check(key, text.as_bytes(), sig) {
                Verdict::Valid => continue,
                Verdict::Unsigned => (
                    "has no signature (--require-signed)",
                    "make the archive with `relocache pack` while the signing key is set",
                ),
                Verdict::Bad => (
                    "is not signed with this signing key (--require-signed)",
                    "the archive was made with another key, or its entry was changed after packing: make it again with the team's key, and check who can write where it is stored",
                ),
            };
            let e = &self.entries[key];
            return Err(ArchiveError::Unsigned {
                member: member.clone(),
                target: format!("{}/{}", e.project, e.target),
                problem,
                help,
            });
        }
        Ok(())
    }

    /// A variants record: sealed, sane (paths normalized; absolute only
    /// outside any project, see [`crate::discovered`]), named by its key.
    fn variants(
        &mut self,
        m: &mut impl Read,
        name: &str,
        key: Key,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let text = self.read_all(m, name, size, MAX_ENTRY_BYTES, "a variants record")?;
        let v = parse_variants(&text).map_err(|message| ArchiveError::BadMember {
            member: name.to_owned(),
            problem: format!("is not a valid variants record: {message}"),
        })?;
        let recorded = v.key;
        insert_once(&mut self.variants, name, key, recorded, v)
    }

    fn blob(
        &mut self,
        m: &mut impl Read,
        name: &str,
        d: Digest,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let present = self.blobs.contains(&d) || self.depot.holds_blob(&d, &mut self.loose_dirs);
        if size <= PENDING_MAX_BLOB {
            let mut bytes = (self.spare.as_ref())
                .and_then(|spare| spare.try_recv().ok())
                .unwrap_or_default();
            if bytes.len() < size as usize {
                bytes.resize(size as usize, 0);
            }
            bytes.truncate(size as usize);
            let mut got = 0;
            while got < bytes.len() {
                match m.read(&mut bytes[got..]) {
                    Ok(0) => return Err(ArchiveError::Truncated),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.read_err(e)),
                }
            }
            self.blobs.insert(d);
            self.pending_bytes += bytes.len();
            self.pending.push(Pending {
                name: name.to_owned(),
                digest: d,
                bytes,
                present,
            });
            if self.pending.len() >= PENDING_COUNT || self.pending_bytes >= PENDING_BYTES {
                self.flush_pending(false)?;
            }
            return Ok(());
        }
        if present {
            self.stream_loose(m, name, d, size, false)?;
            self.summary.blobs_present += 1;
            self.blobs.insert(d);
            return Ok(());
        }
        // The pack needs the content size first: a raw blob's is its length,
        // a zstd frame's is in its header (a frame without it stays loose).
        let mut head = Vec::with_capacity(18);
        (&mut *m)
            .take(18)
            .read_to_end(&mut head)
            .map_err(|e| self.read_err(e))?;
        let mut m = io::Cursor::new(head.as_slice()).chain(m);
        let content = if head.starts_with(&ZSTD_MAGIC) {
            zstd::zstd_safe::get_frame_content_size(&head)
                .ok()
                .flatten()
        } else {
            Some(size)
        };
        let raw = !head.starts_with(&ZSTD_MAGIC);
        match content {
            Some(content) if self.pack()?.is_some() => {
                self.stream_packed(&mut m, name, (d, raw), size, content)?
            }
            _ => self.stream_loose(&mut m, name, d, size, true)?,
        }
        self.summary.blobs_added += 1;
        self.summary.bytes_added += size;
        self.blobs.insert(d);
        Ok(())
    }

    /// Streams a large blob member into the pack, checked on the way.
    fn stream_packed(
        &mut self,
        m: &mut impl Read,
        name: &str,
        (d, raw): (Digest, bool),
        size: u64,
        content: u64,
    ) -> Result<(), ArchiveError> {
        let limit = self.opts.max_size;
        let budget = self.budget();
        let mut checking = Checking {
            inner: m,
            check: ContentCheck::new(limit, budget.clone()),
            got: 0,
            failed: None,
        };
        let Sink::Pack(pack) = &self.sink else {
            unreachable!("stream_packed is called with a pack open")
        };
        let added =
            pack.lock()
                .expect("the pack writer's lock")
                .add(&d, &mut checking, raw, content);
        match checking.failed.take() {
            Some(Failed::Read(e)) => return Err(self.read_err(e)),
            Some(Failed::Check(e)) => return Err(check_error(name, limit, &budget, e)),
            None => {}
        }
        if checking.got != size {
            return Err(ArchiveError::Truncated);
        }
        let (actual, _) = checking
            .check
            .finish()
            .map_err(|e| check_error(name, limit, &budget, e))?;
        if actual != d {
            return Err(ArchiveError::BlobMismatch {
                member: name.to_owned(),
                actual,
            });
        }
        added.map_err(|e| pack_error(name, e))
    }

    /// Streams a large blob member through the content check, into a loose
    /// file when `write` (synced with the batch before any entry is
    /// published).
    fn stream_loose(
        &self,
        m: &mut impl Read,
        name: &str,
        d: Digest,
        size: u64,
        write: bool,
    ) -> Result<(), ArchiveError> {
        let mut staged = if write {
            Some(self.depot.ingest_blob()?)
        } else {
            None
        };
        let budget = self.budget();
        let mut check = ContentCheck::new(self.opts.max_size, budget.clone());
        let mut buf = vec![0u8; BUF];
        let mut got = 0u64;
        let limit = self.opts.max_size;
        let checked =
            |r: Result<(), CheckError>| r.map_err(|e| check_error(name, limit, &budget, e));
        loop {
            let n = match m.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(e)),
            };
            got += n as u64;
            if let Some(s) = staged.as_mut() {
                s.write_all(&buf[..n])?;
            }
            checked(check.feed(&buf[..n]))?;
        }
        if got != size {
            return Err(ArchiveError::Truncated);
        }
        let actual = match check.finish() {
            Ok((a, _)) => a,
            Err(e) => return checked(Err(e)),
        };
        if actual != d {
            return Err(ArchiveError::BlobMismatch {
                member: name.to_owned(),
                actual,
            });
        }
        if let Some(s) = staged {
            // Synced all at once before any entry is published.
            s.persist(&d, &actual, Durability::Batched)?;
        }
        Ok(())
    }

    /// Publishes the held entries once every blob they name is available
    /// and durable.
    fn publish(&mut self) -> Result<(), ArchiveError> {
        // Before the last blobs are written: a refused archive adds as
        // little as possible (and publishes nothing).
        self.check_signatures()?;
        self.flush_pending(true)?;
        for e in self.entries.values() {
            for b in e.blobs() {
                if !self.blobs.contains(&b) && !self.depot.has_blob(&b) {
                    return Err(ArchiveError::MissingBlob {
                        key: e.key,
                        target: format!("{}/{}", e.project, e.target),
                        blob: b,
                    });
                }
            }
        }
        // The pack, then its index, durable (a pack dropped unfinished by
        // an error above leaves nothing); then the loose blobs.
        if let Sink::Pack(pack) = std::mem::replace(&mut self.sink, Sink::Loose) {
            // flush_pending(true) ended the appender: no other holder.
            let pack = Arc::into_inner(pack)
                .expect("no batch is in flight")
                .into_inner()
                .expect("the pack writer's lock");
            self.summary.pack = pack.finish()?.map(|id| id.to_string());
        }
        self.depot.sync_batch()?;
        for e in self.entries.values() {
            match self.depot.read_entry(&e.key) {
                Ok(Some(_)) => self.summary.entries_present += 1,
                // Absent, or damaged: the verified copy replaces it.
                Ok(None) | Err(_) => {
                    if let Err(err) = self.depot.write_entry(e) {
                        // All or nothing: take back what this unpack published
                        // (complete entries, seen by others only for a moment).
                        for added in &self.summary.entries_added {
                            let _ = self.depot.remove_entry(&added.key);
                        }
                        return Err(err.into());
                    }
                    self.summary.entries_added.push(EntryRef::of(e));
                }
            }
        }
        // Entries first: a record only leads to them. Merged into the
        // depot's own (a damaged one is replaced).
        for v in self.variants.values() {
            let mut merged = match self.depot.read_variants(&v.key) {
                Ok(Some(local)) => local,
                Ok(None) | Err(_) => Variants::new(v.key),
            };
            if merged.merge(v) {
                self.depot.write_variants(&merged)?;
            }
        }
        Ok(())
    }
}

/// Merges the archive read from `input` into `depot`; see the module docs
/// for what is accepted. On any error no entry of the archive is published.
pub fn unpack(
    depot: &Depot,
    input: impl Read,
    opts: &UnpackOptions,
    reporter: &dyn Reporter,
) -> Result<UnpackSummary, ArchiveError> {
    let compressed = Arc::new(AtomicU64::new(0));
    let decompressed = Rc::new(Cell::new(0u64));
    let trip = Rc::new(Cell::new(None));
    let counting = CountingReader {
        inner: input,
        n: compressed.clone(),
    };
    let decoder = zstd::Decoder::new(counting).map_err(ArchiveError::Corrupt)?;
    let guard = Guard {
        inner: decoder,
        compressed: compressed.clone(),
        out: decompressed.clone(),
        max_size: opts.max_size,
        max_ratio: opts.max_ratio,
        trip: trip.clone(),
    };
    let mut state = Unpacking {
        depot,
        opts,
        summary: UnpackSummary::default(),
        entries: BTreeMap::new(),
        variants: BTreeMap::new(),
        blobs: HashSet::new(),
        loose_dirs: HashMap::new(),
        entry_texts: BTreeMap::new(),
        signatures: BTreeMap::new(),
        trip,
        pending: Vec::new(),
        pending_bytes: 0,
        compressed: compressed.clone(),
        content: Default::default(),
        sink: Sink::Undecided,
        in_check: None,
        appender: None,
        spare: None,
    };
    let mut archive = tar::Archive::new(guard);
    {
        let members = archive.entries().map_err(|e| state.read_err(e))?;
        for m in members {
            let m = m.map_err(|e| state.read_err(e))?;
            state.member(m)?;
            if let Some(total) = opts.archive_len {
                reporter.progress("unpack", compressed.load(Relaxed).min(total), total);
            }
        }
    }
    // tar stops at the first zero block. A complete archive has at least one
    // more (and maybe record padding), all zeros; a stream that simply ends
    // was cut at a member boundary.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    let mut trailer = 0u64;
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(state.read_err(e)),
        };
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(ArchiveError::BadMember {
                member: "(after the end of the archive)".into(),
                problem: "is data after tar's end-of-archive marker".into(),
            });
        }
        trailer += n as u64;
    }
    if trailer < 512 {
        return Err(ArchiveError::Truncated);
    }
    state.publish()?;
    if let Some(total) = opts.archive_len {
        reporter.progress("unpack", total, total);
    }
    state.summary.archive_bytes = compressed.load(Relaxed);
    state.summary.tar_bytes = decompressed.get();
    Ok(std::mem::take(&mut state.summary))
}

/// Keeps the record member `name` holds under `key`, the key its name gives:
/// it must record that key, and appear once (`pack` writes each record once;
/// which copy would count is a question a sound archive never raises).
fn insert_once<T>(
    map: &mut BTreeMap<Key, T>,
    name: &str,
    key: Key,
    recorded: Key,
    value: T,
) -> Result<(), ArchiveError> {
    let bad = |problem: String| ArchiveError::BadMember {
        member: name.to_owned(),
        problem,
    };
    if recorded != key {
        return Err(bad(format!("records key {recorded} under another name")));
    }
    if map.insert(key, value).is_some() {
        return Err(bad("appears twice".into()));
    }
    Ok(())
}

/// The error for a blob the pack writer refused after the archive's checks
/// passed: its zstd frame declared another size than it holds, or the
/// depot failed.
fn pack_error(name: &str, e: DepotError) -> ArchiveError {
    match e {
        DepotError::Mismatch { actual, .. } => ArchiveError::BlobMismatch {
            member: name.to_owned(),
            actual,
        },
        DepotError::Damaged { message, .. } => ArchiveError::BadMember {
            member: name.to_owned(),
            problem: format!("cannot be stored as it is: {message}"),
        },
        e => ArchiveError::Depot(e),
    }
}
