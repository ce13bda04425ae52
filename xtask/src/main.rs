//! Project automation, run as `cargo xtask <task>` (see <https://github.com/matklad/cargo-xtask>).
//!
//! Every task sets up what it needs on a fresh machine (a Python venv with Polyaxon under
//! `target/`, and later Docker images) and caches it there.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  demo                 the main job end to end, on nothing but this checkout
  test                 every test: unit, property, integration, conformance (with Polyaxon 2.18)
  conformance [FILTER] the conformance cases: the model (cross-checked against Polyaxon 2.18) and
                       transfers (against a real S3 server)
  schemas [--check]    regenerate schemas/ from the Rust types (or fail when stale)
  images [--garage]    build the test S3 server image (s3s-fs) locally, and Garage's when asked
                       (its build is long); nothing is pulled
";

/// The reference implementation the conformance suite is compared with.
const POLYAXON: &str = "polyaxon==2.18.0";
/// The peers tests talk to: moto (S3 and STS) and the AWS CLI.
const TOOLS: &[&str] = &["moto[server]==5.2.5", "awscli==1.46.3"];
/// The S3 server built into a test image.
const S3S_FS: &str = "s3s-fs@0.14.1";
const S3S_IMAGE: &str = "plx-test/s3s-fs:0.14.1";
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
        Some("schemas") => schemas(args.get(1).map(String::as_str) == Some("--check")),
        Some("demo") => demo(&root),
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

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn status(command: &mut Command) -> anyhow::Result<()> {
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
    images(root)?;
    remove_test_containers();
    let result = status(
        cargo()
            .args(["test", "--workspace", "--all-targets"])
            .env("PLX_POLYAXON_PYTHON", &python)
            .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
            .env("PLX_AWS_CLI", tools.join("bin/aws"))
            // Tests never ask a metadata service for credentials.
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    )
    .and_then(|()| status(cargo().args(["test", "--workspace", "--doc"])));
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
    /// `name@version`, with the `cargo install` flags it needs.
    install: &'a [&'a str],
    binary: &'a str,
    files: &'a [(&'a str, &'a str)],
    data: &'a [&'a str],
    port: u16,
    entrypoint: &'a [&'a str],
    /// Said while installing: the build can be long.
    note: &'a str,
}

/// Builds the s3s-fs image `cargo xtask test` needs. Cached: rebuilt only when missing.
fn images(root: &Path) -> anyhow::Result<()> {
    build_scratch_image(
        root,
        &ScratchImage {
            tag: S3S_IMAGE,
            install: &[S3S_FS, "--features", "binary"],
            binary: "s3s-fs",
            files: &[],
            data: &["data"],
            port: 8014,
            entrypoint: &["/bin/s3s-fs"],
            note: "once; cached under target/",
        },
    )
}

/// Builds Garage from crates.io (long: only when asked) into an image like s3s-fs's.
fn garage_image(root: &Path) -> anyhow::Result<()> {
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
            data: &["data/meta", "data/blocks"],
            port: 3900,
            entrypoint: &["/bin/garage", "-c", "/etc/garage.toml", "server"],
            note: "long; cached under target/",
        },
    )
}

fn build_scratch_image(root: &Path, image: &ScratchImage<'_>) -> anyhow::Result<()> {
    let present = Command::new("docker")
        .args(["image", "inspect", image.tag])
        .output()
        .is_ok_and(|output| output.status.success());
    if present {
        return Ok(());
    }
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
    for library in shared_libraries(&binary)? {
        let target = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        std::fs::create_dir_all(target.parent().unwrap_or(&rootfs))?;
        std::fs::copy(&library, &target).with_context(|| format!("copy {}", library.display()))?;
    }
    for dir in image.data {
        std::fs::create_dir_all(context.join(dir))?;
    }
    let entrypoint = image
        .entrypoint
        .iter()
        .map(|word| format!("\"{word}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY rootfs/ /\nCOPY --chown=65534:65534 data/ /data/\nUSER 65534:65534\nEXPOSE {}\nENTRYPOINT [{entrypoint}]\n",
            image.port
        ),
    )?;
    eprintln!("xtask: building image {}", image.tag);
    status(
        Command::new("docker")
            .args(["build", "--quiet", "-t", image.tag])
            .arg(&context)
            .env("DOCKER_BUILDKIT", "0"),
    )
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
    let venv = root.join("target/plx-tools");
    let stamp = venv.join(".installed");
    let want = TOOLS.join(" ");
    if std::fs::read_to_string(&stamp).is_ok_and(|text| text.trim() == want)
        && venv.join("bin/moto_server").exists()
    {
        return Ok(venv);
    }
    eprintln!("xtask: installing {want} into {}", venv.display());
    status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    status(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(TOOLS),
    )?;
    std::fs::write(&stamp, want)?;
    Ok(venv)
}

