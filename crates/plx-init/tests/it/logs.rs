//! What a platform engineer reads in pod logs, from the binary as a pod runs it: plain text when
//! stderr is no terminal (`kubectl logs` shows escapes as garbage), colour only on a terminal and
//! never with `NO_COLOR`, and the SDK's internals (a missing credential source's Debug dump) only
//! under `PLX_LOG=debug`, after plx-init's own sentence.

use std::process::Command;

/// A catalog with a mount (no store needed) and an s3 connection whose endpoint nothing serves.
fn catalog(mount: &std::path::Path) -> String {
    format!(
        r#"{{"connections":[
            {{"name":"data","kind":"host_path","schema":{{"hostPath":"/srv/data","mountPath":"{}"}}}},
            {{"name":"s3-dataset1","kind":"s3","schema":{{"bucket":"s3://datasets/v1"}},"env":{{"AWS_ENDPOINT_URL":"http://127.0.0.1:9"}}}}]}}"#,
        mount.display()
    )
}

/// A mount pull that logs a warning (`--manifest` records S3 objects only), with `vars`; run in
/// a pseudo-terminal with `terminal`, as `script(1)` gives one. Its stderr (with stdout, on a
/// terminal).
fn warn(vars: &[(&str, &str)], terminal: bool) -> String {
    let work = tempfile::tempdir().expect("a directory");
    let mount = work.path().join("mount");
    std::fs::create_dir_all(mount.join("train")).expect("the mount");
    std::fs::write(mount.join("train/a.csv"), "a").expect("a file");
    let args = [
        "artifacts".to_owned(),
        "--connection".to_owned(),
        "data".to_owned(),
        "--dirs".to_owned(),
        "train".to_owned(),
        "--manifest".to_owned(),
        work.path().join("manifest.json").display().to_string(),
    ];
    let binary = env!("CARGO_BIN_EXE_plx-init");
    let mut command = if terminal {
        let line = std::iter::once(binary.to_owned())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new("script");
        command.args(["-qec", &line, "/dev/null"]);
        command
    } else {
        let mut command = Command::new(binary);
        command.args(&args);
        command
    };
    let output = command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog(&mount))
        .env("POLYAXON_CONTEXT_ROOT", work.path().join("context"))
        .envs(vars.iter().copied())
        .output()
        .expect("plx-init runs");
    assert!(output.status.success(), "{output:?}");
    let shown = if terminal {
        &output.stdout
    } else {
        &output.stderr
    };
    String::from_utf8_lossy(shown).into_owned()
}

#[test]
fn log_lines_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let in_a_pod = warn(&[], false);
    assert!(
        in_a_pod.contains("WARN") && in_a_pod.contains("a mount's files are not in it"),
        "{in_a_pod}"
    );
    assert!(!in_a_pod.contains('\x1b'), "{in_a_pod:?}");
    // tracing-subscriber's colour for a warning's level.
    let on_a_terminal = warn(&[], true);
    assert!(on_a_terminal.contains("\x1b[33m WARN"), "{on_a_terminal:?}");
    let no_color = warn(&[("NO_COLOR", "1")], true);
    assert!(
        no_color.contains("WARN") && !no_color.contains("\x1b[33m"),
        "{no_color:?}"
    );
}

#[test]
fn a_pull_without_credentials_shows_one_sentence_and_the_sdk_only_under_debug() {
    let context = tempfile::tempdir().expect("a directory");
    let run = |vars: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_plx-init"))
            .args([
                "artifacts",
                "--connection",
                "s3-dataset1",
                "--dirs",
                "train",
            ])
            .env_clear()
            .env("POLYAXON_CONNECTIONS_CATALOG", catalog(context.path()))
            .env("POLYAXON_CONTEXT_ROOT", context.path())
            // The default chain's instance metadata, at a loopback port nothing serves: it fails
            // as it does in a pod with no instance role, and nothing leaves the machine.
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
            .envs(vars.iter().copied())
            .output()
            .expect("plx-init runs");
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let plain = run(&[]);
    assert!(
        plain.contains("no credentials: put AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the connection's Secret"),
        "{plain}"
    );
    assert!(
        !plain.contains("aws_config") && !plain.contains("ProviderError"),
        "{plain}"
    );
    let debug = run(&[("PLX_LOG", "debug")]);
    assert!(debug.contains("aws_config"), "{debug}");
}
