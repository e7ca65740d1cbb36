//! Real storage servers for the remote-cache tests: started on free
//! loopback ports in temp dirs, waited for (bounded), killed on drop. A
//! missing server binary fails the test with an install hint; it never
//! passes silently.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Panics with `hint` when `program` is not on PATH.
pub fn require(program: &str, hint: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed, so this test cannot run.\n  install it: {hint}\n  (.ci/run installs it)"
    );
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on port {port}: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 20s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A child process killed when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Kills the server now (as if the machine went away).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `s3s-fs`: an S3 server storing objects as plain files.
pub struct S3 {
    pub server: Server,
    pub bucket: String,
}

pub const S3_KEY: &str = "relocache-test";
pub const S3_SECRET: &str = "relocache-test-secret";

impl S3 {
    pub fn start() -> S3 {
        require(
            "s3s-fs",
            "cargo install s3s-fs --version 0.14.1 --features binary --locked",
        );
        let dir = tempfile::tempdir().unwrap();
        let bucket = "team-cache".to_owned();
        std::fs::create_dir_all(dir.path().join("data").join(&bucket)).unwrap();
        let port = free_port();
        let mut child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        wait_for_port(port, &mut child, "s3s-fs");
        S3 {
            server: Server {
                child: Some(child),
                port,
                dir,
            },
            bucket,
        }
    }

    /// The remote URL (prefix `ci`).
    pub fn url(&self) -> String {
        format!(
            "s3://{}/ci?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.bucket, self.server.port
        )
    }

    /// Environment for a relocache process using this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RELOCACHE_REMOTE", self.url()),
            ("AWS_ACCESS_KEY_ID", S3_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.into()),
            ("RELOCACHE_REMOTE_TIMEOUT", "10s".into()),
        ]
    }

    /// Where s3s-fs keeps the object of blob `hex`.
    pub fn object_file(&self, hex: &str) -> PathBuf {
        self.data()
            .join(&self.bucket)
            .join("ci/relocache/v1/objects")
            .join(hex)
    }

    pub fn data(&self) -> PathBuf {
        self.server.dir.path().join("data")
    }

    /// Every file the server holds (objects and its metadata files).
    pub fn files(&self) -> Vec<PathBuf> {
        files(&self.data())
    }

    /// The objects under the relocache layout, as relative names.
    pub fn objects(&self) -> Vec<String> {
        let base = self.data().join(&self.bucket).join("ci/relocache/v1");
        files(&base)
            .into_iter()
            .map(|p| p.strip_prefix(&base).unwrap().display().to_string())
            .collect()
    }
}

pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// `redis-server` (Debian package `redis-server`), no persistence.
pub struct Redis {
    pub server: Server,
}

impl Redis {
    pub fn start() -> Redis {
        require("redis-server", "apt-get install redis-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        wait_for_port(port, &mut child, "redis-server");
        Redis {
            server: Server {
                child: Some(child),
                port,
                dir,
            },
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.server.port)
    }

    /// Runs one command through `redis-cli`, returning its output.
    pub fn cli(&self, args: &[&str]) -> String {
        require("redis-cli", "apt-get install redis-tools");
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.server.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys under the relocache layout, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .cli(&["--raw", "keys", "*"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }
}

/// nginx (Debian `nginx-light` + `libnginx-mod-http-dav-ext`) serving
/// WebDAV from a temp dir behind basic auth: user `ci`, password [`DAV_PW`].
pub struct Webdav {
    pub server: Server,
}

pub const DAV_PW: &str = "dav-s3cr3t";
const DAV_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";

impl Webdav {
    pub fn start() -> Webdav {
        let hint = "apt-get install nginx-light libnginx-mod-http-dav-ext";
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or_else(|| panic!("nginx is not installed, so this test cannot run.\n  install it: {hint}\n  (.ci/run installs it)"));
        assert!(
            Path::new(DAV_MODULE).is_file(),
            "nginx's WebDAV module is not installed, so this test cannot run.\n  install it: {hint}"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("ci:{{PLAIN}}{DAV_PW}\n"),
        )
        .unwrap();
        let port = free_port();
        let conf = format!(
            "load_module {DAV_MODULE};
daemon off; master_process off; worker_processes 1;
error_log {d}/error.log; pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; access_log off;
  server {{
    listen 127.0.0.1:{port};
    root {d}/data;
    client_max_body_size 0;
    location / {{
      auth_basic cache; auth_basic_user_file {d}/htpasswd;
      dav_methods PUT DELETE MKCOL COPY MOVE; dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on;
    }}
  }}
}}
"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(nginx)
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        wait_for_port(port, &mut child, "nginx");
        Webdav {
            server: Server {
                child: Some(child),
                port,
                dir,
            },
        }
    }

    /// The remote URL with `password`, under the path `team`.
    pub fn url(&self, password: &str) -> String {
        format!("webdav://ci:{password}@127.0.0.1:{}/team", self.server.port)
    }

    /// The files the server holds under the relocache layout, relative.
    pub fn objects(&self) -> Vec<String> {
        let base = self.server.dir.path().join("data/team/relocache/v1");
        files(&base)
            .into_iter()
            .map(|p| p.strip_prefix(&base).unwrap().display().to_string())
            .collect()
    }
}

/// Azurite (npm `azurite`), Microsoft's Azure Blob Storage emulator, with its
/// well-known development account.
pub struct Azurite {
    pub server: Server,
}

pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    pub fn start() -> Azurite {
        require("azurite-blob", "npm install -g azurite@3.35.0");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new("azurite-blob")
            .args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"])
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob starts");
        wait_for_port(port, &mut child, "azurite-blob");
        Azurite {
            server: Server {
                child: Some(child),
                port,
                dir,
            },
        }
    }

    /// Creates `container` with a Shared Key request (relocache never
    /// creates one; an operator does).
    pub fn create_container(&self, container: &str) {
        let script = r#"
import base64, hashlib, hmac, sys, urllib.request
from email.utils import formatdate
port, container, acct, key = sys.argv[1:5]
headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
canon = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
to_sign = "PUT\n" + "\n" * 11 + canon + f"/{acct}/{acct}/{container}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/{acct}/{container}?restype=container",
    method="PUT", headers={**headers, "Authorization": f"SharedKey {acct}:{sig}", "Content-Length": "0"})
urllib.request.urlopen(req)
"#;
        let ok = Command::new("python3")
            .args([
                "-c",
                script,
                &self.server.port.to_string(),
                container,
                AZ_ACCOUNT,
                AZ_KEY,
            ])
            .status()
            .expect("python3 runs")
            .success();
        assert!(ok, "could not create container {container}");
    }

    /// The remote URL for `container` (prefix `ci`).
    pub fn url(&self, container: &str) -> String {
        format!(
            "azblob://{container}/ci?endpoint=http://127.0.0.1:{}/{AZ_ACCOUNT}",
            self.server.port
        )
    }

    /// Environment for a relocache process using `container`.
    pub fn env(&self, container: &str) -> Vec<(&'static str, String)> {
        vec![
            ("RELOCACHE_REMOTE", self.url(container)),
            ("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT.into()),
            ("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY.into()),
            ("RELOCACHE_REMOTE_TIMEOUT", "20s".into()),
        ]
    }
}
