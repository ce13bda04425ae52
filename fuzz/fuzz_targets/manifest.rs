//! Any text as a pinned manifest (`--pin`): read, then each pull looked up as a pin looks it up
//! and each recorded path mapped into the destination. A refusal or paths that stay under the
//! destination, never a panic.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("manifest.json");
    let Ok(manifest) = plx_pull::manifest::Manifest::parse(&text, file) else {
        return;
    };
    for pull in &manifest.pulls {
        let _ = manifest.pinned(file, &pull.connection, Path::new(&pull.destination));
        for object in &pull.objects {
            if let Ok(path) = plx_transfer::local_path(&object.path) {
                assert!(path.components().all(|c| matches!(c, Component::Normal(_))));
            }
        }
    }
});
