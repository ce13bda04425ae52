//! The CRCs a store keeps beside an object (`x-amz-checksum-crc64nvme`, `-crc32c`, `-crc32`).
//! Where one is offered, the landed bytes are checked against it instead of the ETag's MD5: a CRC
//! runs at memory speed, an MD5 at about 1 GB/s per core, and on a shared node that core is the
//! download's. Uploads send a CRC32C with every request, so the store checks what it receives
//! and keeps a checksum for the next download.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use aws_sdk_s3::types::ChecksumType;

/// A CRC algorithm S3 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crc {
    Crc32,
    Crc32c,
    Crc64Nvme,
}

impl Crc {
    fn algorithm(self) -> crc_fast::CrcAlgorithm {
        match self {
            Crc::Crc32 => crc_fast::CrcAlgorithm::Crc32IsoHdlc,
            Crc::Crc32c => crc_fast::CrcAlgorithm::Crc32Iscsi,
            Crc::Crc64Nvme => crc_fast::CrcAlgorithm::Crc64Nvme,
        }
    }

    fn width(self) -> usize {
        match self {
            Crc::Crc32 | Crc::Crc32c => 4,
            Crc::Crc64Nvme => 8,
        }
    }

    pub(crate) fn digest(self) -> crc_fast::Digest {
        crc_fast::Digest::new(self.algorithm())
    }

    fn of(self, bytes: &[u8]) -> u64 {
        crc_fast::checksum(self.algorithm(), bytes)
    }

    /// The CRC of `a`'s bytes followed by `b_length` bytes whose CRC is `b`.
    fn combine(self, a: u64, b: u64, b_length: u64) -> u64 {
        crc_fast::checksum_combine(self.algorithm(), a, b, b_length)
    }

    /// Big-endian, as S3 puts it in base64.
    fn bytes(self, value: u64) -> Vec<u8> {
        value.to_be_bytes()[8 - self.width()..].to_vec()
    }

    /// The base64 form S3 sends and takes.
    pub(crate) fn encode(self, value: u64) -> String {
        aws_smithy_types::base64::encode(self.bytes(value))
    }

    /// The CRC of `length` bytes of `file` from `start`.
    fn of_file(self, file: &std::fs::File, start: u64, length: u64) -> std::io::Result<u64> {
        let mut digest = self.digest();
        read_range(file, start, length, |bytes| digest.update(bytes))?;
        Ok(digest.finalize())
    }
}

/// Feeds `length` bytes of `file` from `start` to `each`, a MiB at a time.
pub(crate) fn read_range(
    file: &std::fs::File,
    start: u64,
    length: u64,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut offset = start;
    while offset < start + length {
        let want = (start + length - offset).min(buffer.len() as u64) as usize;
        let read = file.read_at(&mut buffer[..want], offset)?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shorter than expected",
            ));
        }
        each(&buffer[..read]);
        offset += read as u64;
    }
    Ok(())
}

/// The CRC32C of `bytes`, for an upload's `x-amz-checksum-crc32c`.
pub(crate) fn crc32c(bytes: &[u8]) -> String {
    Crc::Crc32c.encode(Crc::Crc32c.of(bytes))
}

/// The CRC32C of part of a file, for an upload's `x-amz-checksum-crc32c`.
pub(crate) fn crc32c_of_file(
    file: &std::fs::File,
    start: u64,
    length: u64,
) -> std::io::Result<String> {
    Ok(Crc::Crc32c.encode(Crc::Crc32c.of_file(file, start, length)?))
}

/// How a stored checksum covers the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cover {
    /// Over the bytes (`FULL_OBJECT`).
    Full,
    /// Over the parts' checksums, this many parts (`COMPOSITE`, or a value ending `-<parts>`).
    Parts(u64),
    /// Not said: Garage sends a composite value bare, with no type.
    Unsaid,
}

/// A CRC the store gave for the whole object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) crc: Crc,
    pub(crate) value: u64,
    pub(crate) cover: Cover,
}

