//! Project automation, run as `cargo xtask <task>` (see <https://github.com/matklad/cargo-xtask>).
//!
//! Every task sets up what it needs on a fresh machine (a Python venv with Polyaxon under
//! `target/`, and later Docker images) and caches it there.

// The values schema is one large `json!`.
#![recursion_limit = "256"]

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};

mod bench;
mod chart;
mod polyaxon_init;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  demo                 the main job end to end, on nothing but this checkout: an S3 server in
                       the process, the seed page's catalog validated and fixed, a job's init
                       section pulled by plx-init
  test                 every test: unit, property, integration, conformance (with Polyaxon 2.18),
                       the plx-init image in a container, and the demo
  conformance [FILTER] the conformance cases: the model (cross-checked against Polyaxon 2.18),
                       transfers and plx-init runs (against a real S3 server)
  schemas [--check]    regenerate schemas/ from the Rust types, and the chart's
                       values.schema.json from them (or fail when stale)
  chart                the Helm chart through real Helm v4 code: lint, render every ci/
                       scenario into typed objects, the values schema against the conformance
                       cases, the rendered webhook and helm-test pods run for real
  bench [--quick] [--server s3s|garage] [--workload W] [--tool T] [--rounds N]
                       plx-init side by side with s5cmd, rclone, the AWS CLI, boto3, Polyaxon's
                       s3fs path, aws-s3-transfer-manager and a curl floor on one S3 server
                       (Garage by default), every run checked, into docs/benchmarks.md;
                       --quick: small W1, W3 and W5 on s3s, correctness only (in `test`)
  bench webhook [SECS]  the admission webhook under sustained load from wrk (HTTPS; 1, 16 and
                       64 connections, and during certificate rotation; 60 s each), memory
                       sampled every second, into docs/benchmarks.md
  soak [RUNS]          the fault classes RUNS times each (downloads and uploads through the
                       fault proxy; default 20), the SIGKILL test 5 times, and 100,000 objects
                       under a 256-file RLIMIT_NOFILE (s3s-fs) and under the usual limit (Garage,
                       whose image it builds when missing)
  fuzz [SECONDS]       each fuzz target (catalog, review, key_path) for SECONDS (default 60)
                       with cargo-fuzz; the corpus is kept under fuzz/corpus
  images [--garage]    build the plx-init, plx-webhook and test S3 server (s3s-fs) images, a
                       stand-in for Polyaxon's init image and plx-init-polyaxon on it, locally,
                       and Garage's when asked (its build is long); nothing is pulled
  images --polyaxon-init IMAGE
                       build plx-init-polyaxon:2.18.0 on Polyaxon's own init image IMAGE
                       (e.g. polyaxon/polyaxon-init:2.18.0, pulled by Docker), to push
";

