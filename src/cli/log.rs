//! Diagnostics: installs the `tracing` subscriber that writes the library's
//! spans and events to stderr when `--log FILTER` or `RELOCACHE_LOG` asks for
//! them (an `EnvFilter` directive, like `SCCACHE_LOG` or `CARGO_LOG`).
//! Without either nothing is installed, so every `tracing` macro in the
//! library stays disabled and costs one check of a static level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The environment variable `--log` falls back to.
pub const ENV: &str = "RELOCACHE_LOG";

/// Installs the stderr subscriber for `filter` (`debug`, `relocache=trace`,
/// `relocache::engine=debug,opendal=info`…); an empty filter installs none.
pub fn init(filter: Option<&str>) -> Result<(), String> {
    let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(());
    };
    let filter = EnvFilter::builder()
        .parse(filter)
        .map_err(|e| format!("invalid log filter `{filter}` (--log or {ENV}): {e}\n  help: a level (`debug`, `trace`) or directives like `relocache::engine=debug`"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))
}
