//! [`Io`]: one request or transfer under the timeout and the in-flight
//! limit, and how an OpenDAL error reads. Downloads are re-hashed before a
//! blob enters a depot (through `Depot::ingest_blob`); never decides policy
//! (the failure count and disabling live in `mod.rs`).

use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{mask, object_path, Failure, RemoteUrl, CHUNK, LAYOUT};
use crate::depot::ingest::{BlobIngest, Durability};
use crate::depot::Depot;
use crate::digest::Digest;

/// What one transfer task needs (cheap to clone into tasks).
#[derive(Clone)]
pub(super) struct Io {
    pub(super) op: opendal::Operator,
    pub(super) timeout: Duration,
    pub(super) url: RemoteUrl,
    pub(super) limit: Arc<Semaphore>,
}

impl Io {
    /// One request under the timeout; `Ok(None)` when the object is absent.
    pub(super) async fn call<T>(
        &self,
        what: String,
        fut: impl Future<Output = opendal::Result<T>>,
    ) -> Result<Option<T>, Failure> {
        match self.call_raw(what, fut).await {
            Ok(v) => Ok(v),
            Err((None, m)) => Err(Failure::Timeout(m)),
            Err((Some(_), m)) => Err(Failure::Error(m)),
        }
    }

    /// Like [`Io::call`] for a write: "not found" is a failure, not an
    /// absent object. S3 and Azure answer 404 to a write into a bucket or
    /// container that does not exist, and counting that as done would have
    /// every upload (and `remote check`'s probe) "succeed" into nothing.
    pub(super) async fn call_write<T>(
        &self,
        what: String,
        fut: impl Future<Output = opendal::Result<T>>,
    ) -> Result<T, Failure> {
        match self.call(what.clone(), fut).await? {
            Some(v) => Ok(v),
            None => Err(Failure::Error(format!(
                "{what}: the server answered \"not found\"\n  help: create the bucket or container the URL names (`{}`); relocache does not create it",
                self.url
            ))),
        }
    }

    /// Like [`Io::call`], keeping the error kind (`None`: timed out).
    async fn call_raw<T>(
        &self,
        what: String,
        fut: impl Future<Output = opendal::Result<T>>,
    ) -> Result<Option<T>, (Option<opendal::ErrorKind>, String)> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err((
                None,
                format!(
                    "{what} timed out after {}",
                    humantime::format_duration(self.timeout)
                ),
            )),
            Ok(Err(e)) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Ok(Err(e)) => Err((
                Some(kind(&e)),
                mask(&format!("{what}: {}", describe(&e)), &self.url),
            )),
            Ok(Ok(v)) => Ok(Some(v)),
        }
    }

    /// A metadata read of an object that never exists: proves the remote
    /// answers and accepts the credentials for reading.
    pub(super) async fn read_check(&self) -> Result<(), (Option<opendal::ErrorKind>, String)> {
        let path = format!("{LAYOUT}/entries/{}", "0".repeat(64));
        self.call_raw(format!("stat {path}"), self.op.stat(&path))
            .await
            .map(drop)
    }

    /// Writes and deletes a unique object.
    pub(super) async fn probe(&self) -> Result<(), Failure> {
        let unique = Digest::of(
            format!(
                "{}-{:?}-{:?}",
                std::process::id(),
                std::time::SystemTime::now(),
                std::thread::current().id()
            )
            .as_bytes(),
        );
        let path = format!("{LAYOUT}/probe/{}", unique.to_hex());
        self.call_write(
            format!("write {path}"),
            self.op.write(&path, b"probe".to_vec()),
        )
        .await?;
        self.call(format!("delete {path}"), self.op.delete(&path))
            .await?;
        Ok(())
    }

    /// Downloads blob `d` into a staging file of `depot`, re-hashes its
    /// content and only then renames it into place. Returns the bytes read.
    pub(super) async fn download(self, depot: Depot, d: Digest) -> Result<u64, Failure> {
        tracing::trace!(blob = %d, "remote: download");
        let _permit = self.limit.clone().acquire_owned().await;
        let path = object_path(&d);
        let local = |e: crate::depot::DepotError| Failure::Incomplete(format!("{e}"));
        let Some(meta) = self
            .call(format!("stat {path}"), self.op.stat(&path))
            .await?
        else {
            return Err(Failure::Incomplete(format!(
                "the remote entry names blob {d}, which the remote lacks"
            )));
        };
        let size = meta.content_length();
        let mut staged = depot.ingest_blob().map_err(local)?;
        if size > 0 {
            let Some(reader) = self
                .call(format!("read {path}"), self.op.reader(&path))
                .await?
            else {
                return Err(Failure::Incomplete(format!(
                    "blob {d} vanished from the remote"
                )));
            };
            let mut off = 0;
            while off < size {
                let end = (off + CHUNK).min(size);
                let Some(buf) = self
                    .call(format!("read {path}"), reader.read(off..end))
                    .await?
                else {
                    return Err(Failure::Incomplete(format!(
                        "blob {d} vanished from the remote"
                    )));
                };
                if buf.is_empty() {
                    break;
                }
                off += buf.len() as u64;
                staged
                    .file_mut()
                    .write_all(&buf.to_bytes())
                    .map_err(|e| Failure::Incomplete(format!("could not stage blob {d}: {e}")))?;
            }
        }
        tokio::task::spawn_blocking(move || {
            let actual = verify_staged(&staged, &d)?;
            staged
                .persist(&d, &actual, Durability::Now)
                .map_err(local)?;
            Ok(size)
        })
        .await
        .map_err(|e| Failure::Incomplete(format!("verifying blob {d} failed: {e}")))?
    }

    /// Uploads blob `d` of `depot` unless the remote has it (`force`: it had
    /// a corrupt copy). The local copy is verified first, so a damaged depot
    /// never poisons the shared cache. Returns the bytes sent.
    pub(super) async fn upload(self, depot: Depot, d: Digest, force: bool) -> Result<u64, Failure> {
        tracing::trace!(blob = %d, force, "remote: upload");
        let _permit = self.limit.clone().acquire_owned().await;
        let path = object_path(&d);
        if !force
            && self
                .call(format!("stat {path}"), self.op.stat(&path))
                .await?
                .is_some()
        {
            return Ok(0);
        }
        let check = depot.clone();
        tokio::task::spawn_blocking(move || check.copy_blob(&d, &mut std::io::sink()))
            .await
            .map_err(|e| Failure::Incomplete(format!("verifying blob {d} failed: {e}")))?
            .map_err(|e| Failure::Incomplete(format!("not uploading blob {d}: {e}")))?;
        // Loose or packed, the stored bytes are what the remote holds.
        let mut f = depot
            .open_blob(&d)
            .map_err(|e| Failure::Incomplete(format!("could not read blob {d}: {e}")))?
            .ok_or_else(|| Failure::Incomplete(format!("blob {d} is missing from the depot")))?;
        let size = f.stored_len();
        if size <= CHUNK {
            let mut bytes = Vec::with_capacity(size as usize);
            f.read_to_end(&mut bytes)
                .map_err(|e| Failure::Incomplete(format!("could not read blob {d}: {e}")))?;
            let n = bytes.len() as u64;
            self.call_write(format!("write {path}"), self.op.write(&path, bytes))
                .await?;
            return Ok(n);
        }
        let mut w = self
            .call_write(format!("write {path}"), self.op.writer(&path))
            .await?;
        let mut sent = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK as usize];
            let mut got = 0;
            while got < buf.len() {
                match f.read(&mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = w.abort().await;
                        return Err(Failure::Incomplete(format!("could not read blob {d}: {e}")));
                    }
                }
            }
            if got == 0 {
                break;
            }
            buf.truncate(got);
            sent += got as u64;
            if let Err(e) = self.call_write(format!("write {path}"), w.write(buf)).await {
                let _ = w.abort().await;
                return Err(e);
            }
        }
        self.call_write(format!("write {path}"), w.close()).await?;
        Ok(sent)
    }
}

