//! A volume whose disk can be stopped, for what a sync that waits on the disk does to a
//! transfer. The volume is an ext4 file system in a file, on a loop device; that file lives on a
//! second ext4, also on a loop device, which `fsfreeze` stops. While stopped, writes still go to
//! the volume's page cache, files are still made and renamed, but nothing reaches its disk: every
//! sync (fsync, fdatasync) waits until the disk is resumed, as one on a slow or congested volume
//! waits. tmpfs, where syncs cost nothing, cannot show this. Needs root (as `cargo xtask test`
//! runs in CI); resumed and unmounted on drop.

use std::{path::Path, process::Command};

/// The volume and the disk under it.
pub struct Disk {
    dir: tempfile::TempDir,
    stopped: bool,
}

/// The stoppable disk (holding the volume's image) and the volume, in the fixture's directory.
const UNDER: &str = "under";
const VOLUME: &str = "volume";

impl Disk {
    /// A volume of `mib` MiB, on a disk that runs.
    pub fn mount(mib: u64) -> anyhow::Result<Disk> {
        let disk = Disk {
            dir: tempfile::tempdir()?,
            stopped: false,
        };
        let under = disk.dir.path().join(UNDER);
        let volume = disk.dir.path().join(VOLUME);
        // The disk under holds the volume's image and the two file systems' metadata.
        ext4(&disk.dir.path().join("under.img"), mib + 32, &under)?;
        ext4(&under.join("volume.img"), mib, &volume)?;
        Ok(disk)
    }

    /// The volume's root.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join(VOLUME)
    }

    /// Stops the disk: from here every sync on the volume waits.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        run(Command::new("fsfreeze")
            .arg("--freeze")
            .arg(self.dir.path().join(UNDER)))?;
        self.stopped = true;
        Ok(())
    }

    /// Runs the disk again: the syncs waiting go through.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            run(Command::new("fsfreeze")
                .arg("--unfreeze")
                .arg(self.dir.path().join(UNDER)))?;
            self.stopped = false;
        }
        Ok(())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // Resumed first: an unmount of a volume whose disk is stopped would wait for ever.
        let _ = self.resume();
        for mount in [VOLUME, UNDER] {
            let _ = Command::new("umount")
                .arg(self.dir.path().join(mount))
                .status();
        }
    }
}

/// An ext4 of `mib` MiB in the file `image`, mounted on `at` through a loop device (freed with
/// the mount).
fn ext4(image: &Path, mib: u64, at: &Path) -> anyhow::Result<()> {
    std::fs::File::create(image)?.set_len(mib * 1024 * 1024)?;
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image))?;
    std::fs::create_dir(at)?;
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(at))
    .map_err(|error| anyhow::anyhow!("{error}: a stoppable disk needs root and loop devices"))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output()?;
    if !output.status.success() {
        anyhow::bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
