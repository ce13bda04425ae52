//! The Docker images the tests and users run, built locally (nothing can be pulled): the
//! product's on `scratch` from this workspace, the test S3 servers' from crates.io, and the
//! layered init image on Polyaxon's (`polyaxon_init`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::{cargo, polyaxon_init, status};

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

/// An image of one binary from crates.io on `scratch`: the binary, the shared libraries it
/// links, a few files, and data directories owned by nobody, who runs it.
struct ScratchImage<'a> {
    tag: &'a str,
    /// `name@version`, with the `cargo install` flags it needs; empty for a binary of this
    /// workspace (see `Binaries`), packed afresh on every run.
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

/// Which build of this workspace's binaries goes into its images.
#[derive(Clone, Copy)]
pub(crate) enum Binaries {
    /// The `image` profile, optimised and stripped, built first: what is shipped.
    Shipped,
    /// The tests' own build in `target/debug`, made by the run that packs it. The tests check
    /// behaviour, not speed, and this spares a cold `cargo xtask test` a release build of the
    /// SDK and everything else the two binaries link (about 11 minutes on 2 cores).
    Tests,
}

impl Binaries {
    fn dir(self, root: &Path) -> PathBuf {
        match self {
            Binaries::Shipped => root.join("target/image"),
            Binaries::Tests => root.join("target/debug"),
        }
    }
}

/// Builds the images the tests need: plx-init's, plx-webhook's and plx-init layered on Polyaxon's
/// init image from `binaries` (every time; cheap when nothing changed), the s3s-fs test server's
/// and the stand-in for Polyaxon's init image (cached: made only when missing).
pub(crate) fn images(root: &Path, binaries: Binaries) -> anyhow::Result<()> {
    if let Binaries::Shipped = binaries {
        image_binaries()?;
    }
    server_image(root)?;
    let dir = binaries.dir(root);
    build_scratch_image(
        root,
        &dir,
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
        &dir,
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
    polyaxon_init::images(root, &dir)
}

/// The s3s-fs test server's image (built once, cached), which the tests and the benchmark run.
pub(crate) fn server_image(root: &Path) -> anyhow::Result<()> {
    build_scratch_image(
        root,
        Path::new(""),
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
    )
}

/// Builds the binaries this workspace ships, plx-init and plx-webhook, with the `image` profile
/// into `target/image/`. One cargo call for both: their shared dependencies (tokio, hyper,
/// rustls, ...) are then built once with one feature set, where two calls would build each of
/// them twice in release (minutes of a cold CI run); features unused by a binary add code the
/// linker drops.
pub(crate) fn image_binaries() -> anyhow::Result<()> {
    status(cargo().args([
        "build",
        "--quiet",
        "--profile",
        "image",
        "-p",
        "plx-init",
        "--bin",
        "plx-init",
        "-p",
        "plx-webhook",
        "--bin",
        "plx-webhook",
    ]))
}

/// Builds Garage from crates.io (long: only when asked) into an image like s3s-fs's.
pub(crate) fn garage_image(root: &Path) -> anyhow::Result<()> {
    build_scratch_image(
        root,
        Path::new(""),
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

/// Packs `image`; a binary of this workspace is taken from `binaries`, one from crates.io is
/// installed under `target/plx-tools`.
fn build_scratch_image(
    root: &Path,
    binaries: &Path,
    image: &ScratchImage<'_>,
) -> anyhow::Result<()> {
    let ours = image.install.is_empty();
    let present = Command::new("docker")
        .args(["image", "inspect", image.tag])
        .output()
        .is_ok_and(|output| output.status.success());
    if present && !ours {
        return Ok(());
    }
    let binary = if ours {
        binaries.join(image.binary)
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
