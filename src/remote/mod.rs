//! The shared remote cache: a small synchronous facade over Apache OpenDAL
//! (S3 and S3-compatible stores, Redis, WebDAV; GCS and Azure as opt-in
//! features). The core stays synchronous: [`Remote`] owns a tokio runtime
//! and every public method blocks. It never prints, writes a depot only
//! through [`Depot`] methods (a blob through [`Depot::ingest_blob`]), and
//! never restores a byte it has not re-hashed.
//!
//! ```text
//! <bucket>/<prefix>/relocache/v1/objects/<blake3-hex>   a blob exactly as stored in a depot
//!                                                       (zstd or raw)
//! <bucket>/<prefix>/relocache/v1/entries/<key-hex>      an entry's TOML, uploaded after its blobs
//! <bucket>/<prefix>/relocache/v1/signatures/<key-hex>   with signing on: the entry's MAC (64 hex
//!                                                       digits, newline), written before it
//! <bucket>/<prefix>/relocache/v1/variants/<key-hex>     a variants record (depfile targets: the
//!                                                       path sets seen per base key), sealed,
//!                                                       merged and written after the entry
//! <bucket>/<prefix>/relocache/v1/probe/<unique>         write probes, deleted at once
//! ```
//!
//! Policy (sccache's and Gradle's): every failure or timeout is a miss,
//! reported as a warning, never a failed build; after [`MAX_FAILURES`]
//! failures in a row the remote is disabled for the rest of the process.
//! Uploads are idempotent: a HEAD (stat) before each PUT, never relying on
//! `If-None-Match`. A read-write remote that refuses the first write probe
//! is used read-only.
//!
//! With a signing key ([`Remote::with_signing`], see [`crate::signing`])
//! an entry is used only when its signature object holds this key's MAC of
//! its exact bytes: one without is [`Failure::Unsigned`], one with another
//! [`Failure::BadSignature`], both misses that write nothing into the depot
//! and are overwritten by this process's next upload of that key. Without
//! a key, signatures are neither read nor written.

mod backend;
mod check;
pub mod config;
mod io;
mod variants;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use check::CheckReport;
pub use config::{Mode, RemoteSettings, RemoteUrl, Service};
use io::Io;
pub use variants::FetchedVariants;

use crate::depot::entries::{parse_entry, Entry};
use crate::depot::Depot;
use crate::digest::{Digest, Key};
use crate::signing::{SigningKey, Verdict};

/// Layout version on the remote (in every object name).
pub const LAYOUT: &str = "relocache/v1";
/// Failures in a row after which the remote is disabled for the run.
pub const MAX_FAILURES: u32 = 3;
/// Transfers in flight at once, across all build workers.
pub const IN_FLIGHT: usize = 8;
/// Bytes per ranged read or write request.
const CHUNK: u64 = 8 * 1024 * 1024;

/// Why a remote could not be set up (exit 2: a configuration problem).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL's service was not compiled in.
    #[error("the remote `{url}` needs {service} support, which this relocache was built without\n  help: rebuild with `cargo install relocache --features {service}`, or set RELOCACHE_REMOTE=off")]
    NotCompiled {
        /// The masked URL.
        url: String,
        /// The cargo feature.
        service: &'static str,
    },
    /// OpenDAL refused the configuration.
    #[error("cannot use the remote `{url}`: {message}\n  help: {help}")]
    Config {
        /// The masked URL.
        url: String,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
    /// The async runtime could not start.
    #[error("could not start the remote client: {0}")]
    Runtime(std::io::Error),
}

/// Why one remote operation did not succeed. To a build, each is a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The remote was disabled earlier in this run (already reported).
    Disabled,
    /// A request failed (unreachable, refused, credentials, server error).
    Error(String),
    /// A request took longer than the timeout.
    Timeout(String),
    /// Downloaded data does not match its name: never used.
    Corrupt {
        /// The blob, when a blob (not the entry) was corrupt.
        blob: Option<Digest>,
        /// What is wrong.
        message: String,
    },
    /// The remote answers but lacks something an entry needs.
    Incomplete(String),
    /// Signing is on and the entry has no signature: never used.
    Unsigned(String),
    /// Signing is on and the entry's signature is not this key's over its
    /// bytes: never used.
    BadSignature(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Disabled => f.write_str("the remote is disabled for this run"),
            Failure::Error(m)
            | Failure::Timeout(m)
            | Failure::Corrupt { message: m, .. }
            | Failure::Incomplete(m)
            | Failure::Unsigned(m)
            | Failure::BadSignature(m) => f.write_str(m),
        }
    }
}

/// An entry fetched into the depot.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The entry, now in the depot with all its blobs.
    pub entry: Entry,
    /// Bytes downloaded (stored form).
    pub bytes_down: u64,
}

