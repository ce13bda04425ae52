//! Moves data between S3 and a local directory: parallel over objects and over the parts of large
//! objects, verified against sizes and checksums, landed atomically, resumable, and never writing
//! outside the destination whatever the keys say.
//!
//! Why not awslabs' `aws-s3-transfer-manager` (0.3, read at its `download_objects` worker): it
//! writes each object straight to its final name (`File::create`, so an interrupted run leaves a
//! partial file that looks complete), guards keys lexically (`path_clean` then `starts_with`, so
//! a symlink planted in the destination is followed), collapses `a////b` into `a/b`, checks no
//! ETag, and keeps no state to skip or resume on a rerun. Its useful parts, ranged GETs and
//! parallel part uploads, are a few dozen lines on `aws-sdk-s3`, so this engine owns them and
//! keeps every guarantee in one place.
//!
//! The modules are layers; each imports only from its own layer and those below it, and no
//! import goes round a loop (`tests/it/layers.rs` reads this list and checks the source):
//! 1. what a caller names and gets back: `request`, `config`, `event`, `summary`, `error`,
//!    `record`, and the helpers every layer uses (`path`, `explain`, `job`);
//! 2. the mechanisms: `retry`, `flow`, `hedge`, `space`, `state`, `landing`, `verify`, `cache`;
//! 3. planning: `select`, `plan`;
//! 4. fetching one object: `fetch`;
//! 5. the transfers, which only orchestrate: `download`, `upload`, `copy`; and `objects`, a
//!    caller's own reads and writes of single objects (the Python package's filesystem).

mod cache;
mod config;
mod copy;
mod download;
mod error;
mod event;
mod explain;
mod fetch;
mod flow;
mod hedge;
mod job;
mod landing;
mod objects;
mod path;
mod plan;
mod record;
mod request;
mod retry;
mod select;
mod space;
mod state;
mod summary;
mod upload;
mod verify;

pub use crate::{
    cache::store_of,
    config::{Config, REQUEST_BASE, REQUEST_BODY, open_file_limit, request_memory},
    copy::copy,
    download::download,
    error::{Error, ErrorKind, ObjectError},
    event::{Event, Events},
    explain::{About, Explained, explain},
    objects::{Body, Listed, Listing, Objects, Slice, Span, Stat},
    path::{KeyError, local_path},
    record::Record,
    request::{Download, Entry, MountCopy, NodeCache, Pinned, Upload},
    state::{STATE_DIR, state_dir},
    summary::{FromCache, Step, Summary},
    upload::upload,
};
