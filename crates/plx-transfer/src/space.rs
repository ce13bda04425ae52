//! Room at the destination. A download reserves each object's bytes (rounded up to the file
//! system's blocks) against the free space `statvfs` reports when it starts, before it writes
//! them; what is already there and skipped reserves nothing. The first object that does not fit
//! stops the download: nothing more is written, the rest is only counted, and the failure gives
//! what the pull needed against what was free. A disk that fills anyway (another writer, a quota)
//! stops it the same way ([`Space::fill`]).

use std::{
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use crate::{ErrorKind, ObjectError, retry::Failure};

pub(crate) struct Space {
    /// Bytes free for this process at the start; `u64::MAX` where the file system cannot say.
    free: u64,
    block: u64,
    reserved: AtomicU64,
    /// Bytes of every object this run had to fetch (not skipped), fitted or not.
    needed: AtomicU64,
    /// Objects not fetched for want of room.
    refused: AtomicU64,
    full: AtomicBool,
    /// The file system's own word, when the disk filled up under a write.
    filled: std::sync::Mutex<Option<String>>,
}

impl Space {
    /// The free space at `destination` (or, before it is made, at its nearest ancestor) for this
    /// process: `f_bavail`, or `f_bfree` for root, which may use the blocks a file system keeps
    /// back for it (init containers often run as root). A kubelet's emptyDir `sizeLimit` is
    /// enforced by eviction, not by the file system, and no `statvfs` sees it.
    pub(crate) fn measure(destination: &Path) -> Space {
        let existing = destination
            .ancestors()
            .find(|path| path.exists())
            .unwrap_or(destination);
        // /proc/self belongs to the process's effective user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|meta| {
            use std::os::unix::fs::MetadataExt;
            meta.uid() == 0
        });
        let (free, block) = match rustix::fs::statvfs(existing) {
            Ok(stat) => (
                if root { stat.f_bfree } else { stat.f_bavail }.saturating_mul(stat.f_frsize),
                stat.f_frsize.max(1),
            ),
            Err(error) => {
                tracing::debug!("statvfs {}: {error}", destination.display());
                (u64::MAX, 1)
            }
        };
        Space {
            free,
            block,
            reserved: AtomicU64::new(0),
            needed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            full: AtomicBool::new(false),
            filled: std::sync::Mutex::new(None),
        }
    }

    /// Room for an object of `size` bytes, held until the object lands (kept) or fails (given
    /// back); a failure of kind [`ErrorKind::NoSpace`] when it does not fit, or when an earlier
    /// object did not.
    pub(crate) fn reserve(&self, size: u64) -> Result<Reservation<'_>, Failure> {
        let bytes = size.div_ceil(self.block).saturating_mul(self.block);
        self.needed.fetch_add(bytes, Ordering::Relaxed);
        let taken = !self.full.load(Ordering::Relaxed)
            && self
                .reserved
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |reserved| {
                    reserved
                        .checked_add(bytes)
                        .filter(|total| *total <= self.free)
                })
                .is_ok();
        if !taken {
            self.full.store(true, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Failure::permanent(
                ErrorKind::NoSpace,
                "not fetched: no room at the destination",
            ));
        }
        Ok(Reservation {
            space: self,
            bytes,
            kept: false,
        })
    }

    /// The disk filled up under an object's write: it and nothing after it is fetched.
    pub(crate) fn fill(&self, message: &str) {
        self.full.store(true, Ordering::Relaxed);
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut filled) = self.filled.lock() {
            filled.get_or_insert_with(|| message.to_owned());
        }
    }

    /// When the transfer ran out of room: the one failure that says so goes first in
    /// `failures`, in place of the objects' own (each would only repeat it).
    pub(crate) fn settle(&self, destination: &Path, failures: &mut Vec<ObjectError>) {
        if let Some(shortfall) = self.shortfall(destination) {
            failures.retain(|failure| failure.kind != ErrorKind::NoSpace);
            failures.insert(0, shortfall);
        }
    }

    fn shortfall(&self, destination: &Path) -> Option<ObjectError> {
        if !self.full.load(Ordering::Relaxed) {
            return None;
        }
        let needed = self.needed.load(Ordering::Relaxed);
        let free = if self.free == u64::MAX {
            "an unknown amount".to_owned()
        } else {
            size(self.free)
        };
        let cause = match self.filled.lock().ok().and_then(|filled| filled.clone()) {
            Some(error) => format!("the disk filled up ({error}); "),
            None => String::new(),
        };
        let refused = self.refused.load(Ordering::Relaxed);
        Some(ObjectError::new(
            ErrorKind::NoSpace,
            &destination.display().to_string(),
            format!(
                "{cause}this pull needs {} and the destination had {free} free: make room there \
                 (a larger volume, or a smaller selection) and run again; \
                 {} not fetched, nothing partial was left, and what landed is kept for the rerun",
                size(needed),
                if refused == 1 {
                    "1 object was".to_owned()
                } else {
                    format!("{refused} objects were")
                },
            ),
        ))
    }
}

/// Bytes as people read them, with the exact figure.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = "bytes";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "bytes" {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {unit} ({bytes} bytes)")
    }
}

/// Room held for one object.
pub(crate) struct Reservation<'a> {
    space: &'a Space,
    bytes: u64,
    kept: bool,
}

impl Reservation<'_> {
    /// The object landed: its bytes stay used.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.space.reserved.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(free: u64) -> Space {
        Space {
            free,
            block: 4096,
            reserved: AtomicU64::new(0),
            needed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            full: AtomicBool::new(false),
            filled: std::sync::Mutex::new(None),
        }
    }

    #[test]
    fn objects_fit_until_the_first_that_does_not_then_none_does() {
        let space = space(3 * 4096);
        let first = space.reserve(4096).map(Reservation::keep);
        assert!(first.is_ok());
        // Rounded up to blocks: 4097 bytes take two.
        assert!(space.reserve(4097).is_ok_and(|held| {
            held.keep();
            true
        }));
        assert!(space.reserve(4096).is_err());
        // Full now: even a small object is not fetched.
        assert!(space.reserve(1).is_err());
        let shortfall = space
            .shortfall(Path::new("/data"))
            .map(|failure| failure.message);
        let message = shortfall.unwrap_or_default();
        assert!(
            message.contains("needs 20.0 KiB (20480 bytes)"),
            "{message}"
        );
        assert!(
            message.contains("had 12.0 KiB (12288 bytes) free"),
            "{message}"
        );
        assert!(message.contains("2 objects were not fetched"), "{message}");
    }

    #[test]
    fn a_failed_object_gives_its_room_back() {
        let space = space(2 * 4096);
        drop(space.reserve(2 * 4096));
        assert!(space.reserve(2 * 4096).is_ok());
        assert!(space.shortfall(Path::new("/data")).is_none());
    }
}
