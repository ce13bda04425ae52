//! Any body as an AdmissionReview: an answer or a rejection, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = plx_webhook::answer(
        data,
        plx_webhook::Policy {
            keys: None,
            strict: false,
        },
    );
});