/// The reference implementation the conformance suite is compared with.
const POLYAXON: &str = "polyaxon==2.18.0";
/// The peers tests talk to: moto (S3 and STS), the AWS CLI, and Helm v4's Go code (no helm
/// binary can be had here; a `helm` on PATH is used instead when there is one).
const TOOLS: &[&str] = &[
    "moto[server]==5.2.5",
    // Without it moto quietly computes a CRC32 where a CRC32C is asked for.
    "crc32c==2.9.post0",
    "awscli==1.46.3",
    "helm-python-sdk==0.2.2",
];
/// The S3 server built into a test image.
const S3S_FS: &str = "s3s-fs@0.14.1";
const S3S_IMAGE: &str = "plx-test/s3s-fs:0.14.1";
/// The init container's image, built from this workspace.
const PLX_INIT_IMAGE: &str = concat!("plx-init:", env!("CARGO_PKG_VERSION"));
/// The admission webhook's image, built from this workspace.
const PLX_WEBHOOK_IMAGE: &str = concat!("plx-webhook:", env!("CARGO_PKG_VERSION"));
/// Debian's CA bundle, for TLS to stores from the image.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const GARAGE: &str = "garage@2.5.0";
const GARAGE_IMAGE: &str = "plx-test/garage:2.5.0";
/// A single-node Garage: the test fixture assigns the layout and imports the key.
const GARAGE_TOML: &str = r#"metadata_dir = "/data/meta"
data_dir = "/data/blocks"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "[::]:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "5c1915fa04d0b6739675c61bf5907eb0fe3d9c69850c83820f51b4d25d13868c"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "[::]:3900"
root_domain = ".s3.garage.localhost"
"#;
/// Label of every container the tests start (plx-testkit sets it).
const TEST_LABEL: &str = "plx-testkit";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = project_root();
    env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("conformance") => conformance(&root, args.get(1).map(String::as_str)),
        Some("schemas") => schemas(&root, args.get(1).map(String::as_str) == Some("--check")),
        Some("chart") => chart_tests(&root),
        Some("demo") => demo(&root),
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("webhook") => bench::webhook(
                &root,
                args.get(2)
                    .and_then(|seconds| seconds.parse().ok())
                    .unwrap_or(60),
            ),
            _ => bench::transfer(&root, &args[1..]),
        },
        Some("soak") => soak(
            &root,
            args.get(1).and_then(|runs| runs.parse().ok()).unwrap_or(20),
        ),
        Some("fuzz") => fuzz(
            &root,
            args.get(1)
                .and_then(|seconds| seconds.parse().ok())
                .unwrap_or(60),
        ),
        Some("images") if args.get(1).map(String::as_str) == Some("--polyaxon-init") => {
            let base = args.get(2).context(
                "--polyaxon-init takes Polyaxon's init image, e.g. polyaxon/polyaxon-init:2.18.0",
            )?;
            image_binary("plx-init")?;
            polyaxon_init::layered(&root, base)?;
            eprintln!(
                "xtask: built {} on {base}; tag it for your registry and push it",
                polyaxon_init::LAYERED
            );
            Ok(())
        }
        Some("images") => {
            images(&root)?;
            if args.get(1).map(String::as_str) == Some("--garage") {
                garage_image(&root)?;
            }
            Ok(())
        }
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            bail!("unknown or missing task")
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub(crate) fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub(crate) fn status(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

fn test(root: &Path) -> anyhow::Result<()> {
    let python = polyaxon_venv(root)?;
    let tools = tools_venv(root)?;
    chart::values_schema(root, true)?;
    images(root)?;
    remove_test_containers();
    let result = status(
        cargo()
            .args(["test", "--workspace", "--all-targets"])
            .env("PLX_POLYAXON_PYTHON", &python)
            .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
            .env("PLX_AWS_CLI", tools.join("bin/aws"))
            .env("PLX_HELM_PYTHON", tools.join("bin/python"))
            // Tests never ask a metadata service for credentials.
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    )
    .and_then(|()| status(cargo().args(["test", "--workspace", "--doc"])))
    // The demo is part of the suite: what a newcomer runs first must not rot.
    .and_then(|()| demo(root))
    // The benchmark's smoke run: every peer installs, runs and brings the right bytes.
    .and_then(|()| bench::transfer(root, &["--quick".to_owned()]));
    // Containers of a test that was killed outlive it; none may outlive the run.
    remove_test_containers();
    result
}

fn remove_test_containers() {
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={TEST_LABEL}")])
        .output();
    let Ok(listed) = listed else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&ids)
            .output();
    }
}

/// An image of one binary from crates.io on `scratch`: the binary, the shared libraries it
/// links, a few files, and data directories owned by nobody, who runs it.
struct ScratchImage<'a> {
    tag: &'a str,
    /// `name@version`, with the `cargo install` flags it needs; empty for a binary of this
    /// workspace, built with the `image` profile and packed afresh on every run.
    install: &'a [&'a str],
    binary: &'a str,
    /// Files written into the image, by path.
    files: &'a [(&'a str, &'a str)],
    /// Files copied from this machine into the image, by path.
    copies: &'a [&'a str],
    /// Directories owned by nobody (the only writable places).
    data: &'a [&'a str],
    /// Symbolic links, by path, to a target.
    links: &'a [(&'a str, &'a str)],
    /// Debian's static busybox at /bin/busybox.
    busybox: bool,
    env: &'a [(&'a str, &'a str)],
    port: Option<u16>,
    entrypoint: &'a [&'a str],
    /// Said while installing: the build can be long.
    note: &'a str,
}

