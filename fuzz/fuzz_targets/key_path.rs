//! Any object key: mapped to a path that stays under the destination, or refused.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = String::from_utf8_lossy(data);
    if let Ok(path) = plx_transfer::local_path(&key) {
        assert!(path.is_relative(), "{key:?} → {path:?}");
        assert!(
            path.components().all(|c| matches!(c, Component::Normal(_))),
            "{key:?} → {path:?}"
        );
        let destination = Path::new("/destination");
        assert!(destination.join(&path).starts_with(destination));
    }
});
