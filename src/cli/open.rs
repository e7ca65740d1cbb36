//! Opening the project and the depot for the maintenance commands (`gc`,
//! `clear`, `stats`, `pack`, `remote`): they also work outside any project,
//! and never create a depot that does not exist.

use anyhow::Result;

use relocache::depot::{Depot, DepotStack};
use relocache::manifest::{Manifest, ManifestError};

use super::Env;

/// The manifest when there is one: the maintenance commands also work
/// outside any project, on the depot `--depot`/the environment names. A
/// broken manifest is an error only when it could name the depot: with the
/// depot named outright, it is ignored with a warning.
pub(super) fn optional_manifest(env: &Env) -> Result<Option<Manifest>> {
    match env.manifest() {
        Ok(m) => Ok(Some(m)),
        Err(ManifestError::NotFound { .. }) => Ok(None),
        Err(e) if env.depot_named() => {
            eprintln!("warning: ignoring the project: {e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The depot that is written (the first of the stack), if it exists.
pub(super) fn existing_depot(env: &Env, manifest: Option<&Manifest>) -> Result<Option<Depot>> {
    let paths = env.depot_paths(manifest)?;
    let stack = DepotStack::open_read_only(&paths[..1])?;
    Ok(stack.map(|s| s.primary().clone()))
}

/// Says there is no depot yet (unless `--quiet`): not an error for these commands.
pub(super) fn no_depot(env: &Env, manifest: Option<&Manifest>) -> Result<()> {
    let paths = env.depot_paths(manifest)?;
    if !env.cli.quiet {
        eprintln!("no depot at `{}` yet", paths[0].display());
    }
    Ok(())
}
