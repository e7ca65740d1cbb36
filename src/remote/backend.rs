//! Turns a [`RemoteUrl`] into an OpenDAL operator for its service. Only
//! the services compiled in (cargo features) exist here. Credentials come
//! from the URL's user and password (Redis, WebDAV) or from the service's
//! usual provider chain (S3: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
//! `AWS_PROFILE`, instance metadata); none is ever stored or printed.

use super::config::{RemoteUrl, Service};

/// What to check when the service refuses the configuration or credentials.
pub(super) fn help(service: Service) -> &'static str {
    match service {
        Service::S3 => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and ?region= or AWS_REGION",
        Service::Redis => "put the user and password in the URL: RELOCACHE_REMOTE=redis://USER:PASSWORD@HOST:PORT/DB",
        Service::Webdav => "put the user and password in the URL: RELOCACHE_REMOTE=webdavs://USER:PASSWORD@HOST/PATH",
        Service::Gcs => "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file",
        Service::Azblob => "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
    }
}

/// Installs the process-wide TLS provider (ring) and HTTP client once.
fn install_defaults() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        #[cfg(feature = "http-remote")]
        opendal_http_transport_reqwest::install_default();
    });
}

/// The bucket prefix: the URL path without surrounding slashes, as an
/// OpenDAL root (always absolute, `/` for none).
#[cfg(any(
    feature = "s3",
    feature = "webdav",
    feature = "gcs",
    feature = "azblob"
))]
fn root(url: &RemoteUrl) -> String {
    let parts = url.path_parts();
    format!("/{}", parts.join("/"))
}

/// The host and port a plain TCP connect can test, when known without
/// DNS tricks: Redis, WebDAV and S3 with an explicit endpoint.
pub(super) fn address(url: &RemoteUrl) -> Option<(String, u16)> {
    let http = |u: &url::Url| {
        let port = u.port_or_known_default()?;
        Some((u.host_str()?.to_owned(), port))
    };
    match url.service {
        Service::Redis => Some((url.host().to_owned(), url.port().unwrap_or(6379))),
        Service::Webdav => {
            let scheme = match url.scheme() {
                "webdavs" | "https" => "https",
                _ => "http",
            };
            let port = url
                .port()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            Some((url.host().to_owned(), port))
        }
        Service::S3 | Service::Azblob => url
            .param("endpoint")
            .and_then(|e| url::Url::parse(&e).ok())
            .and_then(|u| http(&u)),
        Service::Gcs => None,
    }
}

/// Builds the operator; `Err` for configuration OpenDAL refuses.
pub(super) fn operator(url: &RemoteUrl) -> opendal::Result<opendal::Operator> {
    install_defaults();
    match url.service {
        #[cfg(feature = "s3")]
        Service::S3 => {
            let mut b = opendal::services::S3::default()
                .bucket(url.host())
                .root(&root(url));
            if let Some(e) = url.param("endpoint") {
                b = b.endpoint(&e);
            }
            // AWS_REGION is read by OpenDAL; S3-compatible stores mostly accept any.
            let region = url
                .param("region")
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".to_owned());
            b = b.region(&region);
            if let Some(p) = url.param("profile") {
                b = b.profile(&p);
            }
            opendal::Operator::new(b)
        }
        #[cfg(feature = "redis")]
        Service::Redis => {
            let scheme = if url.scheme() == "rediss" {
                "rediss"
            } else {
                "tcp"
            };
            let endpoint = format!("{scheme}://{}:{}", url.host(), url.port().unwrap_or(6379));
            let mut b = opendal::services::Redis::default().endpoint(&endpoint);
            if let Some(u) = url.username() {
                b = b.username(&u);
            }
            if let Some(p) = url.password() {
                b = b.password(&p);
            }
            if let Some(db) = url.path_parts().first().and_then(|d| d.parse().ok()) {
                b = b.db(db);
            }
            opendal::Operator::new(b)
        }
        #[cfg(feature = "webdav")]
        Service::Webdav => {
            let scheme = match url.scheme() {
                "webdavs" | "https" => "https",
                _ => "http",
            };
            let endpoint = match url.port() {
                Some(p) => format!("{scheme}://{}:{p}", url.host()),
                None => format!("{scheme}://{}", url.host()),
            };
            let mut b = opendal::services::Webdav::default()
                .endpoint(&endpoint)
                .root(&root(url));
            if let Some(u) = url.username() {
                b = b.username(&u);
            }
            if let Some(p) = url.password() {
                b = b.password(&p);
            }
            opendal::Operator::new(b)
        }
        #[cfg(feature = "gcs")]
        Service::Gcs => {
            let mut b = opendal::services::Gcs::default()
                .bucket(url.host())
                .root(&root(url));
            if let Ok(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
                b = b.credential_path(&path);
            }
            opendal::Operator::new(b)
        }
        #[cfg(feature = "azblob")]
        Service::Azblob => {
            let mut b = opendal::services::Azblob::default()
                .container(url.host())
                .root(&root(url));
            if let Some(e) = url.param("endpoint") {
                b = b.endpoint(&e);
            }
            if let Ok(a) = std::env::var("AZURE_STORAGE_ACCOUNT_NAME") {
                b = b.account_name(&a);
            }
            if let Ok(k) = std::env::var("AZURE_STORAGE_ACCOUNT_KEY") {
                b = b.account_key(&k);
            }
            opendal::Operator::new(b)
        }
        #[allow(unreachable_patterns)]
        other => Err(opendal::Error::new(
            opendal::ErrorKind::Unsupported,
            format!("built without the `{}` feature", other.feature()),
        )),
    }
}
