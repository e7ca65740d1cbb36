//! `relocache remote check`, and opening the remote for `build`: the
//! manifest's `[remote]` overridden by `RELOCACHE_REMOTE*`.

use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand};

use relocache::manifest::Manifest;
use relocache::remote::{config, CheckReport, Mode, Remote};
use relocache::signing::SigningKey;

use super::open::optional_manifest;
use super::{Env, UsageError};

const REMOTE_HELP: &str = "\
Examples:
  relocache remote check                          is the remote reachable, are the credentials
                                                  good, can this machine write, how fast is it
  relocache remote check --json                   {\"url\",\"reachable\",\"credentials\",\"writable\",\"mode\",\"latency_ms\",\"problems\"}
  RELOCACHE_REMOTE=redis://127.0.0.1:6379/0 relocache remote check

URL forms (relocache.toml `[remote] url`, or RELOCACHE_REMOTE):
  s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:3900&region=garage
                      credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or AWS_PROFILE
  redis://[USER:PASSWORD@]HOST:PORT[/DB]     rediss:// for TLS
  webdav://HOST:PORT/PATH                    webdavs:// or https:// for TLS
  azblob://CONTAINER/PREFIX?endpoint=…, gcs://BUCKET/PREFIX (cargo feature gcs)

Environment: RELOCACHE_REMOTE=<url> (or `off`), RELOCACHE_REMOTE_MODE=read-only|read-write,
RELOCACHE_REMOTE_TIMEOUT=30s. Passwords belong in the environment, never in relocache.toml;
they are masked in every output.
Signing: with RELOCACHE_SIGNING_KEY set (or the variable `[remote] signing_key_env` names),
uploads are signed and only entries signed with that key are restored. A pull-request build
must run read-only and without the key.";

#[derive(Debug, Args)]
#[command(after_help = REMOTE_HELP)]
pub struct RemoteArgs {
    #[command(subcommand)]
    pub command: RemoteCmd,
}

#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Check reachability, credentials, read-only or read-write, and latency
    #[command(after_help = REMOTE_HELP)]
    Check,
}

/// The remote for this run, if one is configured, with the signing key
/// when one is set.
pub fn open(manifest: Option<&Manifest>) -> Result<Option<Arc<Remote>>> {
    let settings = config::resolve(manifest.and_then(|m| m.remote.as_ref()))
        .map_err(|e| UsageError(e.to_string()))?;
    match settings {
        None => Ok(None),
        Some(s) => {
            let key = SigningKey::from_env(s.signing_key_env.as_deref())
                .map_err(|e| UsageError(e.to_string()))?;
            let remote = Remote::open(s).map_err(|e| UsageError(e.to_string()))?;
            Ok(Some(Arc::new(remote.with_signing(key))))
        }
    }
}

/// The signing key for `pack` and `unpack`: the variable the manifest's
/// `[remote] signing_key_env` names, else `RELOCACHE_SIGNING_KEY`.
pub fn signing_key(manifest: Option<&Manifest>) -> Result<Option<SigningKey>> {
    let named = manifest
        .and_then(|m| m.remote.as_ref())
        .and_then(|r| r.signing_key_env.as_deref());
    Ok(SigningKey::from_env(named).map_err(|e| UsageError(e.to_string()))?)
}

pub fn run(env: &Env, args: &RemoteArgs) -> Result<i32> {
    match args.command {
        RemoteCmd::Check => check(env),
    }
}

fn check(env: &Env) -> Result<i32> {
    let manifest = optional_manifest(env)?;
    let Some(remote) = open(manifest.as_ref())? else {
        return Err(UsageError(
            "no remote is configured\n  help: add a [remote] table with `url = \"s3://…\"` to relocache.toml, or set RELOCACHE_REMOTE=<url>".into(),
        )
        .into());
    };
    let report = remote.check();
    if env.cli.json {
        super::print_json(&report)?;
    } else {
        print!("{}", render(&report));
        for p in &report.problems {
            eprintln!("problem: {p}");
        }
    }
    Ok(if report.ok() { 0 } else { 1 })
}

fn render(r: &CheckReport) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("{k:<13}{v}\n"));
    row("remote", r.url.clone());
    row("service", format!("{:?}", r.service).to_lowercase());
    row("reachable", yes(r.reachable).to_owned());
    row("credentials", yes(r.credentials).to_owned());
    row(
        "writable",
        match r.writable {
            Some(w) => yes(w).to_owned(),
            None if r.configured_mode == Mode::ReadOnly => "not tried (read-only)".to_owned(),
            None => "not tried".to_owned(),
        },
    );
    row(
        "mode",
        match r.mode {
            Some(m) if m == r.configured_mode => m.to_string(),
            Some(m) => format!("{m} (configured {})", r.configured_mode),
            None => format!("unusable (configured {})", r.configured_mode),
        },
    );
    row(
        "latency",
        r.latency_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "-".into()),
    );
    row("timeout", r.timeout.clone());
    row(
        "signing",
        match &r.signing {
            Some(source) => format!("on (key from {source})"),
            None => format!(
                "off (set {} to sign uploads and use only signed entries)",
                relocache::signing::ENV_KEY
            ),
        },
    );
    s
}