/// Builds the images `cargo xtask test` needs: plx-init's, plx-webhook's and plx-init layered on
/// Polyaxon's init image (every time; cheap when nothing changed), the s3s-fs test server's and
/// the stand-in for Polyaxon's init image (cached: made only when missing).
pub(crate) fn images(root: &Path) -> anyhow::Result<()> {
    build_scratch_image(
        root,
        &ScratchImage {
            tag: S3S_IMAGE,
            install: &[S3S_FS, "--features", "binary"],
            binary: "s3s-fs",
            files: &[],
            copies: &[],
            data: &["data"],
            links: &[],
            busybox: false,
            env: &[],
            port: Some(8014),
            entrypoint: &["/bin/s3s-fs"],
            note: "once; cached under target/",
        },
    )?;
    build_scratch_image(
        root,
        &ScratchImage {
            tag: PLX_INIT_IMAGE,
            install: &[],
            binary: "plx-init",
            files: &[],
            copies: &[CA_BUNDLE],
            data: &["plx-context"],
            // Polyaxon's init containers run a generated script with `/bin/sh -c`: mkdir, cp,
            // ls and `[` from busybox, `polyaxon initializer path` from plx-init, and sh is
            // plx-init too, which runs busybox's shell with -e (see its main.rs).
            links: &[
                ("bin/sh", "plx-init"),
                ("bin/polyaxon", "plx-init"),
                ("bin/mkdir", "busybox"),
                ("bin/cp", "busybox"),
                ("bin/ls", "busybox"),
                ("bin/[", "busybox"),
                ("bin/test", "busybox"),
            ],
            busybox: true,
            env: &[("SSL_CERT_FILE", CA_BUNDLE), ("PATH", "/bin")],
            port: None,
            entrypoint: &["/bin/plx-init"],
            note: "",
        },
    )?;
    build_scratch_image(
        root,
        &ScratchImage {
            tag: PLX_WEBHOOK_IMAGE,
            install: &[],
            binary: "plx-webhook",
            files: &[],
            copies: &[],
            data: &[],
            links: &[],
            busybox: false,
            env: &[],
            port: Some(8443),
            entrypoint: &["/bin/plx-webhook"],
            note: "",
        },
    )?;
    // Polyaxon's init image (a local stand-in) and plx-init layered on it.
    polyaxon_init::images(root)
}

/// Builds `binary` of this workspace with the `image` profile, into `target/image/`.
fn image_binary(binary: &str) -> anyhow::Result<()> {
    // `-p`: only this package's features, so the binary holds no more than it needs.
    status(cargo().args([
        "build",
        "--quiet",
        "--profile",
        "image",
        "-p",
        binary,
        "--bin",
        binary,
    ]))
}

/// Builds Garage from crates.io (long: only when asked) into an image like s3s-fs's.
pub(crate) fn garage_image(root: &Path) -> anyhow::Result<()> {
    build_scratch_image(
        root,
        &ScratchImage {
            tag: GARAGE_IMAGE,
            install: &[
                GARAGE,
                "--no-default-features",
                "--features",
                "bundled-libs,sqlite",
            ],
            binary: "garage",
            files: &[("etc/garage.toml", GARAGE_TOML)],
            copies: &[],
            data: &["data/meta", "data/blocks"],
            links: &[],
            busybox: false,
            env: &[],
            port: Some(3900),
            entrypoint: &["/bin/garage", "-c", "/etc/garage.toml", "server"],
            note: "long; cached under target/",
        },
    )
}

