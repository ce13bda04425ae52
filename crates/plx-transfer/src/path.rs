//! Object keys are hostile: the mapping from a key to a local path refuses anything that could
//! leave the destination.

use std::path::{Component, Path, PathBuf};

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
