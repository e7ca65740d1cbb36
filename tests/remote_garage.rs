//! The remote cache on a distributed object store: a 3-node Garage cluster
//! on loopback ports with replication factor 3. One node is stopped while a
//! build runs, and every lookup still hits (quorum 2 of 3).
//!
//! Starting a cluster takes seconds and needs `garage`, so the test is
//! marked ignored (with its reason): a plain `cargo test` reports it as ignored, and `.ci/run`
//! (which installs `garage`) runs it with `--include-ignored`. Here:
//! `cargo test --test remote_garage -- --include-ignored`.

mod common;
#[path = "support/servers.rs"]
mod servers;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use servers::{free_port, require, wait_for_port, Server};

const RPC_SECRET: &str = "3e5c7f1ba2d4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70";
const KEY_ID: &str = "GK31c2f218a2e44f485b94239e";
const KEY_SECRET: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
const BUCKET: &str = "team-cache";

struct Node {
    server: Server,
    config: std::path::PathBuf,
    s3_port: u16,
}

fn garage(config: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("garage")
            .arg("-c")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("garage runs");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        // The cluster may still be settling (layout propagation): retry.
        assert!(
            Instant::now() < deadline,
            "garage {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn start_node(i: usize) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("garage.toml");
    std::fs::write(
        &config,
        format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{RPC_SECRET}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join(format!("node{i}.log"))).unwrap();
    let mut child = Command::new("garage")
        .arg("-c")
        .arg(&config)
        .arg("server")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("garage starts");
    wait_for_port(s3_port, &mut child, "garage");
    wait_for_port(rpc_port, &mut child, "garage rpc");
    Node {
        server: Server {
            child: Some(child),
            port: s3_port,
            dir,
        },
        config,
        s3_port,
    }
}

/// Three nodes, one zone each, replication factor 3, a bucket and a key.
fn cluster() -> Vec<Node> {
    let nodes: Vec<Node> = (0..3).map(start_node).collect();
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| {
            let out = garage(&n.config, &["node", "id"]);
            out.lines()
                .map(str::trim)
                .find(|l| l.len() > 65 && l.as_bytes()[64] == b'@')
                .unwrap_or_else(|| panic!("no node id in {out}"))
                .to_owned()
        })
        .collect();
    let first = &nodes[0].config;
    for id in &ids[1..] {
        garage(first, &["node", "connect", id]);
    }
    for (i, id) in ids.iter().enumerate() {
        let short = &id[..16];
        let zone = format!("dc{i}");
        garage(first, &["layout", "assign", "-z", &zone, "-c", "1G", short]);
    }
    garage(first, &["layout", "apply", "--version", "1"]);
    garage(first, &["bucket", "create", BUCKET]);
    garage(
        first,
        &["key", "import", KEY_ID, KEY_SECRET, "-n", "ci", "--yes"],
    );
    garage(
        first,
        &[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID,
        ],
    );
    nodes
}

fn env(node: &Node) -> Vec<(&'static str, String)> {
    vec![
        (
            "RELOCACHE_REMOTE",
            format!(
                "s3://{BUCKET}/ci?endpoint=http://127.0.0.1:{}&region=garage",
                node.s3_port
            ),
        ),
        ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", KEY_SECRET.into()),
        ("RELOCACHE_REMOTE_TIMEOUT", "20s".into()),
    ]
}

fn build_env(p: &Project, env: &[(&str, String)]) -> Run {
    let mut c = p.cmd(&["build", "--json", "-j", "1"]);
    for (k, v) in env {
        c.env(k, v);
    }
    output(c)
}

#[test]
#[ignore = "needs garage and starts a 3-node cluster; .ci/run runs it"]
fn garage_cluster_with_one_node_stopped_during_a_build_still_hits() {
    require("garage", "cargo install garage --version 2.5.0 --locked");
    let mut nodes = cluster();
    let env = env(&nodes[0]);

    let first = chain();
    let r = build_env(&first, &env);
    r.ok();
    assert_eq!(r.json()["built"], 3);
    r.assert_stderr_lacks(&["warning"]);

    // A bucket that does not exist: the server answers 404 to writes, which
    // is a failed write (never an upload done into nothing).
    let mut missing = env.clone();
    missing[0].1 = missing[0].1.replacen(BUCKET, "no-such-bucket", 1);
    let mut c = first.cmd(&["remote", "check"]);
    c.envs(missing.iter().map(|(k, v)| (k, v)));
    let check = output(c);
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    check.assert_stdout_lacks(&["writable     yes"]);
    let lonely = chain();
    let r = build_env(&lonely, &missing);
    r.ok();
    let stats = lonely.run(&["stats", "--json"]).json();
    assert_eq!(
        stats["remote_uploads"].as_u64().unwrap_or(0),
        0,
        "{}",
        r.stderr
    );

    // The second machine's first target stops node 3 (not the one it talks
    // to); the lookups after it must still find every entry and blob.
    let pid = nodes[2].server.pid();
    let manifest = format!(
        "{CHAIN}\n[target.0-stop-a-node]\nrun = \"kill {pid} && sleep 1 && echo stopped > stopped.txt\"\noutputs = [\"stopped.txt\"]\n"
    );
    let second = Project::new(
        &manifest,
        &[
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
        ],
    );
    let r = build_env(&second, &env);
    nodes[2].server.stop();
    r.ok();
    assert_eq!(r.outcome("0-stop-a-node"), "built");
    for t in ["a", "b", "c"] {
        assert_eq!(r.outcome(t), "hit", "{t}: {}", r.stderr);
    }
    assert_eq!(second.total_runs(), 0, "no chain command ran");
    r.assert_stderr_lacks(&["warning"]);
    assert_eq!(second.read("out/b.txt"), "alpha\nbeta\n");
    check_depot_invariants(&second.depot);
}