/// What an upload sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uploaded {
    /// Bytes sent (stored form).
    pub bytes_up: u64,
    /// Whether the entry itself was sent (false: the remote had it).
    pub entry: bool,
}

/// The remote cache of one process.
pub struct Remote {
    settings: RemoteSettings,
    rt: tokio::runtime::Runtime,
    op: opendal::Operator,
    limit: Arc<Semaphore>,
    /// Where a plain TCP connect tells quickly whether the server is up.
    addr: Option<(String, u16)>,
    /// Signs uploads and checks downloads when set.
    signing: Option<SigningKey>,
    state: Mutex<State>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.settings.url)
            .field("mode", &self.settings.mode)
            .field("signing", &self.signing)
            .finish()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Failures in a row.
    failures: u32,
    /// Whether an operation has succeeded since the last failure.
    healthy: bool,
    disabled: bool,
    /// `Some(true)` once a write probe succeeded, `Some(false)` once it failed.
    writable: Option<bool>,
    /// Blobs found corrupt on the remote: uploaded again even though present.
    poisoned: HashSet<Digest>,
    /// Entries found damaged on the remote: uploaded again even though present.
    poisoned_entries: HashSet<Key>,
}

fn object_path(d: &Digest) -> String {
    format!("{LAYOUT}/objects/{}", d.to_hex())
}

fn entry_path(k: &Key) -> String {
    format!("{LAYOUT}/entries/{}", k.0.to_hex())
}

fn signature_path(k: &Key) -> String {
    format!("{LAYOUT}/signatures/{}", k.0.to_hex())
}

