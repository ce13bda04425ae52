//! The `key_path` fuzz corpus and regressions (`cargo xtask fuzz`), replayed: every key maps to
//! a path under the destination or is refused.

use std::path::{Component, Path};

#[test]
fn every_fuzzed_key_stays_under_the_destination_or_is_refused() {
    let inputs = plx_testkit::fuzz_inputs("key_path");
    assert!(inputs.len() > 10, "the key_path corpus is missing");
    let mut refused = 0;
    for (name, bytes) in inputs {
        let key = String::from_utf8_lossy(&bytes);
        match plx_transfer::local_path(&key) {
            Ok(path) => {
                assert!(
                    path.components().all(|c| matches!(c, Component::Normal(_))),
                    "{name}: {key:?} → {path:?}"
                );
                assert!(
                    Path::new("/destination")
                        .join(&path)
                        .starts_with("/destination")
                );
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "the regressions include hostile keys");
}
