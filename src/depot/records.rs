//! Project records: `projects-v2/<project>/<target>.toml` holds the key a
//! target was last built or restored with, so `status` and `explain` can say
//! what changed since. Only names and keys, never paths. Each ends with a
//! checksum of its bytes; a record failing it reads as absent.

use serde::{Deserialize, Serialize};

use super::{checksum, write, Depot, DepotError, PROJECTS_DIR};
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
        self.root.join(super::layout::record(project, target))
    }

    /// The record of `project`/`target`, if any. A record failing its
    /// checksum is damaged: [`DepotError::Damaged`], which readers treat
    /// as no record.
    pub fn read_record(&self, project: &str, target: &str) -> Result<Option<Record>, DepotError> {
        let path = self.record_path(project, target);
        let damaged = |path, message| DepotError::Damaged { path, message };
        match super::read_regular_text(&path) {
            Ok(t) => match checksum::open(&t) {
                Ok(body) => toml::from_str(body)
                    .map(Some)
                    .map_err(|e| damaged(path, e.message().to_owned())),
                Err(why) => Err(damaged(
                    path,
                    format!("the record fails its checksum: {why}"),
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DepotError::io("read record", &path)(e)),
        }
    }

    /// Records that `project`/`target` is now at `key`.
    pub fn write_record(&self, project: &str, target: &str, key: &Key) -> Result<(), DepotError> {
        let path = self.record_path(project, target);
        // Usually unchanged (every hit of a no-op build lands here): compare
        // the first line as written below before parsing anything, and
        // rewrite a record that fails its checksum.
        if let Ok(text) = super::read_regular_text(&path) {
            let same = text
                .strip_prefix("key = \"")
                .and_then(|t| t.get(..64))
                .is_some_and(|hex| hex == key.to_hex())
                && checksum::open(&text).is_ok();
            if same {
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
            checksum::seal(&toml::to_string(&rec).expect("records serialize")).as_bytes(),
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
        for e in super::list_dir(&self.root.join(PROJECTS_DIR))? {
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
        let dir = self.root.join(PROJECTS_DIR).join(project);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    /// An unchanged record is not rewritten (its `updated` stays); a new key,
    /// or a record that does not parse, is written.
    #[test]
    fn records_are_rewritten_only_when_their_key_changes() {
        let dir = tempfile::tempdir().unwrap();
        let d = Depot::open_or_create(&dir.path().join("depot")).unwrap();
        let (k1, k2) = (Key(Digest::of(b"1")), Key(Digest::of(b"2")));
        let path = d.record_path("p", "t");
        d.write_record("p", "t", &k1).unwrap();
        std::fs::write(
            &path,
            checksum::seal(&format!("key = \"{}\"\nupdated = \"then\"\n", k1.to_hex())),
        )
        .unwrap();
        d.write_record("p", "t", &k1).unwrap();
        let kept = d.read_record("p", "t").unwrap().unwrap();
        assert_eq!((kept.key, kept.updated.as_str()), (k1, "then"));
        d.write_record("p", "t", &k2).unwrap();
        assert_eq!(d.read_record("p", "t").unwrap().unwrap().key, k2);
        std::fs::write(&path, "key = \"").unwrap();
        d.write_record("p", "t", &k2).unwrap();
        assert_eq!(d.read_record("p", "t").unwrap().unwrap().key, k2);
        // Its first line intact, its checksum not: rewritten too.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("updated = \"2", "updated = \"1", 1)).unwrap();
        assert!(d.read_record("p", "t").is_err());
        d.write_record("p", "t", &k2).unwrap();
        assert_eq!(d.read_record("p", "t").unwrap().unwrap().key, k2);
    }

    /// Golden file: a record on disk.
    #[test]
    fn record_format_is_pinned() {
        let rec = Record {
            key: Key(Digest([0xab; 32])),
            updated: "2026-11-21T00:00:00Z".into(),
        };
        let body = format!(
            "key = \"{}\"\nupdated = \"2026-11-21T00:00:00Z\"\n",
            "ab".repeat(32)
        );
        assert_eq!(toml::to_string(&rec).unwrap(), body);
        assert_eq!(
            checksum::seal(&body),
            format!(
                "{body}checksum = \"{}\"\n",
                blake3::hash(body.as_bytes()).to_hex()
            )
        );
    }
}