impl Remote {
    /// Sets up the client for `settings`. Nothing is sent yet.
    pub fn open(settings: RemoteSettings) -> Result<Remote, RemoteError> {
        let url = &settings.url;
        if !url.service.compiled() {
            return Err(RemoteError::NotCompiled {
                url: url.to_string(),
                service: url.service.feature(),
            });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("relocache-remote")
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        let op = {
            let _guard = rt.enter();
            backend::operator(url).map_err(|e| RemoteError::Config {
                url: url.to_string(),
                message: mask(&e.to_string(), url),
                help: backend::help(url.service).to_owned(),
            })?
        };
        let addr = backend::address(&settings.url);
        Ok(Remote {
            addr,
            settings,
            rt,
            op,
            limit: Arc::new(Semaphore::new(IN_FLIGHT)),
            signing: None,
            state: Mutex::default(),
        })
    }

    /// Signs every entry uploaded and uses only entries signed by `key`
    /// (`None`: signing off, signatures neither read nor written).
    pub fn with_signing(mut self, key: Option<SigningKey>) -> Remote {
        self.signing = key;
        self
    }

    /// The signing key in use, if any.
    pub fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// The settings in use.
    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// Whether uploads are still attempted (read-write and not fallen back).
    pub fn writes(&self) -> bool {
        self.settings.mode == Mode::ReadWrite && self.state.lock().unwrap().writable != Some(false)
    }

    fn io(&self) -> Io {
        Io {
            op: self.op.clone(),
            timeout: self.settings.timeout,
            url: self.settings.url.clone(),
            limit: self.limit.clone(),
        }
    }

    /// Runs one operation under the failure policy. Before the first one,
    /// and after a failure, a plain TCP connect checks that the server is
    /// up: some clients (Redis) retry a refused connection for seconds.
    fn guarded<T>(&self, f: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
        let healthy = {
            let s = self.state.lock().unwrap();
            if s.disabled {
                return Err(Failure::Disabled);
            }
            s.healthy
        };
        let result = match (&self.addr, healthy) {
            (Some(addr), false) => match self.rt.block_on(connect(addr, self.settings.timeout)) {
                Ok(()) => self.rt.block_on(f),
                Err(e) => Err(e),
            },
            _ => self.rt.block_on(f),
        };
        let mut s = self.state.lock().unwrap();
        match result {
            Ok(v) => {
                s.failures = 0;
                s.healthy = true;
                Ok(v)
            }
            Err(Failure::Error(_) | Failure::Timeout(_)) if s.disabled => Err(Failure::Disabled),
            Err(Failure::Error(m)) => Err(Failure::Error(self.count_failure(&mut s, m))),
            Err(Failure::Timeout(m)) => Err(Failure::Timeout(self.count_failure(&mut s, m))),
            Err(other) => Err(other),
        }
    }

    fn count_failure(&self, s: &mut State, message: String) -> String {
        s.failures += 1;
        s.healthy = false;
        if s.failures >= MAX_FAILURES {
            s.disabled = true;
            format!(
                "{message}; after {MAX_FAILURES} failures in a row the remote is disabled for the rest of this run"
            )
        } else {
            message
        }
    }

    /// Looks `key` up on the remote. On a hit every blob the entry needs and
    /// `depot` lacks is downloaded, re-hashed and stored, then the entry is
    /// written: afterwards `depot` holds a complete entry. `Ok(None)` is a
    /// plain miss.
    pub fn fetch(&self, depot: &Depot, key: &Key) -> Result<Option<Fetched>, Failure> {
        let _span = tracing::debug_span!("remote fetch", %key).entered();
        let io = self.io();
        let bad = Mutex::new(Vec::new());
        let result = self.guarded(async {
            let path = entry_path(key);
            let Some(bytes) = io.call(format!("read {path}"), io.op.read(&path)).await? else {
                return Ok(None);
            };
            let damaged = |why: String| Failure::Corrupt {
                blob: None,
                message: format!("the remote entry {key} is damaged ({why}); it was not used"),
            };
            let bytes = bytes.to_vec();
            if let Some(signing) = &self.signing {
                let sig_path = signature_path(key);
                let sig = io
                    .call(format!("read {sig_path}"), io.op.read(&sig_path))
                    .await?
                    .map(|b| b.to_vec());
                match signing.check(key, &bytes, sig.as_deref()) {
                    Verdict::Valid => {}
                    Verdict::Unsigned => {
                        return Err(Failure::Unsigned(format!(
                            "the remote entry {key} has no signature; it was not used"
                        )))
                    }
                    Verdict::Bad => {
                        return Err(Failure::BadSignature(format!(
                            "the remote entry {key} is not signed with this signing key; it was not used"
                        )))
                    }
                }
            }
            let mut bytes_down = bytes.len() as u64;
            let text = String::from_utf8(bytes).map_err(|_| damaged("not UTF-8".into()))?;
            let entry = parse_entry(&text).map_err(|e| damaged(e.to_string()))?;
            if entry.key != *key {
                return Err(damaged(format!("it records key {}", entry.key)));
            }
            let mut set = tokio::task::JoinSet::new();
            for d in entry.blobs() {
                if !depot.has_blob(&d) {
                    set.spawn(io.clone().download(depot.clone(), d));
                }
            }
            let mut first_err = None;
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(n)) => bytes_down += n,
                    Ok(Err(e)) => {
                        if let Failure::Corrupt { blob: Some(d), .. } = &e {
                            bad.lock().unwrap().push(*d);
                        }
                        first_err.get_or_insert(e);
                    }
                    Err(j) => {
                        first_err
                            .get_or_insert(Failure::Error(format!("download task failed: {j}")));
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            Ok(Some((entry, bytes_down)))
        });
        let (entry, bytes_down) = match result {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(None),
            Err(e) => {
                // Remember what is corrupt, so this process uploads good
                // copies over it after rebuilding.
                let mut s = self.state.lock().unwrap();
                s.poisoned.extend(bad.into_inner().unwrap());
                if let Failure::Corrupt { blob: None, .. }
                | Failure::Unsigned(_)
                | Failure::BadSignature(_) = &e
                {
                    s.poisoned_entries.insert(*key);
                }
                return Err(e);
            }
        };
        depot
            .write_entry(&entry)
            .map_err(|e| Failure::Incomplete(format!("could not write the fetched entry: {e}")))?;
        Ok(Some(Fetched { entry, bytes_down }))
    }

    /// Uploads `entry` and its blobs from `depot`: each object only when the
    /// remote lacks it (or had it corrupt), then the entry; for an entry of
    /// a target with a depfile, last, its path set into the remote's
    /// variants record of its base key (never a set whose entry is not
    /// there: only this entry's, not the local record's). Does nothing in
    /// read-only mode. The first upload of a read-write remote probes a
    /// write; when that fails the remote is used read-only from then on.
    pub fn upload(&self, depot: &Depot, entry: &Entry) -> Result<Uploaded, Failure> {
        let _span = tracing::debug_span!("remote upload", key = %entry.key).entered();
        if !self.writes() {
            return Ok(Uploaded::default());
        }
        {
            // Serialize the probe: the first worker probes, the others wait.
            let mut s = self.state.lock().unwrap();
            if s.writable.is_none() && !s.disabled {
                let io = self.io();
                let reach = match (&self.addr, s.healthy) {
                    (Some(addr), false) => self.rt.block_on(connect(addr, self.settings.timeout)),
                    _ => Ok(()),
                };
                match reach {
                    Ok(()) => {}
                    Err(Failure::Timeout(m)) => {
                        return Err(Failure::Timeout(self.count_failure(&mut s, m)))
                    }
                    Err(e) => {
                        return Err(Failure::Error(self.count_failure(&mut s, e.to_string())))
                    }
                }
                if let Err(e) = self.rt.block_on(io.probe()) {
                    // Reads working while the write failed means the remote
                    // refuses this machine's writes: use it read-only. Else it
                    // is unreachable, which is an ordinary failure.
                    if self.rt.block_on(io.read_check()).is_ok() {
                        s.writable = Some(false);
                        let m = format!(
                            "a test write to the remote failed ({e}); using it read-only for the rest of this run"
                        );
                        return Err(Failure::Error(self.count_failure(&mut s, m)));
                    }
                    return Err(match e {
                        Failure::Timeout(m) => Failure::Timeout(self.count_failure(&mut s, m)),
                        other => Failure::Error(self.count_failure(&mut s, other.to_string())),
                    });
                }
                s.writable = Some(true);
            }
        }
        let (poisoned, entry_poisoned) = {
            let s = self.state.lock().unwrap();
            (s.poisoned.clone(), s.poisoned_entries.contains(&entry.key))
        };
        let io = self.io();
        let blobs = entry.blobs();
        let entry_file = depot.entry_path(&entry.key);
        let key = entry.key;
        let (base, discovered) = (entry.base, entry.discovered_paths());
        let result = self.guarded(async {
            let mut set = tokio::task::JoinSet::new();
            for d in blobs {
                set.spawn(io.clone().upload(depot.clone(), d, poisoned.contains(&d)));
            }
            let mut bytes_up = 0;
            let mut first_err = None;
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(n)) => bytes_up += n,
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(j) => {
                        first_err.get_or_insert(Failure::Error(format!("upload task failed: {j}")));
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            // Only now, with every blob there, may the entry appear.
            let path = entry_path(&key);
            let present = !entry_poisoned
                && match &self.signing {
                    None => io
                        .call(format!("stat {path}"), io.op.stat(&path))
                        .await?
                        .is_some(),
                    Some(signing) => signed_present(&io, signing, &key).await?,
                };
            if !present {
                let text = std::fs::read(&entry_file).map_err(|e| {
                    Failure::Incomplete(format!("could not read the local entry: {e}"))
                })?;
                // The signature first: a reader between the two writes of a
                // new entry sees a plain miss rather than an unsigned entry.
                if let Some(signing) = &self.signing {
                    let sig_path = signature_path(&key);
                    let sig = signing.signature(&key, &text).into_bytes();
                    bytes_up += sig.len() as u64;
                    io.call_write(format!("write {sig_path}"), io.op.write(&sig_path, sig))
                        .await?;
                }
                bytes_up += text.len() as u64;
                io.call_write(format!("write {path}"), io.op.write(&path, text))
                    .await?;
            }
            // And only with the entry there may a record lead to it. Done
            // even when the entry was present: an uploader that stopped
            // between the two, or lost a race on the record, left it out.
            if let Some(base) = &base {
                bytes_up += variants::publish(&io, base, discovered).await?;
            }
            Ok(Uploaded {
                bytes_up,
                entry: !present,
            })
        });
        if result.is_ok() {
            let mut s = self.state.lock().unwrap();
            s.poisoned.retain(|d| !entry.blobs().contains(d));
            s.poisoned_entries.remove(&entry.key);
        }
        result
    }
}

/// Whether the remote holds an entry under `key` that `signing` signed:
/// an entry without a valid signature (uploaded without the key, by
/// someone else, or torn between two uploaders) is replaced.
async fn signed_present(io: &Io, signing: &SigningKey, key: &Key) -> Result<bool, Failure> {
    let path = entry_path(key);
    let Some(entry) = io.call(format!("read {path}"), io.op.read(&path)).await? else {
        return Ok(false);
    };
    let sig_path = signature_path(key);
    let sig = io
        .call(format!("read {sig_path}"), io.op.read(&sig_path))
        .await?;
    let sig = sig.map(|b| b.to_vec());
    Ok(signing.check(key, &entry.to_vec(), sig.as_deref()) == Verdict::Valid)
}

/// Connects to `addr` and hangs up, within `timeout` (at most 5 s).
async fn connect(addr: &(String, u16), timeout: Duration) -> Result<(), Failure> {
    let (host, port) = addr;
    let limit = timeout.min(Duration::from_secs(5));
    match tokio::time::timeout(
        limit,
        tokio::net::TcpStream::connect((host.as_str(), *port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Failure::Error(format!(
            "cannot connect to {host}:{port}: {e}"
        ))),
        Err(_) => Err(Failure::Timeout(format!(
            "connecting to {host}:{port} timed out after {}",
            humantime::format_duration(limit)
        ))),
    }
}

/// Replaces the URL's password in `text`, wherever a message echoes it.
fn mask(text: &str, url: &RemoteUrl) -> String {
    match url.password().filter(|p| !p.is_empty()) {
        Some(p) => text.replace(&p, "***"),
        None => text.to_owned(),
    }
}
