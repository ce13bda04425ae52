//! Polyaxon's init image, and the layered `plx-init-polyaxon` image on it.
//!
//! No image can be pulled here, so the tests run on a stand-in for `polyaxon/polyaxon-init`,
//! made the way Polyaxon's image is made: a Debian bookworm root file system (debootstrap,
//! minbase) with Debian's Python 3.11, git, an SSH client, tmux and OpenSSH's server, PyPI
//! `polyaxon[fs,init]==2.18.0` installed by pip into that Python (so `polyaxon` is
//! `/usr/local/bin/polyaxon`), and `POLYAXON_SERVICE=initializer`, without which Polyaxon's CLI
//! has no `initializer` or `docker` commands. It is tagged in the test namespace, never under
//! Polyaxon's name. The layered image is `images/plx-init-polyaxon/Dockerfile` built on it.
//!
//! Both are cached: the stand-in's root file system under `target/` (about 3 minutes to make,
//! once), the images in Docker. The layered image is rebuilt on every run, like plx-init's own
//! (cheap when nothing changed).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::status;

/// The stand-in for Polyaxon's init image.
pub(crate) const STAND_IN: &str = "plx-test/polyaxon-init:2.18.0";
/// The layered image, tagged with the Polyaxon version it is built on: Polyaxon appends its
/// version to `init.image`, so `init.image: <registry>/plx-init-polyaxon` names it.
pub(crate) const LAYERED: &str = "plx-init-polyaxon:2.18.0";
/// What Polyaxon's init image installs: the stores' file systems (`fs`: s3fs, gcsfs, adlfs)
/// and the initializers' own needs (`init`: GitPython, docker).
const PIP: &str = "polyaxon[fs,init]==2.18.0";
/// Debian's packages in it: the tools plugin copies tmux and OpenSSH's files out of the image,
/// and `initializer git` runs git (over ssh for ssh connections).
const DEBIAN: &str = "python3,python3-pip,git,openssh-client,openssh-server,openssh-sftp-server,tmux,ca-certificates";
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds the stand-in (when missing) and the layered image on it, with the plx-init in
/// `binaries`.
pub(crate) fn images(root: &Path, binaries: &Path) -> anyhow::Result<()> {
    stand_in(root)?;
    layered(root, STAND_IN, binaries)
}

fn present(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .is_ok_and(|output| output.status.success())
}

pub(crate) fn stand_in(root: &Path) -> anyhow::Result<()> {
    if present(STAND_IN) {
        return Ok(());
    }
    let dir = root.join("target/plx-tools/polyaxon-init");
    let rootfs = dir.join("rootfs");
    let stamp = dir.join(".complete");
    if std::fs::read_to_string(&stamp).is_ok_and(|text| text.trim() == PIP) && rootfs.exists() {
        return import(&rootfs);
    }
    eprintln!("xtask: making a stand-in for Polyaxon's init image ({PIP}; once, about 3 minutes)");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    status(
        Command::new(debootstrap()?)
            .args(["--variant=minbase", &format!("--include={DEBIAN}"), SUITE])
            .arg(&rootfs)
            .arg(std::env::var("PLX_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.to_owned()))
            .stdout(Stdio::null()),
    )
    .context("debootstrap failed (it needs root and Debian's package mirror)")?;
    pip(&rootfs)?;
    // What the build left that an image does not carry.
    for leftover in ["var/lib/apt/lists", "var/cache/apt/archives", "root/.cache"] {
        let _ = std::fs::remove_dir_all(rootfs.join(leftover));
    }
    std::fs::write(rootfs.join("etc/resolv.conf"), "")?;
    std::fs::write(&stamp, PIP)?;
    import(&rootfs)
}

/// pip inside the root file system (its own Python), with this machine's network and CA
/// bundle for the duration of the install only.
fn pip(rootfs: &Path) -> anyhow::Result<()> {
    std::fs::copy("/etc/resolv.conf", rootfs.join("etc/resolv.conf"))
        .context("copy /etc/resolv.conf")?;
    let bundle = std::env::var("PIP_CERT")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".to_owned());
    let trusted = rootfs.join("tmp/plx-host-ca.crt");
    std::fs::copy(&bundle, &trusted).with_context(|| format!("copy {bundle}"))?;
    let installed = status(
        Command::new("chroot")
            .arg(rootfs)
            .args(["/usr/bin/python3", "-m", "pip", "install", "--quiet"])
            .args(["--break-system-packages", "--no-cache-dir"])
            .args(["--root-user-action=ignore", "--disable-pip-version-check"])
            .arg(PIP)
            // Nothing of this machine's Python setup leaks in but the CA bundle.
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("PIP_CERT", "/tmp/plx-host-ca.crt")
            .env("PIP_DEFAULT_TIMEOUT", "180"),
    );
    let _ = std::fs::remove_file(&trusted);
    installed
}

fn import(rootfs: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: importing {STAND_IN}");
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let stdout = tar.stdout.take().context("tar's output")?;
    status(
        Command::new("docker")
            .args(["import"])
            .args(["-c", &format!("ENV PATH={PATH}")])
            .args(["-c", "ENV POLYAXON_SERVICE=initializer"])
            .args(["-c", "WORKDIR /"])
            .args(["-c", "CMD [\"/bin/bash\"]"])
            .args(["-", STAND_IN])
            .stdin(stdout)
            .stdout(Stdio::null()),
    )?;
    if !tar.wait()?.success() {
        bail!("tar of {} failed", rootfs.display());
    }
    Ok(())
}

/// `images/plx-init-polyaxon/Dockerfile` on `base` (the stand-in, or Polyaxon's own image with
/// `cargo xtask images --polyaxon-init IMAGE`), with the plx-init in `binaries`.
pub(crate) fn layered(root: &Path, base: &str, binaries: &Path) -> anyhow::Result<()> {
    let binary = binaries.join("plx-init");
    let context = root.join("target/images/plx-init-polyaxon");
    let _ = std::fs::remove_dir_all(&context);
    let bin = context.join("overlay/usr/local/libexec/plx-init/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(context.join("overlay/usr/bin"))?;
    std::fs::copy(&binary, context.join("plx-init"))
        .with_context(|| format!("copy {}", binary.display()))?;
    std::fs::copy(
        root.join("images/plx-init-polyaxon/Dockerfile"),
        context.join("Dockerfile"),
    )?;
    std::os::unix::fs::symlink("../plx-init", bin.join("polyaxon"))?;
    std::os::unix::fs::symlink(
        "/usr/local/libexec/plx-init/plx-init",
        context.join("overlay/usr/bin/sh"),
    )?;
    status(
        Command::new("docker")
            .args(["build", "--quiet", "-t", LAYERED])
            .args(["--build-arg", &format!("POLYAXON_INIT={base}")])
            .arg(&context)
            .env("DOCKER_BUILDKIT", "0")
            .stdout(Stdio::null()),
    )
}

/// Debian's debootstrap, installed when missing.
fn debootstrap() -> anyhow::Result<PathBuf> {
    let installed = PathBuf::from("/usr/sbin/debootstrap");
    if installed.exists() {
        return Ok(installed);
    }
    eprintln!("xtask: installing Debian's debootstrap");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "debootstrap"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    // A fresh machine may not have the package lists yet.
    if !install() {
        status(Command::new("apt-get").args(["update", "-q"]))?;
        if !install() {
            bail!("apt-get install debootstrap failed");
        }
    }
    Ok(installed)
}
