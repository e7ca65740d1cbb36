//! Which remote to use and how: the `[remote]` table of relocache.toml, the
//! `RELOCACHE_REMOTE*` environment variables that override it, and the URL
//! forms of each service. Pure parsing: nothing here opens a connection, and
//! nothing here ever prints or stores a password ([`RemoteUrl`]'s `Display`
//! masks it).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How long one remote request may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Overrides `[remote] url`; `off` disables the remote.
pub const ENV_URL: &str = "RELOCACHE_REMOTE";
/// Overrides `[remote] mode`.
pub const ENV_MODE: &str = "RELOCACHE_REMOTE_MODE";
/// Overrides `[remote] timeout`.
pub const ENV_TIMEOUT: &str = "RELOCACHE_REMOTE_TIMEOUT";

/// The storage service behind a remote URL. Each is a cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Amazon S3 and S3-compatible stores (MinIO, Garage, Ceph, R2).
    S3,
    /// A Redis server.
    Redis,
    /// A WebDAV server.
    Webdav,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azblob,
}

impl Service {
    /// The cargo feature that compiles support for it.
    pub fn feature(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Redis => "redis",
            Service::Webdav => "webdav",
            Service::Gcs => "gcs",
            Service::Azblob => "azblob",
        }
    }

    /// Whether this relocache was built with it.
    pub fn compiled(self) -> bool {
        match self {
            Service::S3 => cfg!(feature = "s3"),
            Service::Redis => cfg!(feature = "redis"),
            Service::Webdav => cfg!(feature = "webdav"),
            Service::Gcs => cfg!(feature = "gcs"),
            Service::Azblob => cfg!(feature = "azblob"),
        }
    }
}

/// Whether this machine may write to the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Look up, download and upload.
    ReadWrite,
    /// Look up and download only (CI for forks, laptops).
    ReadOnly,
}

impl Mode {
    /// Parses `read-write` or `read-only`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "read-write" => Some(Mode::ReadWrite),
            "read-only" => Some(Mode::ReadOnly),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::ReadWrite => "read-write",
            Mode::ReadOnly => "read-only",
        })
    }
}

/// A parsed remote URL. Its `Display` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    url: url::Url,
    /// The service it names.
    pub service: Service,
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({self})")
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut u = self.url.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        f.write_str(u.as_str())
    }
}

impl Serialize for RemoteUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Query parameters each service accepts.
const S3_PARAMS: &[&str] = &["endpoint", "region", "profile"];
const AZ_PARAMS: &[&str] = &["endpoint"];

