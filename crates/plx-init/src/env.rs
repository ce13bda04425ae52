//! `plx-init env NAME`: an AWS shared config and credentials profile for a connection, so boto3,
//! the AWS CLI and other SDKs in the job use it with no code.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use plx_credentials::{Addressing, Environment, S3Settings};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The connection's name.
    name: String,
    /// A catalog file (any form); by default the pod's POLYAXON_CONNECTIONS_CATALOG.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// The directory for `config` and `credentials` (default: <context root>/aws).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The profile name (default: the connection's name).
    #[arg(long)]
    profile: Option<String>,
    /// Print `export` lines pointing the AWS SDKs at the files, for `eval "$(plx-init env NAME --export)"`.
    #[arg(long)]
    export: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let catalog = plx_pull::catalog::load(args.catalog.as_deref(), &env)?;
    let settings = S3Settings::resolve(catalog.find(&args.name)?, &env)?;
    let profile = args.profile.clone().unwrap_or_else(|| args.name.clone());
    let dir = args.dir.clone().unwrap_or_else(|| {
        PathBuf::from(
            env.get("POLYAXON_CONTEXT_ROOT")
                .unwrap_or(plx_connections::DEFAULT_CONTEXT_ROOT),
        )
        .join("aws")
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (config, credentials) = (dir.join("config"), dir.join("credentials"));
    write_section(
        &config,
        &format!("profile {profile}"),
        &config_section(&settings),
    )?;
    write_section(&credentials, &profile, &credentials_section(&settings))?;
    if args.export {
        println!("export AWS_CONFIG_FILE='{}'", config.display());
        println!(
            "export AWS_SHARED_CREDENTIALS_FILE='{}'",
            credentials.display()
        );
        println!("export AWS_PROFILE='{profile}'");
    } else {
        eprintln!(
            "wrote profile `{profile}` to {} and {}",
            config.display(),
            credentials.display()
        );
        if !settings.verify_ssl.value {
            eprintln!(
                "warning: AWS_VERIFY_SSL is false; shared config cannot say so, pass --no-verify-ssl to the AWS CLI"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn config_section(settings: &S3Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "region = {}", settings.region.value);
    if let Some(endpoint) = &settings.endpoint_url {
        let _ = writeln!(out, "endpoint_url = {}", endpoint.value);
    }
    if let Some(ca) = &settings.ca_bundle {
        let _ = writeln!(out, "ca_bundle = {}", ca.value.display());
    }
    if !settings.is_aws() {
        out.push_str("request_checksum_calculation = when_required\nresponse_checksum_validation = when_required\n");
    }
    let style = match settings.addressing.value {
        Addressing::Path => "path",
        Addressing::Virtual => "virtual",
    };
    let _ = writeln!(out, "s3 =\n    addressing_style = {style}");
    if let Some(assume) = &settings.assume_role {
        let _ = writeln!(
            out,
            "role_arn = {}\nrole_session_name = {}\nduration_seconds = {}",
            assume.role_arn.value,
            assume.session_name.value,
            assume.duration.value.as_secs()
        );
        if settings.access_key_id.is_some() {
            out.push_str("source_profile = __SELF__\n");
        } else {
            out.push_str("credential_source = Environment\n");
        }
    }
    if let Some(web) = &settings.web_identity {
        let _ = writeln!(
            out,
            "role_arn = {}\nweb_identity_token_file = {}\nrole_session_name = {}",
            web.role_arn.value,
            web.token_file.value.display(),
            web.session_name.value
        );
    }
    out
}

fn credentials_section(settings: &S3Settings) -> String {
    let mut out = String::new();
    if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
        let _ = writeln!(
            out,
            "aws_access_key_id = {}\naws_secret_access_key = {}",
            id.value,
            secret.value.expose()
        );
        if let Some(token) = &settings.session_token {
            let _ = writeln!(out, "aws_session_token = {}", token.value.expose());
        }
    }
    out
}

/// Replaces (or adds) one `[section]` of an INI file, keeping the others. The file is written
/// to a temporary name with mode 0600 and renamed, so a reader never sees half of it.
fn write_section(path: &Path, section: &str, body: &str) -> anyhow::Result<()> {
    let body = body.replace("__SELF__", section.trim_start_matches("profile "));
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let header = format!("[{section}]");
    let mut out = String::new();
    let mut skipping = false;
    for line in existing.lines() {
        if line.trim_start().starts_with('[') {
            skipping = line.trim() == header;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    let _ = write!(out, "{header}\n{body}");
    let temporary = path.with_extension("plx-tmp");
    {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(out.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