fn build_scratch_image(root: &Path, image: &ScratchImage<'_>) -> anyhow::Result<()> {
    let ours = image.install.is_empty();
    let present = Command::new("docker")
        .args(["image", "inspect", image.tag])
        .output()
        .is_ok_and(|output| output.status.success());
    if present && !ours {
        return Ok(());
    }
    let binary = if ours {
        image_binary(image.binary)?;
        root.join("target/image").join(image.binary)
    } else {
        let tools = root.join("target/plx-tools").join(image.binary);
        let binary = tools.join("bin").join(image.binary);
        if !binary.exists() {
            eprintln!("xtask: building {} ({})", image.install[0], image.note);
            status(
                cargo()
                    .args(["install", "--quiet"])
                    .args(image.install)
                    .arg("--root")
                    .arg(&tools),
            )?;
        }
        binary
    };
    let context = root.join("target/images").join(image.binary);
    let _ = std::fs::remove_dir_all(&context);
    let rootfs = context.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy(&binary, rootfs.join("bin").join(image.binary))?;
    for (path, text) in image.files {
        let target = rootfs.join(path);
        std::fs::create_dir_all(target.parent().unwrap_or(&rootfs))?;
        std::fs::write(target, text)?;
    }
    let libraries = shared_libraries(&binary)?;
    let copies = image.copies.iter().map(PathBuf::from);
    for file in libraries.into_iter().chain(copies) {
        let target = rootfs.join(file.strip_prefix("/").unwrap_or(&file));
        std::fs::create_dir_all(target.parent().unwrap_or(&rootfs))?;
        std::fs::copy(&file, &target).with_context(|| format!("copy {}", file.display()))?;
    }
    if image.busybox {
        std::fs::copy(busybox(root)?, rootfs.join("bin/busybox"))?;
    }
    for (path, target) in image.links {
        std::os::unix::fs::symlink(target, rootfs.join(path))?;
    }
    let owned = context.join("owned");
    std::fs::create_dir_all(&owned)?;
    for dir in image.data {
        std::fs::create_dir_all(owned.join(dir))?;
    }
    let entrypoint = image
        .entrypoint
        .iter()
        .map(|word| format!("\"{word}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut dockerfile =
        "FROM scratch\nCOPY rootfs/ /\nCOPY --chown=65534:65534 owned/ /\nUSER 65534:65534\n"
            .to_owned();
    for (name, value) in image.env {
        dockerfile.push_str(&format!("ENV {name}={value}\n"));
    }
    if let Some(port) = image.port {
        dockerfile.push_str(&format!("EXPOSE {port}\n"));
    }
    dockerfile.push_str(&format!("ENTRYPOINT [{entrypoint}]\n"));
    std::fs::write(context.join("Dockerfile"), dockerfile)?;
    if !ours {
        eprintln!("xtask: building image {}", image.tag);
    }
    status(
        Command::new("docker")
            .args(["build", "--quiet", "-t", image.tag])
            .arg(&context)
            .env("DOCKER_BUILDKIT", "0")
            .stdout(std::process::Stdio::null()),
    )
}

/// Debian's static busybox, fetched once (`apt-get download`) and cached under `target/`.
fn busybox(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("target/plx-tools/busybox");
    let binary = dir.join("root/bin/busybox");
    if binary.exists() {
        return Ok(binary);
    }
    eprintln!("xtask: fetching Debian's busybox-static");
    std::fs::create_dir_all(&dir)?;
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", "busybox-static"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|status| status.success())
    };
    // A fresh machine may not have the package lists yet.
    if !download() {
        status(Command::new("apt-get").args(["update", "-q"]))?;
        if !download() {
            bail!("apt-get download busybox-static failed");
        }
    }
    let deb = std::fs::read_dir(&dir)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .context("no busybox-static package downloaded")?;
    status(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(dir.join("root")),
    )?;
    Ok(binary)
}

/// The shared libraries `binary` loads, as `ldd` resolves them.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// A venv under `target/` with the test peers (moto, the AWS CLI).
fn tools_venv(root: &Path) -> anyhow::Result<PathBuf> {
    venv(&root.join("target/plx-tools"), TOOLS)
}

/// A Python venv at `dir` with `packages`, installed once: a stamp records what is in it.
pub(crate) fn venv(dir: &Path, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let stamp = dir.join(".installed");
    let want = packages.join(" ");
    if std::fs::read_to_string(&stamp).is_ok_and(|text| text.trim() == want)
        && dir.join("bin/python").exists()
    {
        return Ok(dir.to_path_buf());
    }
    eprintln!("xtask: installing {want} into {}", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    status(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
    status(
        Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
    )?;
    std::fs::write(&stamp, want)?;
    Ok(dir.to_path_buf())
}

fn conformance(root: &Path, filter: Option<&str>) -> anyhow::Result<()> {
    let python = polyaxon_venv(root)?;
    let tools = tools_venv(root)?;
    images(root)?;
    // The model cases (validator, JSON Schema, Polyaxon), then the transfer and init cases
    // (real servers, and the real plx-init binary).
    for test in [
        ("plx-connections", "conformance"),
        ("plx-transfer", "conformance"),
        ("plx-init", "conformance"),
    ] {
        let mut command = cargo();
        command
            .args(["test", "-q", "-p", test.0, "--test", test.1, "--"])
            .env("PLX_POLYAXON_PYTHON", &python)
            .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command.args(filter);
        status(&mut command)?;
    }
    remove_test_containers();
    Ok(())
}

fn schemas(root: &Path, check: bool) -> anyhow::Result<()> {
    // The test in plx-connections owns the comparison; this only asks it to rewrite.
    let mut command = cargo();
    command.args(["test", "-q", "-p", "plx-connections", "--test", "schemas"]);
    if !check {
        command.env("PLX_UPDATE_SCHEMAS", "1");
    }
    status(&mut command)?;
    chart::values_schema(root, check)
}

/// The long fault runs (`cargo xtask test` runs 2 per class).
fn soak(root: &Path, runs: u32) -> anyhow::Result<()> {
    images(root)?;
    let result = status(
        cargo()
            .args(["test", "-p", "plx-transfer", "--test", "faults", "--"])
            .args(["--nocapture", "--test-threads", "1"])
            .env("PLX_FAULT_RUNS", runs.to_string()),
    )
    .and_then(|()| {
        (0..5).try_for_each(|_| {
            status(cargo().args(["test", "-q", "-p", "plx-init", "--test", "kill"]))
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
                    "many",
                    "--",
                    "--nocapture",
                ])
                .env("PLX_MANY_OBJECTS", "100000"),
        )
    })
    .and_then(|()| {
        garage_image(root)?;
        status(
            cargo()
                .args(["test", "-q", "-p", "plx-init", "--test", "many"])
                .args([
                    "many_small_objects_from_garage",
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

/// The fuzz targets under `fuzz/`, each for `seconds`, with cargo-fuzz (installed under
/// `target/` when missing) on the stable toolchain: `RUSTC_BOOTSTRAP=1` lets it pass its
/// nightly flags, and without a sanitizer (safe Rust) it needs no nightly runtime.
fn fuzz(root: &Path, seconds: u32) -> anyhow::Result<()> {
    let tools = root.join("target/plx-tools/cargo-fuzz");
    let installed = tools.join("bin/cargo-fuzz");
    let on_path = Command::new("cargo-fuzz")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    let program = if on_path {
        PathBuf::from("cargo-fuzz")
    } else {
        if !installed.exists() {
            status(
                cargo()
                    .args([
                        "install",
                        "--quiet",
                        "--locked",
                        "cargo-fuzz@0.13.2",
                        "--root",
                    ])
                    .arg(&tools),
            )?;
        }
        installed
    };
    let dir = root.join("fuzz");
    for target in ["catalog", "review", "key_path"] {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        status(
            Command::new(&program)
                .args(["fuzz", "run", "-s", "none", target])
                .arg(&corpus)
                .arg(dir.join("regressions").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                // Bounded memory and no hangs are part of the verdict.
                .args(["-rss_limit_mb=1024", "-timeout=10"])
                .current_dir(&dir)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_DIR", root.join("target/fuzz")),
        )
        .with_context(|| {
            format!("{target}: a crash is saved under fuzz/artifacts/{target}; add it to fuzz/regressions/{target}")
        })?;
    }
    Ok(())
}

/// The chart's tests (they are in `cargo xtask test` too), with what they need installed.
fn chart_tests(root: &Path) -> anyhow::Result<()> {
    let tools = tools_venv(root)?;
    chart::values_schema(root, true)?;
    images(root)?;
    let result = status(
        cargo()
            .args(["test", "-p", "plx-webhook", "--test", "chart"])
            .env("PLX_HELM_PYTHON", tools.join("bin/python")),
    );
    remove_test_containers();
    result
}

/// A venv under `target/` with Polyaxon, made once and reused.
fn polyaxon_venv(root: &Path) -> anyhow::Result<PathBuf> {
    Ok(venv(&root.join("target/plx-venv"), &[POLYAXON])?.join("bin/python"))
}

/// The demo itself is an example of plx-init (it links the in-process S3 server, which xtask
/// does not); it runs the real plx-init binary.
fn demo(root: &Path) -> anyhow::Result<()> {
    // The whole workspace, as `cargo xtask test` builds it: one feature set, so nothing is built twice.
    status(cargo().args(["build", "--quiet", "--workspace", "--all-targets"]))?;
    status(
        Command::new(root.join("target/debug/examples/demo"))
            .arg(root.join("target/debug/plx-init"))
            .arg(root.join("target/demo")),
    )
}
