//! The Python package's tests: pytest (`tests/python`) in the venv `cargo xtask test` makes
//! (Polyaxon 2.18 with its s3fs, fsspec, pytest), on the package put together from `python/`
//! and the extension this workspace's build made, against moto, s3s-fs, and s3s-fs behind the
//! testkit's fault proxy, all started here.

use std::{path::PathBuf, process::Stdio};

use anyhow::Context;
use plx_testkit::{Fault, FaultProxy, LatencyProxy, Moto, Network, S3Server};
use sha2::Digest;

/// The extension the build made: `target/<profile>/libplx_python.so`, beside this test's
/// `deps/`.
fn extension() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test binary is not under target/<profile>/deps")?;
    let built = profile.join("libplx_python.so");
    anyhow::ensure!(
        built.exists(),
        "{} is missing: build the workspace first (`cargo xtask test` does)",
        built.display()
    );
    Ok(built)
}

/// `python/plx_connections` with the extension as `_engine.abi3.so`, under `dir`: what the
/// wheel installs.
fn package(dir: &std::path::Path) -> anyhow::Result<()> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/plx_connections");
    let target = dir.join("plx_connections");
    std::fs::create_dir_all(&target)?;
    for file in std::fs::read_dir(&source)? {
        let file = file?;
        if file.path().extension().is_some_and(|ext| ext == "py") {
            std::fs::copy(file.path(), target.join(file.file_name()))?;
        }
    }
    std::fs::copy(extension()?, target.join("_engine.abi3.so"))?;
    Ok(())
}

fn server(endpoint: &str, region: &str, access: &str, secret: &str) -> String {
    serde_json::json!({
        "endpoint": endpoint, "region": region, "access_key": access, "secret_key": secret,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytest() -> anyhow::Result<()> {
    let Some(python) = std::env::var_os("PLX_POLYAXON_PYTHON") else {
        eprintln!(
            "the Python package's tests not run (set PLX_POLYAXON_PYTHON, or run `cargo xtask test`)"
        );
        return Ok(());
    };
    let packaged = tempfile::tempdir()?;
    package(packaged.path())?;
    let moto = Moto::start().await?;
    let s3s = S3Server::start().await?;
    // A third of the connections to it reset, cut short, stalled or answered 503 or 500.
    let faulty = FaultProxy::start(
        ([127, 0, 0, 1], s3s.port).into(),
        &[
            Fault::Reset,
            Fault::Truncate,
            Fault::Stall,
            Fault::SlowDown,
            Fault::InternalError,
        ],
        0.3,
        37,
    )
    .await?;
    // Half the object bodies come back with a byte flipped, a fifth trickle at 64 KiB/s (each
    // a request's first time only): what the reads' checks are for.
    let corrupting = LatencyProxy::start(
        ([127, 0, 0, 1], s3s.port).into(),
        Network {
            corrupt: 0.5,
            slow: 0.2,
            slow_rate: 64 * 1024,
            seed: 41,
            ..Network::far(std::time::Duration::ZERO)
        },
    )
    .await?;
    // One object overwritten between two ranged parts of its download: the first part is
    // answered with the old bytes, the others wait until the new ones are stored.
    let (bucket, key, size) = ("plx-changing", "big.bin", 20 * 1024 * 1024 + 5);
    let new = plx_testkit::bytes(7, size);
    let put = s3s
        .client
        .put_object()
        .bucket(bucket)
        .key(key)
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(
            std::time::Duration::from_secs(3600),
        )?)
        .await
        .map_err(|error| anyhow::anyhow!("presigning a PUT of {key}: {error}"))?;
    let changing = LatencyProxy::start(
        ([127, 0, 0, 1], s3s.port).into(),
        Network {
            change: Some(plx_testkit::Change {
                path: format!("/{bucket}/{key}"),
                put: put.uri().to_owned(),
                body: new.clone().into(),
            }),
            ..Network::far(std::time::Duration::ZERO)
        },
    )
    .await?;
    let mut changing_server: serde_json::Value = serde_json::from_str(&server(
        &changing.endpoint(),
        &s3s.region,
        &s3s.access_key,
        &s3s.secret_key,
    ))?;
    changing_server["bucket"] = bucket.into();
    changing_server["key"] = key.into();
    changing_server["size"] = size.into();
    changing_server["new_sha256"] = hex::encode(sha2::Sha256::digest(&new)).into();
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let scratch = tempfile::tempdir()?;
    let status = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs"])
        .arg(&tests)
        // More of pytest's arguments, to run some of the tests: `PLX_PYTEST="-k get -x"`.
        .args(
            std::env::var("PLX_PYTEST")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .current_dir(scratch.path())
        .env("PYTHONPATH", packaged.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The state of `get`s, kept in the user's cache, stays in the scratch directory.
        .env("XDG_CACHE_HOME", scratch.path().join("cache"))
        .env(
            "PLX_TEST_MOTO",
            server(&moto.endpoint, "us-east-1", "testing", "testing"),
        )
        .env(
            "PLX_TEST_S3S",
            server(&s3s.endpoint, &s3s.region, &s3s.access_key, &s3s.secret_key),
        )
        .env(
            "PLX_TEST_FAULTY",
            server(
                &faulty.endpoint(),
                &s3s.region,
                &s3s.access_key,
                &s3s.secret_key,
            ),
        )
        .env(
            "PLX_TEST_CORRUPT",
            server(
                &corrupting.endpoint(),
                &s3s.region,
                &s3s.access_key,
                &s3s.secret_key,
            ),
        )
        .env("PLX_TEST_CHANGING", changing_server.to_string())
        .stdin(Stdio::null())
        .status()
        .await
        .context("cannot run pytest")?;
    // The fault test went through a network that did break (when every test ran).
    anyhow::ensure!(
        faulty.injected() > 0 || std::env::var_os("PLX_PYTEST").is_some(),
        "the fault proxy broke no connection: the fault test did not run through it"
    );
    let corrupted = corrupting
        .counts()
        .corrupted
        .load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(
        corrupted > 0 || std::env::var_os("PLX_PYTEST").is_some(),
        "the corrupting proxy flipped no byte: the corruption test did not run through it"
    );
    match status.code() {
        Some(0) => Ok(()),
        // pytest's "no tests collected": a suite that lost its tests must not pass.
        Some(5) => anyhow::bail!("pytest collected no tests under {}", tests.display()),
        _ => anyhow::bail!("pytest failed ({status}); its report is above"),
    }
}
