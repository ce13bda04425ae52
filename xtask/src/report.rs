//! The sections of `docs/RELIABILITY.md` that commands write (`soak`, `fuzz`): each between its
//! markers, stamped with the command, the commit and the date, so that no figure there is typed
//! by hand or outlives the code it measured unmarked.

use std::{path::Path, process::Command};

/// `md` in place of what lies between `begin` and `end` (both kept) in `docs/RELIABILITY.md`.
pub(crate) fn write(root: &Path, (begin, end): (&str, &str), md: &str) -> anyhow::Result<()> {
    let doc = root.join("docs/RELIABILITY.md");
    let now = std::fs::read_to_string(&doc)?;
    let (Some(at), Some(to)) = (now.find(begin), now.find(end)) else {
        anyhow::bail!("{} has no section {begin} … {end}", doc.display());
    };
    std::fs::write(
        &doc,
        format!("{}{begin}\n\n{}\n{}", &now[..at], md.trim(), &now[to..]),
    )?;
    eprintln!("xtask: wrote {} ({begin})", doc.display());
    Ok(())
}

/// "Written by `command` at `commit` on date": what a generated section opens with.
pub(crate) fn stamp(root: &Path, command: &str) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short=10", "HEAD"]);
    let dirty = if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " with uncommitted changes"
    };
    let date = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("Written by `{command}` at `{commit}`{dirty} on {date}")
}
