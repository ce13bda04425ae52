//! What a transfer reports as it goes ([`Event`]), for progress bars and logs.

/// What happens, as it happens, for progress bars and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An object started.
    Started {
        /// Its key.
        key: String,
        /// Its size.
        size: u64,
    },
    /// Bytes arrived (or left).
    Bytes(u64),
    /// One part of a large object is on disk (and recorded, so a rerun will not fetch it again).
    PartDone {
        /// The object's key.
        key: String,
        /// The part's first byte.
        start: u64,
    },
    /// An object is complete and verified.
    Done {
        /// Its key.
        key: String,
    },
    /// An object was already present and verified; nothing was fetched.
    Skipped {
        /// Its key.
        key: String,
    },
    /// A transient failure; the object (or part) is tried again.
    Retry {
        /// Its key.
        key: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        cause: String,
    },
}

/// Where events go; `None` to ignore them.
pub type Events = Option<tokio::sync::mpsc::UnboundedSender<Event>>;

pub(crate) fn emit(events: &Events, event: Event) {
    if let Some(sender) = events {
        let _ = sender.send(event);
    }
}