fn conformance(root: &Path, filter: Option<&str>) -> anyhow::Result<()> {
    let python = polyaxon_venv(root)?;
    let tools = tools_venv(root)?;
    images(root)?;
    // The model cases (validator, JSON Schema, Polyaxon), then the transfer cases (real servers).
    for test in [
        ("plx-connections", "conformance"),
        ("plx-transfer", "conformance"),
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

fn schemas(check: bool) -> anyhow::Result<()> {
    // The test in plx-connections owns the comparison; this only asks it to rewrite.
    let mut command = cargo();
    command.args(["test", "-q", "-p", "plx-connections", "--test", "schemas"]);
    if !check {
        command.env("PLX_UPDATE_SCHEMAS", "1");
    }
    status(&mut command)
}

/// A venv under `target/` with Polyaxon, made once and reused.
fn polyaxon_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join("target/plx-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".installed");
    if std::fs::read_to_string(&stamp).is_ok_and(|text| text.trim() == POLYAXON) && python.exists()
    {
        return Ok(python);
    }
    eprintln!("xtask: installing {POLYAXON} into {}", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    status(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        POLYAXON,
    ]))?;
    std::fs::write(&stamp, POLYAXON)?;
    Ok(python)
}

fn demo(root: &Path) -> anyhow::Result<()> {
    status(cargo().args(["build", "-q", "-p", "plx-init"]))?;
    let plx_init = root.join("target/debug/plx-init");
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir)?;

    step("The seed page's second example: two connections, one name");
    let seed = dir.join("connections-seed.yaml");
    std::fs::write(&seed, SEED_CATALOG)?;
    show(&seed)?;
    let code = run_shown(Command::new(&plx_init).arg("validate").arg(&seed))?;
    if code != 1 {
        bail!("plx-init validate should refuse the duplicate name with exit 1, got {code}");
    }

    step("Fixed: unique names, and an artifacts store");
    let fixed = dir.join("connections.yaml");
    std::fs::write(&fixed, FIXED_CATALOG)?;
    show(&fixed)?;
    let code = run_shown(Command::new(&plx_init).arg("validate").arg(&fixed))?;
    if code != 0 {
        bail!("plx-init validate should accept the fixed catalog, got exit {code}");
    }

    step("A job that names the connections, checked against the catalog");
    let job = dir.join("job.yaml");
    std::fs::write(&job, JOB)?;
    show(&job)?;
    let code = run_shown(
        Command::new(&plx_init)
            .args(["validate", "--catalog"])
            .arg(&fixed)
            .arg(&job),
    )?;
    if code != 0 {
        bail!("plx-init validate should accept the job, got exit {code}");
    }

    step("The same job with three mistakes: all reported at once, as JSON for tools");
    let broken = dir.join("job-broken.yaml");
    std::fs::write(&broken, JOB_BROKEN)?;
    show(&broken)?;
    let code = run_shown(
        Command::new(&plx_init)
            .args(["validate", "--format", "json", "--catalog"])
            .arg(&fixed)
            .arg(&broken),
    )?;
    if code != 1 {
        bail!("plx-init validate should refuse the broken job with exit 1, got {code}");
    }
    step(
        "Done. Next in the demo (issue 5): pulling the data with `plx-init artifacts` from an embedded S3 server",
    );
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn show(path: &Path) -> anyhow::Result<()> {
    println!(
        "--- {}",
        path.file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("")
    );
    print!("{}", std::fs::read_to_string(path)?);
    Ok(())
}

fn run_shown(command: &mut Command) -> anyhow::Result<i32> {
    println!(
        "$ plx-init {}",
        command
            .get_args()
            .map(|arg| arg
                .to_string_lossy()
                .replace(&*project_root().to_string_lossy(), "."))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    let code = status.code().unwrap_or(-1);
    println!("(exit {code})");
    Ok(code)
}

const SEED_CATALOG: &str = "\
connections:
- name: s3-dataset1
  kind: s3
  schema:
    bucket: \"s3://bucket/path1\"
  secret:
    name: \"s3-secret\"
- name: s3-dataset1
  kind: s3
  schema:
    bucket: \"s3://bucket/path2\"
  secret:
    name: \"s3-secret\"
";

const FIXED_CATALOG: &str = "\
artifactsStore:
  name: plx-artifacts
  kind: s3
  schema: {bucket: \"s3://plx-artifacts\"}
  secret: {name: s3-secret}
connections:
- name: s3-dataset1
  kind: s3
  schema: {bucket: \"s3://bucket/path1\"}
  secret: {name: s3-secret}
- name: s3-dataset2
  kind: s3
  schema: {bucket: \"s3://bucket/path2\"}
  secret: {name: minio-secret, mountPath: /plx-context/secrets/minio, defaultMode: \"0400\"}
  env: {AWS_ENDPOINT_URL: \"http://minio.storage:9000\", AWS_REGION: us-east-1}
";

const JOB: &str = "\
version: 1.1
kind: component
run:
  kind: job
  connections: [s3-dataset1]
  init:
  - artifacts: {dirs: [train], files: [labels.csv, [\"v2/meta.json\", meta.json]]}
    connection: s3-dataset2
  container: {image: python:3.11, command: [python, train.py]}
";

const JOB_BROKEN: &str = "\
version: 1.1
kind: component
run:
  kind: job
  connections: [s3-dataset3]
  init:
  - artifacts: {dirs: [train], files: [../../etc/passwd]}
    connection: s3-dataset2
    git: {url: \"https://github.com/org/repo\"}
";
