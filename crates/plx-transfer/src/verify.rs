//! Verification: landed bytes against the CRC the store keeps (`crc`) or, where it keeps none,
//! the ETag (the MD5 of a single-part object, the MD5 of the parts' MD5s of a multipart one),
//! hashed as the bytes stream in where that is possible. A mismatch is an error; nothing
//! unverified is renamed into place.

pub(crate) mod crc;

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use md5::{Digest, Md5};

use crate::{
    ErrorKind,
    retry::Failure,
    verify::crc::{Crc, Seen, Stored},
};

/// The object whose bytes are checked, and where to ask the store about it.
pub(crate) struct Object<'a> {
    pub(crate) client: &'a Client,
    pub(crate) bucket: &'a str,
    pub(crate) key: &'a str,
    /// The version fetched, where one was pinned.
    pub(crate) version: Option<&'a str>,
    pub(crate) size: u64,
}

/// What is known of the bytes on disk.
pub(crate) struct Landed<'a> {
    /// The ETag the GET answered with.
    pub(crate) etag: &'a str,
    pub(crate) file: &'a std::fs::File,
    /// The whole object's MD5, when it was hashed as it streamed.
    pub(crate) streamed_md5: Option<String>,
    /// The CRC the store keeps, when it gave one.
    pub(crate) stored: Option<Stored>,
    pub(crate) seen: &'a Parts,
}

/// What an object's bytes were checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Nothing: no checksum to check against (sizes only).
    None,
    /// The ETag's MD5 (of the parts' MD5s for a multipart ETag).
    Etag,
    /// The CRC the store keeps.
    Crc,
}

/// What bytes were hashed into as they came.
pub(crate) enum Sum {
    Off,
    Md5([u8; 16]),
    Crc(u64),
}

/// Hashes bytes as they stream: with the store's CRC where it keeps one, else with MD5 for the
/// ETag; not at all when verification is off.
pub(crate) enum Hasher {
    Off,
    Md5(Md5),
    // Boxed: the digest's tables make it 296 bytes, and one hasher lives per fetch.
    Crc(Box<crc_fast::Digest>),
}

