//! Object keys are hostile: the mapping from a key to a local path refuses anything that could
//! leave the destination.

use std::{
    collections::HashMap,
    ffi::OsString,
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex},
};

use cap_std::fs::Dir;

/// Why a key cannot become a local path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `..` as a segment.
    #[error("has a `..` segment")]
    DotDot,
    /// Starts with `/`.
    #[error("is absolute")]
    Absolute,
    /// `a//b`: an empty segment (S3 allows it; a file system collapses it).
    #[error("has an empty segment")]
    EmptySegment,
    /// A backslash (a separator on Windows).
    #[error("has a backslash")]
    Backslash,
    /// A NUL byte.
    #[error("has a NUL byte")]
    Nul,
    /// `.` as a segment.
    #[error("has a `.` segment")]
    Dot,
    /// Nothing left.
    #[error("is empty")]
    Empty,
    /// A segment longer than file systems allow.
    #[error("has a segment longer than 255 bytes")]
    TooLong,
}

/// The relative local path for the part of a key under its listing prefix. A trailing `/`
/// (a directory marker) is allowed and dropped.
pub fn local_path(relative_key: &str) -> Result<PathBuf, KeyError> {
    if relative_key.contains('\0') {
        return Err(KeyError::Nul);
    }
    if relative_key.contains('\\') {
        return Err(KeyError::Backslash);
    }
    if relative_key.starts_with('/') {
        return Err(KeyError::Absolute);
    }
    let trimmed = relative_key.strip_suffix('/').unwrap_or(relative_key);
    if trimmed.is_empty() {
        return Err(KeyError::Empty);
    }
    let mut path = PathBuf::new();
    for segment in trimmed.split('/') {
        match segment {
            "" => return Err(KeyError::EmptySegment),
            "." => return Err(KeyError::Dot),
            ".." => return Err(KeyError::DotDot),
            _ if segment.len() > 255 => return Err(KeyError::TooLong),
            _ => path.push(segment),
        }
    }
    // Belt and braces: whatever the rules above miss, only plain names may remain.
    if !path
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
    {
        return Err(KeyError::DotDot);
    }
    Ok(path)
}

/// Joins a destination-relative `to` (from an init entry, already validated) and a key's path.
pub(crate) fn under(to: &str, path: &Path) -> Result<PathBuf, KeyError> {
    let base = if to.is_empty() {
        PathBuf::new()
    } else {
        local_path(to)?
    };
    Ok(base.join(path))
}

/// Directories [`Parents`] keeps open between files.
pub(crate) const OPEN_DIRS: usize = 16;

/// The destination's directories, each created and opened once per run. A file is then made,
/// renamed and removed by its name inside its open directory: one path lookup per call instead
/// of a walk from the root (6 system calls per small file instead of 13).
pub(crate) struct Parents {
    root: Arc<Dir>,
    open: Mutex<HashMap<PathBuf, Arc<Dir>>>,
}

impl Parents {
    pub(crate) fn new(root: Arc<Dir>) -> Parents {
        Parents {
            root,
            open: Mutex::default(),
        }
    }

    /// The directory holding `path`, created if missing, and the file's name in it; or why not.
    /// cap-std refuses any parent, `..` or symlink, that resolves outside the destination.
    pub(crate) fn of(&self, path: &Path) -> Result<(Arc<Dir>, OsString), String> {
        let name = path
            .file_name()
            .ok_or_else(|| format!("{} names no file", path.display()))?
            .to_owned();
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => return Ok((self.root.clone(), name)),
        };
        if let Some(dir) = self
            .open
            .lock()
            .ok()
            .and_then(|open| open.get(parent).cloned())
        {
            return Ok((dir, name));
        }
        let dir = self
            .root
            .create_dir_all(parent)
            .and_then(|()| self.root.open_dir(parent))
            .map_err(|error| {
                format!("cannot create the directory of {}: {error}", path.display())
            })?;
        let dir = Arc::new(dir);
        if let Ok(mut open) = self.open.lock() {
            // Keys come sorted, so a directory's files come together: a few open suffice, and
            // a tree of many directories does not hold a descriptor for each.
            if open.len() >= OPEN_DIRS
                && let Some(old) = open.keys().next().cloned()
            {
                open.remove(&old);
            }
            open.insert(parent.to_path_buf(), dir.clone());
        }
        Ok((dir, name))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hostile_keys_are_refused() {
        for (key, error) in [
            ("../x", KeyError::DotDot),
            ("a/../../x", KeyError::DotDot),
            ("/etc/x", KeyError::Absolute),
            ("a//b", KeyError::EmptySegment),
            ("a\\..\\b", KeyError::Backslash),
            ("a\0b", KeyError::Nul),
            ("./a", KeyError::Dot),
            ("/", KeyError::Absolute),
            ("", KeyError::Empty),
        ] {
            assert_eq!(local_path(key), Err(error), "{key:?}");
        }
        assert_eq!(local_path(&"a".repeat(256)), Err(KeyError::TooLong));
    }

    #[test]
    fn ordinary_keys_map_to_relative_paths() {
        assert_eq!(
            local_path("train/a b/ü.csv"),
            Ok(PathBuf::from("train/a b/ü.csv"))
        );
        assert_eq!(local_path("dir/"), Ok(PathBuf::from("dir")));
        assert_eq!(
            local_path("..a/b..").map(|p| p.display().to_string()),
            Ok("..a/b..".to_owned())
        );
    }

    proptest! {
        #[test]
        fn mapped_paths_never_leave_the_root(key in "[a-z./\\\\\u{0}]{0,24}") {
            if let Ok(path) = local_path(&key) {
                prop_assert!(path.is_relative());
                prop_assert!(path.components().all(|component| matches!(component, Component::Normal(_))));
                // Re-joining the segments gives the key back: nothing is silently changed.
                let back: Vec<String> = path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                prop_assert_eq!(back.join("/"), key.trim_end_matches('/').to_owned());
            }
        }
    }
}
