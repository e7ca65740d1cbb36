//! Targets with a depfile on the shared remote (issue 18, section 2): their
//! variants records travel with their entries (`…/v1/variants/<base key>`),
//! so a second machine with an empty depot hits them from the remote. Driven
//! through the real binary against a real `s3s-fs` server, on a small C
//! project compiled by the machine's real `cc` with `-MD -MF` depfiles. Two
//! projects in two temp dirs with two depots stand for two machines.

mod common;
#[path = "support/servers.rs"]
mod servers;

use common::*;
use relocache::depot::variants::{parse_variants, Variants};
use servers::S3;

/// A template compiling each `src/*.c` with a depfile, and a library of the
/// objects; every command logs its run to ../runs.log.
const MANIFEST: &str = r#"
[target.obj]
foreach = "src/*.c"
run = "echo {path} >> ../runs.log && mkdir -p build && cc -O2 -c {path} -o build/{stem}.o -MD -MF build/{stem}.d"
depfile = "build/{stem}.d"
outputs = ["build/{stem}.o"]

[target.lib]
run = "echo lib >> ../runs.log && ar rcsD build/libdemo.a {outputs:obj}"
deps = ["obj"]
outputs = ["build/libdemo.a"]
"#;

const OBJECTS: [&str; 3] = ["obj:src/a.c", "obj:src/b.c", "obj:src/c.c"];
const OUTPUTS: [&str; 4] = ["build/a.o", "build/b.o", "build/c.o", "build/libdemo.a"];

/// `a.c` and `b.c` include `common.h`, `c.c` includes `only_c.h`; all
/// include `<stdio.h>` (a system header, outside the project).
fn c_project() -> Project {
    require_tool("cc", "install gcc");
    require_tool("ar", "install binutils");
    Project::new(
        MANIFEST,
        &[
            (
                "src/a.c",
                "#include <stdio.h>\n#include \"common.h\"\nint a(void) { printf(\"a\"); return COMMON; }\n",
            ),
            (
                "src/b.c",
                "#include <stdio.h>\n#include \"common.h\"\nint b(void) { printf(\"b\"); return COMMON + 1; }\n",
            ),
            (
                "src/c.c",
                "#include <stdio.h>\n#include \"only_c.h\"\nint c(void) { printf(\"c\"); return ONLY_C; }\n",
            ),
            ("src/common.h", "#define COMMON 1\n"),
            ("src/only_c.h", "#define ONLY_C 3\n"),
        ],
    )
}

/// Fails loudly when `program` does not run.
fn require_tool(program: &str, hint: &str) {
    let ok = std::process::Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "these tests need `{program}`: {hint}");
}

fn build(p: &Project, env: &[(&str, String)]) -> Run {
    let mut c = p.cmd(&["build", "--json", "-j", "1"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let r = output(c);
    r.ok();
    r
}

fn stats(p: &Project) -> serde_json::Value {
    p.run(&["stats", "--json"]).json()
}

fn counter(p: &Project, name: &str) -> u64 {
    stats(p)[name].as_u64().unwrap_or(0)
}

/// Every target with `outcome`.
#[track_caller]
fn all(r: &Run, outcome: &str) {
    for (name, got) in r.outcomes() {
        assert_eq!(got, outcome, "`{name}`:\n{}", r.render());
    }
    assert_eq!(r.outcomes().len(), 4, "{}", r.render());
}

/// The remote's variants records, by name.
fn remote_records(s3: &S3) -> Vec<String> {
    s3.objects()
        .into_iter()
        .filter(|o| o.starts_with("variants/"))
        .collect()
}

/// The file s3s-fs keeps remote object `name` (`variants/<hex>`) in.
fn remote_file(s3: &S3, name: &str) -> std::path::PathBuf {
    s3.data()
        .join(&s3.bucket)
        .join("ci/relocache/v1")
        .join(name)
}

/// Every remote record, parsed (each must be sound).
fn parsed_records(s3: &S3) -> Vec<Variants> {
    remote_records(s3)
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(remote_file(s3, name)).unwrap();
            parse_variants(&text).unwrap_or_else(|e| panic!("remote {name}: {e}"))
        })
        .collect()
}

