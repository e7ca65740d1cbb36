//! `relocache remote check`: reachability, credentials, writability and
//! latency of the configured remote, as a [`CheckReport`]. Writes only its
//! own probe object (deleted at once); never touches a depot.

use std::time::Instant;

use serde::Serialize;

use super::{backend, connect, Mode, Remote, Service};

impl Remote {
    /// Reachability, credentials, writability and latency, for `remote check`.
    pub fn check(&self) -> CheckReport {
        let io = self.io();
        let mut report = CheckReport {
            url: self.settings.url.to_string(),
            service: self.settings.url.service,
            configured_mode: self.settings.mode,
            timeout: humantime::format_duration(self.settings.timeout).to_string(),
            reachable: false,
            credentials: false,
            writable: None,
            mode: None,
            latency_ms: None,
            signing: self.signing.as_ref().map(|k| k.source().clone()),
            problems: vec![],
        };
        if let Some(addr) = &self.addr {
            if let Err(e) = self.rt.block_on(connect(addr, self.settings.timeout)) {
                report.problems.push(format!(
                    "the remote cannot be reached ({e})\n  help: check the URL, the network and that the server runs"
                ));
                return report;
            }
        }
        let started = Instant::now();
        match self.rt.block_on(io.read_check()) {
            Ok(_) => {
                report.latency_ms = Some(started.elapsed().as_millis() as u64);
                report.reachable = true;
                report.credentials = true;
                report.mode = Some(Mode::ReadOnly);
            }
            Err((kind, message)) => {
                if kind == Some(opendal::ErrorKind::PermissionDenied) {
                    report.reachable = true;
                    report.latency_ms = Some(started.elapsed().as_millis() as u64);
                    report.problems.push(format!(
                        "the remote refused to read ({message})\n  help: {}",
                        backend::help(self.settings.url.service)
                    ));
                } else {
                    report.problems.push(format!(
                        "the remote cannot be reached ({message})\n  help: check the URL, the network and that the server runs"
                    ));
                }
                return report;
            }
        }
        if self.settings.mode == Mode::ReadWrite {
            match self.rt.block_on(io.probe()) {
                Ok(()) => {
                    report.writable = Some(true);
                    report.mode = Some(Mode::ReadWrite);
                }
                Err(e) => {
                    report.writable = Some(false);
                    report.problems.push(format!(
                        "mode is read-write but a test write failed ({e}); builds will use the remote read-only\n  help: grant write access, or set mode = \"read-only\" / RELOCACHE_REMOTE_MODE=read-only"
                    ));
                }
            }
        }
        report
    }
}

/// What `relocache remote check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The URL, password masked.
    pub url: String,
    /// The service.
    pub service: Service,
    /// The mode asked for.
    pub configured_mode: Mode,
    /// The request timeout.
    pub timeout: String,
    /// Whether the server answered.
    pub reachable: bool,
    /// Whether it accepted the credentials for a read.
    pub credentials: bool,
    /// Whether a test write and delete succeeded (`None`: not tried, read-only).
    pub writable: Option<bool>,
    /// How builds will use it (`None`: not at all, it cannot be read).
    pub mode: Option<Mode>,
    /// Round trip of one metadata request.
    pub latency_ms: Option<u64>,
    /// Where the signing key came from (`None`: signing is off). Never the key.
    pub signing: Option<crate::signing::KeySource>,
    /// What is wrong, with what to do.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when the remote can be used as configured.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}