/// Why a remote URL is refused. `url` is the URL as shown (without a
/// password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteUrlError {
    /// Not a URL at all.
    #[error("`{text}` is not a URL: {reason}")]
    NotAUrl {
        /// The text given.
        text: String,
        /// What the URL parser said.
        reason: url::ParseError,
    },
    /// A scheme relocache has no backend for.
    #[error("unknown remote scheme `{0}:`; use s3://, redis://, rediss://, webdav://, webdavs://, http(s)://, gcs:// or azblob://")]
    UnknownScheme(String),
    /// An s3:// or gcs:// URL without a bucket.
    #[error("`{url}` names no bucket: write {scheme}://BUCKET/PREFIX")]
    NoBucket {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// An azblob:// URL without a container.
    #[error("`{url}` names no container: write azblob://CONTAINER/PREFIX")]
    NoContainer {
        /// The URL.
        url: String,
    },
    /// A redis or webdav URL without a host.
    #[error("`{url}` names no host")]
    NoHost {
        /// The URL.
        url: String,
    },
    /// Credentials in an object-store URL, where they come from the environment.
    #[error("`{url}`: credentials in a {scheme} URL are not used; they come from the environment (see `relocache remote --help`)")]
    Credentials {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A query parameter on a scheme that takes none.
    #[error("`{url}`: {scheme} URLs take no `?{param}=` parameter")]
    NoParameters {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
        /// The parameter given.
        param: String,
    },
    /// A query parameter the scheme does not take.
    #[error("`{url}`: unknown parameter `{param}`; {scheme} URLs take {allowed}")]
    UnknownParameter {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
        /// The parameter given.
        param: String,
        /// The parameters it takes, comma-separated.
        allowed: String,
    },
    /// `?endpoint=` that is not an http(s) URL.
    #[error("`{url}`: endpoint `{endpoint}` is not an http(s):// URL")]
    BadEndpoint {
        /// The URL.
        url: String,
        /// The endpoint given.
        endpoint: String,
    },
    /// A redis path that is not one database number.
    #[error("`{url}`: the path of a redis URL is the database number, e.g. redis://host:6379/0")]
    RedisPath {
        /// The URL.
        url: String,
    },
    /// An azblob:// URL without `?endpoint=`.
    #[error("`{url}` needs ?endpoint=https://ACCOUNT.blob.core.windows.net")]
    NeedsEndpoint {
        /// The URL.
        url: String,
    },
}

impl RemoteUrl {
    /// Parses one of the documented forms:
    ///
    /// - `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&profile=P]`
    /// - `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`, `rediss://…` for TLS
    /// - `webdav://HOST[:PORT]/PATH` (http), `webdavs://…` (https), or `http(s)://HOST/PATH`
    /// - `gcs://BUCKET[/PREFIX]`, `azblob://CONTAINER[/PREFIX]?endpoint=URL`
    pub fn parse(text: &str) -> Result<RemoteUrl, RemoteUrlError> {
        let url = url::Url::parse(text.trim()).map_err(|reason| RemoteUrlError::NotAUrl {
            text: text.to_owned(),
            reason,
        })?;
        let service = match url.scheme() {
            "s3" => Service::S3,
            "redis" | "rediss" => Service::Redis,
            "webdav" | "webdavs" | "http" | "https" => Service::Webdav,
            "gcs" | "gs" => Service::Gcs,
            "azblob" => Service::Azblob,
            other => return Err(RemoteUrlError::UnknownScheme(other.to_owned())),
        };
        let parsed = RemoteUrl { url, service };
        let host = parsed.url.host_str().unwrap_or("");
        let (shown, scheme) = (parsed.to_string(), parsed.url.scheme().to_owned());
        if host.is_empty() {
            return Err(match service {
                Service::S3 | Service::Gcs => RemoteUrlError::NoBucket { url: shown, scheme },
                Service::Azblob => RemoteUrlError::NoContainer { url: shown },
                _ => RemoteUrlError::NoHost { url: shown },
            });
        }
        let object_store = matches!(service, Service::S3 | Service::Gcs | Service::Azblob);
        if object_store && (!parsed.url.username().is_empty() || parsed.url.password().is_some()) {
            return Err(RemoteUrlError::Credentials { url: shown, scheme });
        }
        let allowed: &[&str] = match service {
            Service::S3 => S3_PARAMS,
            Service::Azblob => AZ_PARAMS,
            _ => &[],
        };
        for (k, _) in parsed.url.query_pairs() {
            if !allowed.contains(&k.as_ref()) {
                let (url, param) = (shown, k.into_owned());
                return Err(if allowed.is_empty() {
                    RemoteUrlError::NoParameters { url, scheme, param }
                } else {
                    let allowed = allowed.join(", ");
                    RemoteUrlError::UnknownParameter {
                        url,
                        scheme,
                        param,
                        allowed,
                    }
                });
            }
        }
        if let Some(e) = parsed.param("endpoint") {
            url::Url::parse(&e)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| RemoteUrlError::BadEndpoint {
                    url: shown.clone(),
                    endpoint: e.clone(),
                })?;
        }
        if service == Service::Redis {
            let db = parsed.path_parts();
            if db.len() > 1 || db.first().is_some_and(|d| d.parse::<i64>().is_err()) {
                return Err(RemoteUrlError::RedisPath { url: shown });
            }
        }
        if service == Service::Azblob && parsed.param("endpoint").is_none() {
            return Err(RemoteUrlError::NeedsEndpoint { url: shown });
        }
        Ok(parsed)
    }

    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The host (bucket or container for object stores).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// The port, if one was written.
    pub fn port(&self) -> Option<u16> {
        self.url.port()
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The non-empty path components, percent-decoded.
    pub fn path_parts(&self) -> Vec<String> {
        self.url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(percent_decode).collect())
            .unwrap_or_default()
    }

    /// The user name, if any.
    pub fn username(&self) -> Option<String> {
        Some(self.url.username())
            .filter(|u| !u.is_empty())
            .map(percent_decode)
    }

    /// The password, if any. Never print it.
    pub fn password(&self) -> Option<String> {
        self.url.password().map(percent_decode)
    }
}

/// Percent-decoding (the `url` crate leaves userinfo and paths encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the remote settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `[remote]` in relocache.toml.
    Manifest,
    /// `RELOCACHE_REMOTE`.
    Env,
}

/// A remote, fully configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteSettings {
    /// Where blobs and entries live.
    pub url: RemoteUrl,
    /// Read-write or read-only.
    pub mode: Mode,
    /// Limit of each request.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Where the URL came from.
    pub origin: Origin,
    /// `[remote] signing_key_env`: the variable holding the signing key
    /// (its name; see [`crate::signing`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_env: Option<String>,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// A `RELOCACHE_REMOTE*` variable has a value relocache cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}\n  help: {help}")]
pub struct EnvError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: &'static str,
}