/// The HTTP status of a failed request. opendal keeps it only in the error's
/// printed context (`response: Parts { status: 401, … }`).
fn http_status(e: &opendal::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("response: Parts { status: ")? + "response: Parts { status: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// The error's kind, with a refused login counted as refused access: some
/// services (WebDAV) report HTTP 401 as `Unexpected`.
fn kind(e: &opendal::Error) -> opendal::ErrorKind {
    match http_status(e) {
        Some(401 | 403) => opendal::ErrorKind::PermissionDenied,
        _ => e.kind(),
    }
}

/// An OpenDAL error in one line: its kind, the server's message (first
/// line, shortened) and the chain of causes (e.g. "connection refused").
fn describe(e: &opendal::Error) -> String {
    let mut s = kind(e).to_string();
    let status = http_status(e);
    if let Some(code) = status {
        s.push_str(&format!(" (HTTP {code})"));
    }
    let msg = e.message().lines().next().unwrap_or("").trim();
    // An error page's HTML says nothing the status did not.
    let html = status.is_some() && msg.starts_with('<');
    if !msg.is_empty() && !html {
        let short: String = msg.chars().take(200).collect();
        s.push_str(&format!(": {short}"));
    }
    let mut cause = std::error::Error::source(e);
    let mut causes = Vec::new();
    while let Some(c) = cause {
        let text = c.to_string();
        if !causes.contains(&text) && !s.contains(&text) {
            causes.push(text);
        }
        cause = c.source();
    }
    if !causes.is_empty() {
        s.push_str(&format!(" ({})", causes.join(": ")));
    }
    s
}

/// The digest of the staged stored bytes' content (zstd or raw), when it
/// is `d`.
fn verify_staged(staged: &BlobIngest, d: &Digest) -> Result<Digest, Failure> {
    let corrupt = |why: String| Failure::Corrupt {
        blob: Some(*d),
        message: format!("blob {d} downloaded from the remote is corrupt ({why}); it was not used"),
    };
    let file = staged
        .reopen()
        .map_err(|e| Failure::Incomplete(format!("could not reopen staged blob {d}: {e}")))?;
    let (actual, _) = crate::depot::blobs::with_stream(file, crate::depot::blobs::hash_stream)
        .and_then(|r| r)
        .map_err(|e| corrupt(format!("zstd: {e}")))?;
    if actual != *d {
        return Err(corrupt(format!("its content hashes to {}", actual.short())));
    }
    Ok(actual)
}
