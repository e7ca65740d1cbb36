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
        write::write_hint(
            self,
            &path,
            toml::to_string(&rec).expect("records serialize").as_bytes(),
        )
    }
}

impl Depot {
    /// Removes the record of `project`/`target`; false when there was none.
    pub fn remove_record(&self, project: &str, target: &str) -> Result<bool, DepotError> {
        let path = self.record_path(project, target);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(DepotError::io("remove record", &path)(e)),
        }
    }

    /// Projects that have records, sorted.
    pub fn record_projects(&self) -> Result<Vec<String>, DepotError> {
        let mut v = Vec::new();
        for e in super::list_dir(&self.root.join("projects-v1"))? {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        v.sort();
        Ok(v)
    }

    /// Removes every record of `project`, and the project's other files
    /// (its stat memo, which only saves hashing); returns how many records
    /// there were.
    pub fn remove_project_records(&self, project: &str) -> Result<usize, DepotError> {
        let dir = self.root.join("projects-v1").join(project);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(DepotError::io("list", &dir)(e)),
        };
        let mut n = 0;
        for e in rd {
            let e = e.map_err(DepotError::io("list", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(target) = name.strip_suffix(".toml") {
                n += usize::from(self.remove_record(project, target)?);
            } else if e.file_type().is_ok_and(|t| t.is_file()) {
                let p = e.path();
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(DepotError::io("remove", &p)(e)),
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
        Ok(n)
    }
}

/// The current UTC time, RFC 3339, whole seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