impl Stored {
    /// As a manifest records it: `crc32c:<base64>`, and `-<parts>` for a composite over parts.
    pub(crate) fn text(&self) -> String {
        let name = match self.crc {
            Crc::Crc32 => "crc32",
            Crc::Crc32c => "crc32c",
            Crc::Crc64Nvme => "crc64nvme",
        };
        match self.cover {
            Cover::Parts(parts) => format!("{name}:{}-{parts}", self.crc.encode(self.value)),
            _ => format!("{name}:{}", self.crc.encode(self.value)),
        }
    }

    /// The cheapest strong CRC among a response's checksum headers, if any parses.
    pub(crate) fn from_headers(
        crc64nvme: Option<&str>,
        crc32c: Option<&str>,
        crc32: Option<&str>,
        kind: Option<&ChecksumType>,
    ) -> Option<Stored> {
        let (crc, text) = [
            (Crc::Crc64Nvme, crc64nvme),
            (Crc::Crc32c, crc32c),
            (Crc::Crc32, crc32),
        ]
        .into_iter()
        .find_map(|(crc, text)| text.map(|text| (crc, text)))?;
        let (encoded, parts) = match text.rsplit_once('-') {
            Some((encoded, parts)) => (encoded, Some(parts.parse::<u64>().ok()?)),
            None => (text, None),
        };
        let bytes = aws_smithy_types::base64::decode(encoded).ok()?;
        if bytes.len() != crc.width() {
            return None;
        }
        let value = bytes
            .iter()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte));
        let cover = match (parts, kind) {
            (Some(parts), _) => Cover::Parts(parts),
            (None, Some(ChecksumType::FullObject)) => Cover::Full,
            (None, _) => Cover::Unsaid,
        };
        Some(Stored { crc, value, cover })
    }
}

/// The CRC of each part this run fetched, by offset, taken as the bytes came in.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) part_size: u64,
    pub(crate) crcs: BTreeMap<u64, u64>,
}

impl Seen {
    /// The CRC of the part at `offset`, `length` long: as seen, or read back.
    fn part(
        &self,
        crc: Crc,
        file: &std::fs::File,
        offset: u64,
        length: u64,
        part_size: u64,
    ) -> std::io::Result<u64> {
        match (part_size == self.part_size)
            .then(|| self.crcs.get(&offset))
            .flatten()
        {
            Some(value) => Ok(*value),
            None => crc.of_file(file, offset, length),
        }
    }
}

