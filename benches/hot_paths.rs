//! Criterion benchmarks of relocache's hot paths: hashing, blob put/get,
//! key computation, template expansion. Peer comparisons (b3sum, tar|zstd, cp, ccache, make,
//! git status) live in `benches/compare.sh`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use relocache::depot::Depot;
use relocache::digest::Digest;
use relocache::file_hash::hash_file;
use relocache::file_state::FileState;
use relocache::inputs::InputFile;
use relocache::key::{compute, KeyInputs};
use relocache::manifest::{Command, Manifest};
use relocache::relpath::RelPath;

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9E3779B97F4A7C15u64;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half random, half text: compresses about 2x, like build outputs.
            if i % 2 == 0 {
                x as u8
            } else {
                b"int x = 0;\n"[i % 11]
            }
        })
        .collect()
}

fn hashing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("hash_file");
    for size in [4 << 10, 1 << 20, 64 << 20] {
        let p = dir.path().join(format!("f{size}"));
        std::fs::write(&p, data(size)).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &p, |b, p| {
            b.iter(|| hash_file(black_box(p)).unwrap())
        });
    }
    g.finish();
}

fn blobs(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let depot = Depot::open_or_create(&dir.path().join("depot")).unwrap();
    let mut g = c.benchmark_group("blob");
    g.sample_size(20);
    for size in [64 << 10, 8 << 20] {
        let bytes = data(size);
        let src = dir.path().join(format!("src{size}"));
        std::fs::write(&src, &bytes).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("put", size), &src, |b, src| {
            b.iter(|| {
                let d = Digest::of(&bytes);
                let _ = std::fs::remove_file(depot.blob_path(&d));
                depot.put_file(src, Some(d)).unwrap()
            })
        });
        let d = depot.put_file(&src, None).unwrap();
        g.bench_with_input(BenchmarkId::new("get", size), &d, |b, d| {
            b.iter(|| depot.copy_blob(d, &mut std::io::sink()).unwrap())
        });
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    let inputs: Vec<InputFile> = (0..10_000)
        .map(|i: u64| InputFile {
            path: RelPath::new(&format!("src/d{}/f{i}.c", i % 100)).unwrap(),
            state: FileState::File {
                digest: Digest::of(&i.to_le_bytes()),
                size: i,
                executable: false,
            },
            stamp: None,
        })
        .collect();
    let env = BTreeMap::new();
    let tools = BTreeMap::new();
    let deps = BTreeMap::new();
    let outputs = vec![RelPath::new("build/out").unwrap()];
    let cmd = Command::Shell("cc -c src/*.c".into());
    c.bench_function("key/10k-inputs", |b| {
        b.iter(|| {
            compute(&KeyInputs {
                salt: "",
                command: &cmd,
                env: &env,
                version: 0,
                tools: &tools,
                inputs: black_box(&inputs),
                deps: &deps,
                outputs: &outputs,
            })
        })
    });
}

/// Parsing a manifest whose template matches 2,000 files (issue 18): the
/// expansion, placeholders and `{outputs:obj}` of a 2,000-object link.
fn templates(c: &mut Criterion) {
    let manifest = r#"
[target.obj]
foreach = ["**/*.c", "**/*.S"]
run = "mkdir -p build/{dir} && cc -O2 -c {path} -o build/{dir}/{stem}.o -MD -MF build/{dir}/{stem}.d"
depfile = "build/{dir}/{stem}.d"
outputs = ["build/{dir}/{stem}.o"]

[target.lib]
run = "ar rcsD build/libfoo.a {outputs:obj}"
deps = ["obj"]
outputs = ["build/libfoo.a"]
"#;
    let files: Vec<String> = (0..2_000)
        .flat_map(|i| {
            let dir = format!("src/d{}/e{}", i % 50, i % 7);
            [format!("{dir}/f{i}.c"), format!("{dir}/f{i}.h")]
        })
        .collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let root = std::path::Path::new("/project");
    let file = root.join("relocache.toml");
    c.bench_function("manifest/template-2k-files", |b| {
        b.iter(|| {
            let m = Manifest::parse_with_files(black_box(manifest), &file, root, &files).unwrap();
            assert_eq!(m.targets.len(), 2_001);
            m
        })
    });
}

criterion_group!(benches, hashing, blobs, keys, templates);
criterion_main!(benches);
