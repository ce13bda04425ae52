//! The Polyaxon commands plx-init runs itself, of those Polyaxon's converter writes into init
//! containers: what the images run as `polyaxon` (plx-init's own dispatch) and what the webhook
//! tells the scratch image can run, decided here once.

use std::str::FromStr;

use crate::Kind;

/// Whether plx-init runs `polyaxon <words>` itself: `initializer fswatch`, and `initializer
/// path` for a kind it pulls (`--connection-kind s3` or `--connection-kind=s3`; without the flag
/// too, as plx-init then reads the kind from the catalog and says what it cannot pull). Every
/// other command is Polyaxon's, even where the names meet (`polyaxon check` checks a
/// polyaxonfile there).
pub fn runs_itself<S: AsRef<str>>(words: &[S]) -> bool {
    let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
    match words.as_slice() {
        ["initializer", "fswatch", ..] => true,
        ["initializer", "path", flags @ ..] => connection_kind(flags)
            .is_none_or(|kind| Kind::from_str(kind).is_ok_and(Kind::is_pullable)),
        _ => false,
    }
}

/// The value of `--connection-kind`, in either of its spellings.
fn connection_kind<'a>(flags: &[&'a str]) -> Option<&'a str> {
    flags.iter().enumerate().find_map(|(at, flag)| {
        flag.strip_prefix("--connection-kind=").or_else(|| {
            (*flag == "--connection-kind")
                .then(|| flags.get(at + 1).copied())
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plx_init_runs_the_paths_of_the_kinds_it_pulls_and_fswatch() {
        let runs = |line: &str| runs_itself(&line.split_whitespace().collect::<Vec<_>>());
        for line in [
            "initializer fswatch --path /plx-context/artifacts",
            "initializer path --connection-name d --connection-kind=s3 --path-from s3://b/p",
            "initializer path --connection-name d --connection-kind s3 --path-from s3://b/p",
            "initializer path --connection-kind=host_path",
            "initializer path --connection-kind volume_claim",
            "initializer path --connection-name d",
        ] {
            assert!(runs(line), "{line}");
        }
        for line in [
            "initializer path --connection-kind=gcs",
            "initializer path --connection-kind wasb",
            "initializer path --connection-kind=nonsense",
            "initializer auth",
            "initializer git --repo-path=/plx-context/artifacts",
            "check -f polyaxonfile.yaml",
            "",
        ] {
            assert!(!runs(line), "{line}");
        }
    }
}
