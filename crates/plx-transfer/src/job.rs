//! One object to fetch, as planning found it ([`Job`]), and what tells a rerun that a landed
//! copy is still current ([`Stamp`]).

use std::path::PathBuf;

/// One object to fetch, as planning found it.
pub(crate) struct Job {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) stamp: Stamp,
    /// Where it lands, relative to the destination.
    pub(crate) path: PathBuf,
    /// A zero-byte key ending in `/`: a directory marker, made as a directory.
    pub(crate) marker: bool,
    /// The version to fetch (a pinned object in a bucket that keeps versions).
    pub(crate) version: Option<String>,
    /// A pinned object: the GET's ETag must be the stamp's, else it changed since it was pinned.
    pub(crate) pinned: bool,
}

/// What a rerun compares to decide that a landed file is still current, and what names an
/// object's node-cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// The ETag the listing gave (or a manifest recorded), without quotes.
    Etag(String),
    /// The time of last modification, in nanoseconds, where the store lists no ETag (s3s-fs).
    Modified(i128),
    /// Neither: nothing to compare with, so the object is always fetched.
    Unknown,
}

impl Stamp {
    /// The stamp of a listed object.
    pub(crate) fn listed(
        etag: Option<&str>,
        last_modified: Option<&aws_sdk_s3::primitives::DateTime>,
    ) -> Stamp {
        let etag = etag
            .map(|etag| etag.trim_matches('"'))
            .filter(|etag| !etag.is_empty());
        match (etag, last_modified) {
            (Some(etag), _) => Stamp::Etag(etag.to_owned()),
            (None, Some(time)) => Stamp::Modified(time.as_nanos()),
            (None, None) => Stamp::Unknown,
        }
    }

    /// The stamp of an object a manifest recorded with `etag` (empty where the store gave none).
    pub(crate) fn recorded(etag: &str) -> Stamp {
        if etag.is_empty() {
            Stamp::Unknown
        } else {
            Stamp::Etag(etag.to_owned())
        }
    }

    /// Whether there is anything to compare with.
    pub(crate) fn is_known(&self) -> bool {
        !matches!(self, Stamp::Unknown)
    }

    /// The text the state, a part's record and a node-cache entry's name keep: the ETag,
    /// `lm:<nanoseconds>`, or empty. Stable: files written by earlier runs hold it.
    pub(crate) fn text(&self) -> String {
        match self {
            Stamp::Etag(etag) => etag.clone(),
            Stamp::Modified(nanos) => format!("lm:{nanos}"),
            Stamp::Unknown => String::new(),
        }
    }

    /// Whether `text` (a kept stamp, or a GET's ETag) is this stamp; without writing the
    /// stamp's text, since a run asks this of every object.
    pub(crate) fn is(&self, text: &str) -> bool {
        match self {
            Stamp::Etag(etag) => etag == text,
            Stamp::Modified(nanos) => text
                .strip_prefix("lm:")
                .is_some_and(|kept| kept.parse::<i128>().ok() == Some(*nanos)),
            Stamp::Unknown => text.is_empty(),
        }
    }

    /// The ETag, where the stamp is one.
    pub(crate) fn etag(&self) -> Option<&str> {
        match self {
            Stamp::Etag(etag) => Some(etag),
            Stamp::Modified(_) | Stamp::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_keeps_the_text_earlier_runs_wrote() {
        let time = aws_sdk_s3::primitives::DateTime::from_nanos(1_700_000_000_123_456_789)
            .expect("a time");
        assert_eq!(Stamp::listed(Some("\"abc\""), Some(&time)).text(), "abc");
        assert_eq!(
            Stamp::listed(Some("\"\""), Some(&time)).text(),
            "lm:1700000000123456789"
        );
        assert_eq!(Stamp::listed(None, None), Stamp::Unknown);
        assert_eq!(Stamp::recorded(""), Stamp::Unknown);
        assert!(Stamp::recorded("abc").is("abc") && !Stamp::Unknown.is_known());
        // A kept text is this stamp exactly when it is the stamp's own text.
        for (stamp, other) in [
            (Stamp::Etag("abc".to_owned()), "lm:1"),
            (Stamp::Modified(1_700_000_000), "abc"),
            (Stamp::Unknown, "lm:0"),
        ] {
            assert!(stamp.is(&stamp.text()) && !stamp.is(other), "{stamp:?}");
        }
    }
}
