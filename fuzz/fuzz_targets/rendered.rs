//! Any text as a stream of rendered manifests, as the Helm post-renderer reads its stdin: the
//! lenient reader (`read_manifests`), then each object's carried catalog checked as the
//! post-renderer checks it. A report or a refusal, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(documents) = plx_connections::read_manifests(&text) {
        for document in &documents {
            let kind = document["kind"].as_str().unwrap_or_default();
            let _ = plx_connections::carried_catalog(kind, document, &[]);
        }
    }
});
