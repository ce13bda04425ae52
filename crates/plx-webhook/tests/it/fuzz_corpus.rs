//! The fuzz corpora and regressions of `catalog` and `review` (`cargo xtask fuzz`), replayed
//! through the same calls and invariants as the fuzz targets, so a crash once found stays fixed.

#[test]
fn every_catalog_input_gets_a_report() {
    let inputs = plx_testkit::fuzz_inputs("catalog");
    assert!(inputs.len() > 10, "the catalog corpus is missing");
    for (name, bytes) in inputs {
        let text = String::from_utf8_lossy(&bytes);
        let report = plx_connections::validate(&text, &[]);
        if !report.has_errors() {
            assert!(
                report.content.is_some(),
                "{name}: no error, yet nothing built"
            );
        }
        if let Some(plx_connections::Content::Catalog(catalog)) = report.content {
            let _ = plx_connections::validate(&text, &[catalog]);
        }
    }
}

#[test]
fn every_review_input_gets_an_answer_or_a_rejection() {
    let inputs = plx_testkit::fuzz_inputs("review");
    assert!(inputs.len() > 10, "the review corpus is missing");
    let mut answered = 0;
    for (_, bytes) in inputs {
        let policy = plx_webhook::Policy {
            keys: None,
            strict: false,
        };
        answered += usize::from(plx_webhook::answer(&bytes, policy).is_ok());
    }
    // The seed review at least is well-formed.
    assert!(answered > 0);
}
