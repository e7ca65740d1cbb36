//! Project records: `projects-v1/<project>/<target>.toml` holds the key a
//! target was last built or restored with, so `status` and `explain` can say
//! what changed since. Only names and keys, never paths.

use serde::{Deserialize, Serialize};

use super::{write, Depot, DepotError};
use crate::digest::Key;

/// The last key seen for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The key built or restored last.
    pub key: Key,
    /// When, RFC 3339 UTC.
    pub updated: String,
}

impl Depot {
    fn record_path(&self, project: &str, target: &str) -> std::path::PathBuf {
        self.root
            .join("projects-v1")
            .join(project)
            .join(format!("{target}.toml"))
    }

    /// The record of `project`/`target`, if any.
    pub fn read_record(&self, project: &str, target: &str) -> Result<Option<Record>, DepotError> {
        let path = self.record_path(project, target);
        match std::fs::read_to_string(&path) {
            Ok(t) => toml::from_str(&t)
                .map(Some)
                .map_err(|e| DepotError::Damaged {
                    path,
                    message: e.message().to_owned(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DepotError::io("read record", &path)(e)),
        }
    }

    /// Records that `project`/`target` is now at `key`.
    pub fn write_record(&self, project: &str, target: &str, key: &Key) -> Result<(), DepotError> {
        let path = self.record_path(project, target);
        if let Ok(Some(r)) = self.read_record(project, target) {
            if r.key == *key {
                return Ok(());
            }
        }
        let rec = Record {
            key: *key,
            updated: now_rfc3339(),
        };
        write::write_bytes(
            self,
            &path,
            toml::to_string(&rec).expect("records serialize").as_bytes(),
        )
    }
}

/// The current UTC time, RFC 3339, whole seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