/// Why a timeout is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimeoutError {
    /// Not a duration humantime reads.
    #[error("`{text}` is not a duration ({reason})")]
    NotADuration {
        /// The text given.
        text: String,
        /// What humantime said.
        reason: humantime::DurationError,
    },
    /// Zero, which would fail every request.
    #[error("`{0}`: the timeout must be longer than zero")]
    Zero(String),
}

/// Parses a timeout such as `30s`, `500ms` or `2m`.
pub fn parse_timeout(text: &str) -> Result<Duration, TimeoutError> {
    let d =
        humantime::parse_duration(text.trim()).map_err(|reason| TimeoutError::NotADuration {
            text: text.to_owned(),
            reason,
        })?;
    if d.is_zero() {
        return Err(TimeoutError::Zero(text.to_owned()));
    }
    Ok(d)
}

/// The remote to use: `RELOCACHE_REMOTE`/`_MODE`/`_TIMEOUT` override the
/// manifest's `[remote]`; `RELOCACHE_REMOTE=off` disables it. `None` when
/// no remote is configured.
pub fn resolve(manifest: Option<&RemoteSettings>) -> Result<Option<RemoteSettings>, EnvError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut settings = match var(ENV_URL) {
        Some(v) if v.trim() == "off" => return Ok(None),
        Some(v) => {
            let url = RemoteUrl::parse(&v).map_err(|e| EnvError {
                var: ENV_URL,
                message: e.to_string(),
                help:
                    "see `relocache remote --help` for the URL forms, or set RELOCACHE_REMOTE=off",
            })?;
            let base = manifest.cloned();
            RemoteSettings {
                url,
                mode: base.as_ref().map(|b| b.mode).unwrap_or(Mode::ReadWrite),
                timeout: base.as_ref().map(|b| b.timeout).unwrap_or(DEFAULT_TIMEOUT),
                origin: Origin::Env,
                signing_key_env: base.and_then(|b| b.signing_key_env),
            }
        }
        None => match manifest {
            Some(m) => m.clone(),
            None => return Ok(None),
        },
    };
    if let Some(m) = var(ENV_MODE) {
        settings.mode = Mode::parse(&m).ok_or_else(|| EnvError {
            var: ENV_MODE,
            message: format!("`{m}` is not a mode"),
            help: "use read-only or read-write",
        })?;
    }
    if let Some(t) = var(ENV_TIMEOUT) {
        settings.timeout = parse_timeout(&t).map_err(|e| EnvError {
            var: ENV_TIMEOUT,
            message: e.to_string(),
            help: "write a duration such as 30s, 500ms or 2m",
        })?;
    }
    Ok(Some(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_forms_parse() {
        let s3 = RemoteUrl::parse(
            "s3://team-cache/relocache?endpoint=http://127.0.0.1:3900&region=garage",
        )
        .unwrap();
        assert_eq!(s3.service, Service::S3);
        assert_eq!(s3.host(), "team-cache");
        assert_eq!(s3.path_parts(), ["relocache"]);
        assert_eq!(s3.param("endpoint").unwrap(), "http://127.0.0.1:3900");
        assert_eq!(s3.param("region").unwrap(), "garage");

        let r = RemoteUrl::parse("redis://ci:s%40cret@10.0.0.5:6380/3").unwrap();
        assert_eq!(r.service, Service::Redis);
        assert_eq!(r.username().unwrap(), "ci");
        assert_eq!(r.password().unwrap(), "s@cret");
        assert_eq!(r.port(), Some(6380));
        assert_eq!(r.path_parts(), ["3"]);

        for w in ["webdav://dav.local:8080/cache", "https://dav.example/cache"] {
            assert_eq!(RemoteUrl::parse(w).unwrap().service, Service::Webdav);
        }
    }

    #[test]
    fn the_password_never_shows() {
        let r = RemoteUrl::parse("redis://ci:hunter2@host:6379/0").unwrap();
        let shown = format!("{r} {r:?} {}", serde_json::to_string(&r).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://ci:***@host:6379/0"), "{shown}");
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        for (bad, says) in [
            ("ftp://x/y", "unknown remote scheme"),
            ("s3:///prefix", "names no bucket"),
            ("s3://b/p?endpont=http://x", "unknown parameter `endpont`"),
            ("s3://b/p?endpoint=localhost:9000", "not an http(s):// URL"),
            ("redis://host:6379/cache", "database number"),
            ("redis://host/1?db=2", "take no"),
            ("azblob://c/p", "needs ?endpoint="),
            ("s3://AKIA:secret@bucket/p", "are not used"),
            ("not a url", "is not a URL"),
        ] {
            let e = RemoteUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn timeouts_and_modes() {
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").is_err());
        assert_eq!(Mode::parse("read-only"), Some(Mode::ReadOnly));
        assert_eq!(Mode::parse("readonly"), None);
    }
}
