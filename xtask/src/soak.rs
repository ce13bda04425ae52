//! `soak`: the long fault, kill and many-objects runs.

use std::path::Path;

use crate::{
    cargo,
    images::{Binaries, garage_image, images},
    status,
    test::remove_test_containers,
};

/// The long fault runs (`cargo xtask test` runs 2 per class).
pub(crate) fn run(root: &Path, runs: u32) -> anyhow::Result<()> {
    images(root, Binaries::Shipped)?;
    let result = status(
        cargo()
            .args([
                "test",
                "-p",
                "plx-transfer",
                "--test",
                "it",
                "--",
                "faults::",
            ])
            .args(["--nocapture", "--test-threads", "1"])
            .env("PLX_FAULT_RUNS", runs.to_string()),
    )
    .and_then(|()| {
        (0..5).try_for_each(|_| {
            status(cargo().args([
                "test", "-q", "-p", "plx-init", "--test", "it", "--", "kill::",
            ]))
        })
    })
    .and_then(|()| {
        status(
            cargo()
                .args([
                    "test",
                    "-q",
                    "-p",
                    "plx-init",
                    "--test",
                    "it",
                    "--",
                    "many::",
                    "--nocapture",
                ])
                .env("PLX_MANY_OBJECTS", "100000"),
        )
    })
    .and_then(|()| {
        garage_image(root)?;
        status(
            cargo()
                .args(["test", "-q", "-p", "plx-init", "--test", "it"])
                .args([
                    "many::many_small_objects_from_garage",
                    "--",
                    "--ignored",
                    "--nocapture",
                ])
                .env("PLX_MANY_OBJECTS", "100000"),
        )
    });
    remove_test_containers();
    result
}
