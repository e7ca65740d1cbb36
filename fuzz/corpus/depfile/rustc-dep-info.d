target/debug/relocache: src/main.rs src/lib.rs src/a\ b.rs src/dollar$$.rs

src/main.rs:
src/lib.rs:
