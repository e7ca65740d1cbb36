//! Following symlinks for keys: a command that reads through a symlink (an
//! input that is one, or a dep's output that is one) reads what it resolves
//! to, so a link resolving inside the project keys its reader by that
//! content, not only by its text. Owns the resolution rule and the encoding
//! of what a link resolves to; never follows a link out of the project, and
//! never writes.
//!
//! The rule, applied the way the kernel resolves a path but inside the root:
//! components are taken one at a time from the link's directory; `..` climbs
//! (above the root: not followed); a component that is a symlink is replaced
//! by its text (at most [`MAX_HOPS`] times); a file followed by more
//! components, a missing path, an absolute link text, the root itself, and a
//! path inside an output the reader may not read (its own, or a target's it
//! does not depend on) end the walk: the link is then keyed by its text
//! alone. What a path is comes from the deps' entries below their declared
//! outputs, from disk elsewhere. A link resolving to a file is keyed by that
//! file's content and executable bit; to a directory, by the tree below it
//! (names, file contents, symlinks by their text, subdirectories).

use crate::digest::Digest;
use crate::file_state::{FileState, Resolved};
use crate::inputs::{DepFiles, InputError, Inputs};
use crate::relpath::RelPath;

/// Symlink hops before a link counts as a loop (Linux's own limit).
pub const MAX_HOPS: usize = 40;

/// What one path is, while resolving.
enum Node {
    File(FileState),
    Link(String),
    Dir,
    /// Missing, or not to be read: the walk ends.
    End,
}

/// Resolves symlinks for one target's key.
pub(crate) struct Follow<'a> {
    pub inputs: &'a Inputs<'a>,
    /// The target's deps' outputs, by their entries.
    pub deps: &'a DepFiles<'a>,
    /// Whether a path lies in an output the target may not read.
    pub hidden: &'a (dyn Fn(&RelPath) -> bool + Sync),
}

impl Follow<'_> {
    /// What link `link` with text `text` resolves to, if it resolves inside
    /// the project (see the module docs).
    pub fn resolve(&self, link: &RelPath, text: &str) -> Result<Option<Resolved>, InputError> {
        if text.starts_with('/') {
            return Ok(None);
        }
        let mut done: Vec<String> = link
            .parent()
            .map(|p| p.as_str().split('/').map(str::to_owned).collect())
            .unwrap_or_default();
        // Components still to take, the next one last.
        let mut todo: Vec<String> = text.split('/').rev().map(str::to_owned).collect();
        let mut hops = 0;
        let mut last = Node::Dir;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    if done.pop().is_none() {
                        return Ok(None);
                    }
                    last = Node::Dir;
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let Ok(p) = RelPath::new(&done.join("/")) else {
                return Ok(None);
            };
            match self.node(&p)? {
                Node::Link(t) => {
                    hops += 1;
                    if hops > MAX_HOPS || t.starts_with('/') {
                        return Ok(None);
                    }
                    done.pop();
                    todo.extend(t.split('/').rev().map(str::to_owned));
                }
                Node::File(_) if !todo.is_empty() => return Ok(None),
                Node::End => return Ok(None),
                n => last = n,
            }
        }
        let Ok(path) = RelPath::new(&done.join("/")) else {
            return Ok(None); // the root itself
        };
        Ok(match last {
            Node::File(FileState::File {
                digest, executable, ..
            }) => Some(Resolved::File {
                path,
                digest,
                executable,
            }),
            Node::Dir => Some(Resolved::Dir {
                tree: self.tree(&path)?,
                path,
            }),
            _ => None,
        })
    }

    /// The digest a dependent keys a dep by: the dep's outputs digest when
    /// none of its symlinks resolves inside the project, else that digest
    /// with what each such link resolves to.
    pub fn dep_digest(
        &self,
        digest: Digest,
        files: &[(RelPath, FileState)],
    ) -> Result<Digest, InputError> {
        let mut followed = Vec::new();
        for (p, s) in files {
            if let FileState::Symlink { target, .. } = s {
                if let Some(r) = self.resolve(p, target)? {
                    followed.push((p, r));
                }
            }
        }
        if followed.is_empty() {
            return Ok(digest);
        }
        let mut h = blake3::Hasher::new_derive_key("relocache followed dep outputs v1");
        h.update(&digest.0);
        for (p, r) in followed {
            h.update(&(p.as_str().len() as u64).to_le_bytes());
            h.update(p.as_str().as_bytes());
            h.update(&r.encode());
        }
        Ok(h.finalize().into())
    }

    fn node(&self, p: &RelPath) -> Result<Node, InputError> {
        if (self.hidden)(p) {
            return Ok(Node::End);
        }
        let state = if self.deps.covers(p) {
            match self.deps.state(p) {
                Some(s) => Some(s.clone()),
                None if self.deps.within(p).next().is_some() => Some(FileState::Dir),
                None => None,
            }
        } else {
            self.inputs.on_disk(p)?
        };
        Ok(match state {
            Some(FileState::Symlink { target, .. }) => Node::Link(target),
            Some(FileState::Dir) => Node::Dir,
            Some(s @ FileState::File { .. }) => Node::File(s),
            _ => Node::End,
        })
    }

    /// The digest of the tree below directory `dir`: every file, symlink and
    /// directory, sorted by path relative to `dir`.
    fn tree(&self, dir: &RelPath) -> Result<Digest, InputError> {
        let mut entries: Vec<(RelPath, FileState)> = self
            .deps
            .within(dir)
            .filter(|f| *f != dir)
            .filter_map(|f| Some((f.clone(), self.deps.state(f)?.clone())))
            .collect();
        if !self.deps.covers(dir) {
            for p in self.inputs.below_on_disk(dir)? {
                if self.deps.covers(&p) || (self.hidden)(&p) {
                    continue;
                }
                if let Some(s) = self.inputs.on_disk(&p)? {
                    entries.push((p, s));
                }
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut h = blake3::Hasher::new_derive_key("relocache followed tree v1");
        for (p, s) in &entries {
            let rel = &p.as_str()[dir.as_str().len() + 1..];
            h.update(&(rel.len() as u64).to_le_bytes());
            h.update(rel.as_bytes());
            match s {
                FileState::File {
                    digest, executable, ..
                } => {
                    h.update(b"F");
                    h.update(&digest.0);
                    h.update(&[*executable as u8]);
                }
                FileState::Symlink { target, .. } => {
                    h.update(b"L");
                    h.update(&(target.len() as u64).to_le_bytes());
                    h.update(target.as_bytes());
                }
                FileState::Dir => {
                    h.update(b"D");
                }
                FileState::Untracked { .. } => {}
            }
        }
        Ok(h.finalize().into())
    }
}