impl Hasher {
    pub(crate) fn new(verify: bool, crc: Option<Crc>) -> Hasher {
        match (verify, crc) {
            (false, _) => Hasher::Off,
            (true, Some(crc)) => Hasher::Crc(Box::new(crc.digest())),
            (true, None) => Hasher::Md5(Md5::new()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Off => {}
            Hasher::Md5(md5) => md5.update(bytes),
            Hasher::Crc(crc) => crc.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Sum {
        match self {
            Hasher::Off => Sum::Off,
            Hasher::Md5(md5) => Sum::Md5(md5.finalize().into()),
            Hasher::Crc(crc) => Sum::Crc(crc.finalize()),
        }
    }
}

/// The CRC the store keeps for the whole object (`HEAD` with checksum mode on), if any; a late
/// answer is raced like a GET's (a HEAD that stalls would hold the object for the SDK's whole
/// read timeout).
pub(crate) async fn stored_checksum(
    client: &Client,
    hedge: &crate::hedge::Hedge,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Option<Stored> {
    let head = hedge
        .race(|| {
            client
                .head_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version.map(str::to_owned))
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
        })
        .await
        .ok()?;
    Stored::from_headers(
        head.checksum_crc64_nvme(),
        head.checksum_crc32_c(),
        head.checksum_crc32(),
        head.checksum_type(),
    )
}

/// The parts count of a multipart ETag (`<md5 of the parts' MD5s>-<parts>`).
pub(crate) fn etag_parts(etag: &str) -> Option<u64> {
    let (md5, parts) = etag.trim_matches('"').split_once('-')?;
    parts.parse().ok().filter(|parts| is_md5(md5) && *parts > 0)
}

/// Whether `text` is an MD5 in hex: a single-part object's ETag is its bytes' MD5.
pub(crate) fn is_md5(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The MD5 or CRC of each ranged part this run fetched, by offset.
pub(crate) struct Parts {
    pub(crate) size: u64,
    pub(crate) md5s: BTreeMap<u64, [u8; 16]>,
    pub(crate) crcs: Seen,
}

/// Checks the landed bytes: against the CRC the store keeps where it gave one (`stored`), else, or
/// if the CRC matches no way the object may have been cut into parts, against the ETag: the MD5
/// for single-part objects, the MD5 of the parts' MD5s for multipart ones. Returns whether a
/// checksum was checked, and which; a mismatch is an error.
pub(crate) async fn verify(object: &Object<'_>, landed: Landed<'_>) -> Result<Check, Failure> {
    let Landed {
        etag,
        file,
        streamed_md5,
        stored,
        seen,
    } = landed;
    let etag = etag.to_ascii_lowercase();
    let parts = etag_parts(&etag);
    if let Some(stored) = stored {
        // A composite CRC is over the uploader's parts: which sizes they may have had.
        let parts = match stored.cover {
            crc::Cover::Parts(parts) => Some(parts),
            crc::Cover::Unsaid => parts,
            crc::Cover::Full => None,
        };
        let sizes = match parts {
            Some(parts) => part_sizes(object, parts).await.1,
            None => Vec::new(),
        };
        if crc::matches(stored, file, object.size, parts, &sizes, &seen.crcs)
            .map_err(Failure::io)?
        {
            return Ok(Check::Crc);
        }
        tracing::debug!(key = %object.key, "the stored CRC matches no part layout; checking the ETag");
    }
    if is_md5(&etag) {
        let actual = match streamed_md5 {
            Some(md5) => md5,
            None => file_md5(file, 0, object.size).map_err(Failure::io)?,
        };
        return if actual == etag {
            Ok(Check::Etag)
        } else {
            Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("content MD5 {actual} does not match the ETag {etag}"),
            ))
        };
    }
    let (Some(parts), Some((md5, _))) = (parts, etag.split_once('-')) else {
        return Ok(Check::None);
    };
    let (told, candidates) = part_sizes(object, parts).await;
    for part_size in candidates {
        let mut combined = Md5::new();
        let mut offset = 0;
        while offset < object.size {
            let length = part_size.min(object.size - offset);
            // A part fetched by this run was hashed as it came; one a killed run left is read.
            let streamed = (part_size == seen.size)
                .then(|| seen.md5s.get(&offset))
                .flatten();
            match streamed {
                Some(md5) => combined.update(md5),
                None => combined.update(
                    hex::decode(file_md5(file, offset, length).map_err(Failure::io)?)
                        .unwrap_or_default(),
                ),
            }
            offset += length;
        }
        if hex::encode(combined.finalize()) == md5 {
            return Ok(Check::Etag);
        }
        if Some(part_size) == told {
            return Err(Failure::transient(
                ErrorKind::Corrupt,
                format!("content does not match the multipart ETag {etag}"),
            ));
        }
    }
    Ok(Check::None)
}

/// The part sizes a multipart object of `parts` parts may have been uploaded with: the one the
/// store tells (also returned alone), then the usual ones.
async fn part_sizes(object: &Object<'_>, parts: u64) -> (Option<u64>, Vec<u64>) {
    // A server that honours `?partNumber=1` says how large the parts are (and how many); one that
    // ignores it (s3s-fs) answers for the whole object, so only a parts count makes it trustworthy.
    let told = match object
        .client
        .head_object()
        .bucket(object.bucket)
        .key(object.key)
        .set_version_id(object.version.map(str::to_owned))
        .part_number(1)
        .send()
        .await
    {
        Ok(head) if head.parts_count() == Some(parts as i32) => head
            .content_length()
            .filter(|size| *size > 0)
            .map(|size| size as u64),
        _ => None,
    };
    // Otherwise the uploader's part size was a whole number of MiB (5, 8, 16, ... in every common
    // tool) with `parts` parts: few sizes fit.
    let mib = 1024 * 1024;
    let mut candidates: Vec<u64> = told.into_iter().collect();
    candidates.extend(
        (1..=5 * 1024u64)
            .map(|n| n * mib)
            .filter(|size| object.size.div_ceil(*size) == parts)
            .take(8),
    );
    (told, candidates)
}

fn file_md5(file: &std::fs::File, start: u64, length: u64) -> std::io::Result<String> {
    let mut digest = Md5::new();
    crc::read_range(file, start, length, |bytes| digest.update(bytes))?;
    Ok(hex::encode(digest.finalize()))
}