/// Whether the `size` bytes of `file` match `stored`. `parts` is how many parts a multipart ETag
/// says the uploader used, and `part_sizes` the part sizes that may have been theirs: a composite
/// checksum is over the uploader's parts, so the bytes are cut the way they were cut.
pub(crate) fn matches(
    stored: Stored,
    file: &std::fs::File,
    size: u64,
    parts: Option<u64>,
    part_sizes: &[u64],
    seen: &Seen,
) -> std::io::Result<bool> {
    let crc = stored.crc;
    let full = || -> std::io::Result<bool> {
        // Over the bytes: the parts' CRCs combined in order, whatever size they were.
        let step = if seen.part_size > 0 {
            seen.part_size
        } else {
            size.max(1)
        };
        let mut combined: Option<u64> = None;
        let mut offset = 0;
        while offset < size {
            let length = step.min(size - offset);
            let part = seen.part(crc, file, offset, length, step)?;
            combined = Some(match combined {
                Some(before) => crc.combine(before, part, length),
                None => part,
            });
            offset += length;
        }
        Ok(combined.unwrap_or_else(|| crc.of(&[])) == stored.value)
    };
    let composite = |count: u64| -> std::io::Result<bool> {
        for &part_size in part_sizes {
            if part_size == 0 || size.div_ceil(part_size) != count {
                continue;
            }
            let mut joined = Vec::with_capacity(count as usize * crc.width());
            let mut offset = 0;
            while offset < size {
                let length = part_size.min(size - offset);
                joined.extend(crc.bytes(seen.part(crc, file, offset, length, part_size)?));
                offset += length;
            }
            if crc.of(&joined) == stored.value {
                return Ok(true);
            }
        }
        Ok(false)
    };
    match (stored.cover, parts) {
        (Cover::Full, _) => full(),
        (Cover::Parts(count), _) => composite(count),
        (Cover::Unsaid, Some(count)) => Ok(composite(count)? || full()?),
        (Cover::Unsaid, None) => full(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> std::fs::File {
        let mut file = tempfile::tempfile().expect("a temporary file");
        std::io::Write::write_all(&mut file, bytes).expect("written");
        file
    }

    fn bytes(size: usize) -> Vec<u8> {
        (0..size).map(|index| (index * 31 % 251) as u8).collect()
    }

    #[test]
    fn parses_what_s3_and_garage_send() {
        let value = Crc::Crc32c.encode(0x1234_5678);
        let full = Stored::from_headers(None, Some(&value), None, Some(&ChecksumType::FullObject));
        assert_eq!(
            full,
            Some(Stored {
                crc: Crc::Crc32c,
                value: 0x1234_5678,
                cover: Cover::Full
            })
        );
        let parts = format!("{value}-3");
        let composite = Stored::from_headers(None, Some(&parts), None, None);
        assert_eq!(composite.map(|stored| stored.cover), Some(Cover::Parts(3)));
        let bare = Stored::from_headers(None, Some(&value), None, None);
        assert_eq!(bare.map(|stored| stored.cover), Some(Cover::Unsaid));
        // The 64-bit CRC wins; a value of the wrong width is no checksum.
        let wide = Crc::Crc64Nvme.encode(u64::MAX - 1);
        let both = Stored::from_headers(Some(&wide), Some(&value), None, None);
        assert_eq!(both.map(|stored| stored.crc), Some(Crc::Crc64Nvme));
        assert_eq!(Stored::from_headers(Some(&value), None, None, None), None);
        assert_eq!(
            Stored::from_headers(None, Some("not base64!"), None, None),
            None
        );
    }

    #[test]
    fn a_full_object_crc_is_checked_from_parts_of_any_size() {
        let data = bytes(10_000);
        let file = file_with(&data);
        for crc in [Crc::Crc32, Crc::Crc32c, Crc::Crc64Nvme] {
            let stored = Stored {
                crc,
                value: crc.of(&data),
                cover: Cover::Full,
            };
            let mut seen = Seen {
                part_size: 3_000,
                ..Seen::default()
            };
            // One part hashed as it came, the others read back.
            seen.crcs.insert(3_000, crc.of(&data[3_000..6_000]));
            assert!(matches(stored, &file, 10_000, None, &[], &seen).expect("read"));
            let wrong = Stored {
                value: stored.value ^ 1,
                ..stored
            };
            assert!(!matches(wrong, &file, 10_000, None, &[], &seen).expect("read"));
        }
    }

    #[test]
    fn a_composite_crc_is_checked_over_the_uploaders_parts() {
        let data = bytes(10_000);
        let file = file_with(&data);
        let joined: Vec<u8> = data
            .chunks(4_000)
            .flat_map(|part| Crc::Crc32c.bytes(Crc::Crc32c.of(part)))
            .collect();
        let value = Crc::Crc32c.of(&joined);
        for cover in [Cover::Parts(3), Cover::Unsaid] {
            let stored = Stored {
                crc: Crc::Crc32c,
                value,
                cover,
            };
            let seen = Seen::default();
            assert!(matches(stored, &file, 10_000, Some(3), &[3_500, 4_000], &seen).expect("read"));
            // Cut any other way, the same bytes do not match.
            assert!(!matches(stored, &file, 10_000, Some(3), &[3_500], &seen).expect("read"));
        }
    }
}
