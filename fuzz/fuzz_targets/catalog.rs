//! Any text as a catalog or a job (YAML or JSON, every form): parsing and validation never
//! panic, and a report without errors carries the typed content.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let report = plx_connections::validate(&text, &[]);
    if !report.has_errors() {
        assert!(report.content.is_some(), "no error, yet nothing built");
    }
    // Jobs are also checked against a catalog.
    if let Some(plx_connections::Content::Catalog(catalog)) = report.content {
        let _ = plx_connections::validate(&text, &[catalog]);
    }
});