/// The one remote record whose sets name `header` (`c.c`'s: `only_c.h`).
#[track_caller]
fn record_naming(s3: &S3, header: &str) -> Variants {
    let mut found: Vec<Variants> = parsed_records(s3)
        .into_iter()
        .filter(|v| {
            v.sets
                .iter()
                .any(|s| s.paths.iter().any(|p| p.to_string() == header))
        })
        .collect();
    assert_eq!(found.len(), 1, "records naming {header}: {found:?}");
    found.remove(0)
}

fn local_records(p: &Project) -> usize {
    walkdir::WalkDir::new(p.depot.join("variants-v1"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count()
}

#[track_caller]
fn same_outputs(a: &Project, b: &Project) {
    for o in OUTPUTS {
        assert_eq!(
            std::fs::read(a.path(o)).unwrap(),
            std::fs::read(b.path(o)).unwrap(),
            "{o} differs"
        );
    }
}

#[test]
fn s3_depfile_targets_hit_from_the_remote_and_a_header_edit_travels_as_one_object() {
    let s3 = S3::start();
    let env = s3.env();

    // Machine A builds everything and uploads it, a record per object.
    let a = c_project();
    all(&build(&a, &env), "built");
    assert_eq!(remote_records(&s3).len(), 3, "{:?}", s3.objects());
    assert_eq!(
        s3.objects()
            .iter()
            .filter(|o| o.starts_with("entries/"))
            .count(),
        4
    );
    assert_eq!(counter(&a, "remote_uploads"), 4);

    // Machine B: another path, an empty depot. Everything comes from the
    // remote; nothing runs.
    let b = c_project();
    let r = build(&b, &env);
    all(&r, "hit");
    r.assert_stderr_lacks(&["warning"]);
    assert_eq!(b.total_runs(), 0, "machine B ran a command");
    same_outputs(&a, &b);
    check_depot_invariants(&b.depot);
    assert_eq!(counter(&b, "remote_hits"), 4);
    // The fetched sets are in B's own records: it now hits without the remote.
    assert_eq!(local_records(&b), 3);
    std::fs::remove_dir_all(b.path("build")).unwrap();
    let r = build(&b, &[("RELOCACHE_REMOTE", "off".into())]);
    all(&r, "hit");
    b.run(&["verify"]).ok();

    // B edits a header only c.c includes: exactly that object (and the
    // library of the objects) rebuild, and are uploaded.
    b.write("src/only_c.h", "#define ONLY_C 4\n");
    let r = build(&b, &env);
    for o in &OBJECTS[..2] {
        assert_eq!(r.outcome(o), "hit", "{}", r.render());
    }
    assert_eq!(r.outcome("obj:src/c.c"), "built");
    assert_eq!(r.outcome("lib"), "built");
    assert_eq!(b.runs("src/c.c"), 1);
    assert_eq!(b.total_runs(), 2);
    assert_eq!(counter(&b, "remote_uploads"), 2);
    // Same base keys, same path sets: the records are unchanged (the new
    // entry is found by the digests of the set's files).
    assert_eq!(record_naming(&s3, "src/only_c.h").sets.len(), 1);
    assert_eq!(remote_records(&s3).len(), 3);

    // A makes the same edit: c's new object comes from the remote.
    a.write("src/only_c.h", "#define ONLY_C 4\n");
    let r = build(&a, &env);
    all(&r, "hit");
    assert_eq!(a.total_runs(), 4, "machine A ran a command again");
    same_outputs(&a, &b);
    // Reverting hits A's own first build, locally.
    a.write("src/only_c.h", "#define ONLY_C 3\n");
    all(&build(&a, &[("RELOCACHE_REMOTE", "off".into())]), "hit");
    check_depot_invariants(&a.depot);
}

#[test]
fn s3_a_new_include_adds_a_set_to_the_remote_record_and_each_set_hits_elsewhere() {
    let s3 = S3::start();
    let env = s3.env();
    let plain = "#define ONLY_C 3\n";
    let including = "#include \"extra.h\"\n#define ONLY_C EXTRA\n";
    let a = c_project();
    a.write("src/extra.h", "#define EXTRA 3\n");
    build(&a, &env);
    // only_c.h now includes extra.h: c.c's base key is unchanged (headers
    // are not declared inputs), its path set is a new one.
    a.write("src/only_c.h", including);
    let r = build(&a, &env);
    assert_eq!(r.outcome("obj:src/c.c"), "built", "{}", r.render());
    let record = record_naming(&s3, "src/only_c.h");
    assert_eq!(record.sets.len(), 2, "{record:?}");
    assert!(
        record.sets[0]
            .paths
            .iter()
            .any(|p| p.to_string() == "src/extra.h"),
        "the newest set first: {record:?}"
    );

    // B with the old header: the newest set keys no entry on the remote
    // (only_c.h differs), the older one does.
    let b = c_project();
    b.write("src/extra.h", "#define EXTRA 3\n");
    let r = build(&b, &env);
    all(&r, "hit");
    r.assert_stderr_lacks(&["warning"]);
    // And with the new one, the newest set hits.
    b.write("src/only_c.h", including);
    let r = build(&b, &env);
    all(&r, "hit");
    assert_eq!(b.total_runs(), 0);
    same_outputs(&a, &b);
    b.write("src/only_c.h", plain);
    all(&build(&b, &[("RELOCACHE_REMOTE", "off".into())]), "hit");
}

#[test]
fn s3_a_damaged_remote_variants_record_is_a_miss_counted_corrupt_and_healed() {
    let s3 = S3::start();
    let env = s3.env();
    let a = c_project();
    build(&a, &env);
    let records = remote_records(&s3);
    assert_eq!(records.len(), 3);
    for name in &records {
        let f = remote_file(&s3, name);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("src/"), "{text}");
        // Still TOML, still naming real headers: only the seal tells.
        let swapped = if text.contains("src/common.h") {
            text.replace("src/common.h", "src/only_c.h")
        } else {
            text.replace("src/only_c.h", "src/common.h")
        };
        assert_ne!(swapped, text);
        std::fs::write(&f, swapped).unwrap();
    }

    let b = c_project();
    let r = build(&b, &env);
    for o in OBJECTS {
        assert_eq!(r.outcome(o), "built", "{}", r.render());
    }
    // The objects rebuilt to the same bytes, so the library's key is
    // unchanged and it still comes from the remote.
    assert_eq!(r.outcome("lib"), "hit");
    r.assert_stderr_has(&["the remote variants record", "is damaged"]);
    same_outputs(&a, &b);
    check_depot_invariants(&b.depot);
    assert_eq!(counter(&b, "remote_corrupt"), 3);

    // B's uploads replaced the damaged records with sound ones.
    let healed = parsed_records(&s3);
    assert_eq!(healed.len(), 3);
    assert!(healed.iter().all(|v| v.sets.len() == 1), "{healed:?}");
    let c = c_project();
    all(&build(&c, &env), "hit");
    assert_eq!(c.total_runs(), 0);
}

#[test]
fn s3_a_read_only_client_uploads_no_record() {
    let s3 = S3::start();
    let env = s3.env();
    let mut ro = env.clone();
    ro.push(("RELOCACHE_REMOTE_MODE", "read-only".into()));

    // Alone, it writes nothing at all.
    let laptop = c_project();
    all(&build(&laptop, &ro), "built");
    assert!(s3.objects().is_empty(), "{:?}", s3.objects());

    // With a fed remote: it hits, and a header edit it builds stays local.
    build(&c_project(), &env);
    let before = s3.files();
    let laptop = c_project();
    laptop.write("src/only_c.h", "#define ONLY_C 4\n");
    let r = build(&laptop, &ro);
    assert_eq!(r.outcome("obj:src/a.c"), "hit");
    assert_eq!(r.outcome("obj:src/c.c"), "built");
    r.assert_stderr_lacks(&["warning"]);
    assert_eq!(s3.files(), before, "a read-only client wrote to the server");
    assert_eq!(record_naming(&s3, "src/only_c.h").sets.len(), 1);
    assert_eq!(counter(&laptop, "remote_uploads"), 0);
}
