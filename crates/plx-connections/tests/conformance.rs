//! The conformance runner: every case under `conformance/model/` through the validator, through
//! the generated JSON Schemas, and (when `PLX_POLYAXON_PYTHON` names a Python with polyaxon 2.18,
//! as `cargo xtask conformance` arranges) through Polyaxon itself.
//!
//! Usage: `cargo test -p plx-connections --test conformance [-- FILTER]`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::ExitCode,
};

use plx_connections::{Catalog, Form, Report};
use serde_json::{Value, json};

struct Case {
    id: String,
    area: String,
    description: String,
    text: String,
    catalog: Option<Value>,
    valid: bool,
    expected: BTreeSet<(String, String, String)>,
    message_contains: Vec<String>,
    cross_field: Option<String>,
}

#[derive(Default)]
struct Row {
    cases: usize,
    failed: usize,
    schema_checked: usize,
    polyaxon_differs: usize,
}

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance");
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let mut failures: Vec<String> = Vec::new();
    let cases = match load(&root.join("model")) {
        Ok(cases) => cases,
        Err(error) => {
            eprintln!("cannot load the cases: {error}");
            return ExitCode::FAILURE;
        }
    };
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|case| filter.as_ref().is_none_or(|f| case.id.contains(f.as_str())))
        .collect();
    // A runner that finds nothing must not pass.
    if cases.is_empty() {
        eprintln!("no conformance case found under {}", root.display());
        return ExitCode::FAILURE;
    }
    let schemas = Schemas::new();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut oracle_input = Vec::new();
    let mut failed_ids = BTreeSet::new();

    for case in &cases {
        let row = rows.entry(case.area.clone()).or_default();
        row.cases += 1;
        let catalogs = match case.catalog.as_ref().map(catalog_of) {
            Some(Ok(catalog)) => vec![catalog],
            Some(Err(error)) => {
                failures.push(format!("{}: its catalog is not valid: {error}", case.id));
                failed_ids.insert(case.id.clone());
                continue;
            }
            None => Vec::new(),
        };
        let report = plx_connections::validate(&case.text, &catalogs);
        let mut problems = check(case, &report);
        // Parse → serialise → parse gives the same catalog back.
        if let Some(catalog) = report.catalog() {
            let text = serde_json::to_string(catalog).unwrap_or_default();
            let again = plx_connections::validate(&text, &[]);
            if again.catalog() != Some(catalog) {
                problems.push(format!(
                    "the catalog does not survive serialise → parse: {text}"
                ));
            }
        }
        if case.cross_field.is_none() {
            row.schema_checked += 1;
            match schemas.verdict(&case.text, &report) {
                Ok(schema_valid) if schema_valid != case.valid => problems.push(format!(
                    "the JSON Schema says {}, the case says {} (mark it `cross_field: <why>` if JSON Schema cannot express the rule)",
                    verdict_word(schema_valid),
                    verdict_word(case.valid)
                )),
                Ok(_) => {}
                Err(error) => problems.push(format!("the JSON Schema check failed: {error}")),
            }
        }
        if !problems.is_empty() {
            row.failed += 1;
            failed_ids.insert(case.id.clone());
            failures.push(format!(
                "{} ({}):\n    {}",
                case.id,
                case.description,
                problems.join("\n    ")
            ));
        }
        if let (Some(form), Ok(document)) = (report.form, plx_connections::read_value(&case.text)) {
            oracle_input.push(json!({
                "id": case.id,
                "form": form,
                "document": document,
                "catalog": case.catalog.as_ref().map(|catalog| json!({"form": form_of(catalog), "document": catalog})),
            }));
        }
    }

    let mut polyaxon_note =
        "Polyaxon cross-check not run (set PLX_POLYAXON_PYTHON, or run `cargo xtask conformance`)"
            .to_owned();
    if let Some(python) = std::env::var_os("PLX_POLYAXON_PYTHON") {
        match polyaxon(&root, Path::new(&python), &oracle_input) {
            Ok(verdicts) => {
                let listed = match divergences(&root.join("DIVERGENCES.md")) {
                    Ok(listed) => listed,
                    Err(error) => {
                        failures.push(format!("DIVERGENCES.md: {error}"));
                        BTreeMap::new()
                    }
                };
                let mut differing = 0;
                for case in &cases {
                    let Some((accepted, error)) = verdicts.get(&case.id) else {
                        continue;
                    };
                    let differs = *accepted != case.valid;
                    if differs {
                        differing += 1;
                        if let Some(row) = rows.get_mut(&case.area) {
                            row.polyaxon_differs += 1;
                        }
                    }
                    match (differs, listed.get(&case.id)) {
                        (true, None) => failures.push(format!(
                            "{}: Polyaxon {} it ({error}) but the case is {}; add it to conformance/DIVERGENCES.md with the reason",
                            case.id,
                            if *accepted { "accepts" } else { "refuses" },
                            verdict_word(case.valid)
                        )),
                        (false, Some(_)) => failures.push(format!("{}: listed in DIVERGENCES.md but Polyaxon agrees; remove it", case.id)),
                        _ => continue,
                    }
                    failed_ids.insert(case.id.clone());
                }
                let fed = verdicts.len();
                polyaxon_note = format!(
                    "Polyaxon 2.18 saw {fed} of {} cases (the rest are refused before parsing: Polyaxon would expand them without limit); its verdict differs on {differing}, each listed in DIVERGENCES.md",
                    cases.len()
                );
            }
            Err(error) => failures.push(format!("the Polyaxon cross-check failed: {error}")),
        }
    }

    println!(
        "{:<14} {:>6} {:>7} {:>7} {:>7} {:>9}",
        "area", "cases", "passed", "failed", "schema", "polyaxon≠"
    );
    for (area, row) in &rows {
        println!(
            "{area:<14} {:>6} {:>7} {:>7} {:>7} {:>9}",
            row.cases,
            row.cases - row.failed,
            row.failed,
            row.schema_checked,
            row.polyaxon_differs
        );
    }
    println!("{polyaxon_note}");
    for failure in &failures {
        println!("FAIL {failure}");
    }
    let failed = failed_ids.len();
    println!(
        "conformance: {} passed, {failed} failed",
        cases.len() - failed
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn verdict_word(valid: bool) -> &'static str {
    if valid { "valid" } else { "invalid" }
}

fn check(case: &Case, report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    if report.has_errors() == case.valid {
        problems.push(format!(
            "expected {}, got {}",
            verdict_word(case.valid),
            verdict_word(!report.has_errors())
        ));
    }
    let got: BTreeSet<(String, String, String)> = report
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.severity.as_str().to_owned(),
                d.path.clone(),
                d.code.as_str().to_owned(),
            )
        })
        .collect();
    for missing in case.expected.difference(&got) {
        problems.push(format!(
            "missing {} {} at {:?}",
            missing.0, missing.2, missing.1
        ));
    }
    for extra in got.difference(&case.expected) {
        let message = report
            .diagnostics
            .iter()
            .find(|d| d.path == extra.1 && d.code.as_str() == extra.2)
            .map(|d| d.message.as_str())
            .unwrap_or("");
        problems.push(format!(
            "unexpected {} {} at {:?}: {message}",
            extra.0, extra.2, extra.1
        ));
    }
    for needle in &case.message_contains {
        if !report
            .diagnostics
            .iter()
            .any(|d| d.message.contains(needle.as_str()))
        {
            problems.push(format!("no message contains {needle:?}"));
        }
    }
    problems
}

fn catalog_of(value: &Value) -> Result<Catalog, String> {
    let text = serde_json::to_string(value).map_err(|error| error.to_string())?;
    plx_connections::catalog_from_json(&text).map_err(|diagnostics| {
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn form_of(value: &Value) -> Option<Form> {
    plx_connections::validate_value(value, &[]).form
}

fn load(dir: &Path) -> Result<Vec<Case>, String> {
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|error| format!("{}: {error}", dir.display()))?;
    files.sort();
    let case_schema: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("../case.schema.json"))
            .map_err(|error| format!("case.schema.json: {error}"))?,
    )
    .map_err(|error| format!("case.schema.json: {error}"))?;
    let case_schema = jsonschema::validator_for(&case_schema)
        .map_err(|error| format!("case.schema.json: {error}"))?;
    let mut cases = Vec::new();
    for file in files {
        let id = file
            .strip_prefix(dir.parent().unwrap_or(dir))
            .unwrap_or(&file)
            .with_extension("")
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).map_err(|error| format!("{id}: {error}"))?;
        let value: Value = serde_yaml::from_str(&text).map_err(|error| format!("{id}: {error}"))?;
        if let Some(error) = case_schema.iter_errors(&value).next() {
            return Err(format!(
                "{id}: not a case (case.schema.json): {error} at {}",
                error.instance_path()
            ));
        }
        cases.push(parse_case(&id, &value).map_err(|error| format!("{id}: {error}"))?);
    }
    Ok(cases)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            out.push(path);
        }
    }
    Ok(())
}

fn parse_case(id: &str, value: &Value) -> Result<Case, String> {
    let object = value.as_object().ok_or("a case is a mapping")?;
    for key in object.keys() {
        if ![
            "description",
            "comment",
            "document",
            "text",
            "catalog",
            "valid",
            "diagnostics",
            "cross_field",
        ]
        .contains(&key.as_str())
        {
            return Err(format!("unknown case field `{key}`"));
        }
    }
    let description = object
        .get("description")
        .and_then(Value::as_str)
        .ok_or("`description` is required")?
        .to_owned();
    let text = match (object.get("text"), object.get("document")) {
        (Some(Value::String(text)), None) => text.clone(),
        (None, Some(document)) => {
            serde_yaml::to_string(document).map_err(|error| error.to_string())?
        }
        _ => return Err("give exactly one of `document` and `text`".to_owned()),
    };
    let valid = object
        .get("valid")
        .and_then(Value::as_bool)
        .ok_or("`valid` is required")?;
    let mut expected = BTreeSet::new();
    let mut message_contains = Vec::new();
    for diagnostic in object
        .get("diagnostics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |key: &str| {
            diagnostic
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let severity = field("severity").unwrap_or_else(|| "error".to_owned());
        let path = field("path").ok_or("a diagnostic needs `path`")?;
        let code = field("code").ok_or("a diagnostic needs `code`")?;
        if let Some(needle) = field("message_contains") {
            message_contains.push(needle);
        }
        expected.insert((severity, path, code));
    }
    let has_error = expected.iter().any(|(severity, _, _)| severity == "error");
    if has_error == valid {
        return Err("`valid` disagrees with the error diagnostics listed".to_owned());
    }
    let area = id.split('/').nth(1).unwrap_or("").to_owned();
    Ok(Case {
        id: id.to_owned(),
        area,
        description,
        text,
        catalog: object.get("catalog").cloned(),
        valid,
        expected,
        message_contains,
        cross_field: object
            .get("cross_field")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

struct Schemas {
    connection: jsonschema::Validator,
    catalog: jsonschema::Validator,
    init: jsonschema::Validator,
}

impl Schemas {
    fn new() -> Schemas {
        let build = |schema: Value| {
            jsonschema::validator_for(&schema).expect("the generated schemas compile")
        };
        Schemas {
            connection: build(plx_connections::schema::connection()),
            catalog: build(plx_connections::schema::catalog()),
            init: build(plx_connections::schema::init()),
        }
    }

    /// A list of connections (or null), each valid by the connection schema.
    fn entries(&self, list: &Value) -> bool {
        match list {
            Value::Null => true,
            Value::Array(items) => items.iter().all(|item| self.connection.is_valid(item)),
            _ => false,
        }
    }

    /// The JSON Schema's verdict on a case's document, taken apart by form as a tool would.
    fn verdict(&self, text: &str, report: &Report) -> Result<bool, String> {
        let Ok(document) = plx_connections::read_value(text) else {
            return Ok(false);
        };
        let Some(form) = report.form else {
            return Ok(false);
        };
        Ok(match form {
            Form::Connection => self.connection.is_valid(&document),
            // plx-init's own catalog: each entry as connection.schema.json says.
            Form::ConnectionList => self.entries(&document),
            Form::Values => self.catalog.is_valid(&document),
            Form::AgentEnv | Form::PodEnv => {
                let vars = match document.get("apiVersion").is_some() {
                    true => document.get("data").cloned().unwrap_or(Value::Null),
                    false => document.clone(),
                };
                let embedded = |key: &str| -> Result<Value, ()> {
                    match vars.get(key) {
                        None | Some(Value::Null) => Ok(Value::Null),
                        Some(Value::String(text)) => serde_json::from_str(text).map_err(|_| ()),
                        Some(other) => Ok(other.clone()),
                    }
                };
                let (Ok(connections), Ok(store), Ok(pod)) = (
                    embedded(plx_connections::AGENT_CONNECTIONS),
                    embedded(plx_connections::AGENT_ARTIFACTS_STORE),
                    embedded(plx_connections::CONNECTIONS_CATALOG),
                ) else {
                    return Ok(false);
                };
                let pod_ok = pod.is_null()
                    || (pod.is_object()
                        && pod
                            .as_object()
                            .is_some_and(|map| map.keys().all(|key| key == "connections"))
                        && self.entries(pod.get("connections").unwrap_or(&Value::Null)));
                pod_ok
                    && self
                        .catalog
                        .is_valid(&json!({"connections": connections, "artifactsStore": store}))
            }
            Form::Job => {
                let run = document
                    .get("run")
                    .or_else(|| document.get("component").and_then(|c| c.get("run")))
                    .cloned()
                    .unwrap_or(Value::Null);
                let names = jsonschema::validator_for(
                    &json!({"type": ["array", "null"], "items": {"type": "string"}}),
                )
                .map_err(|e| e.to_string())?;
                if !run.is_object() {
                    return Ok(false);
                }
                let mut sections = vec![run.clone()];
                if let Value::Object(map) = &run {
                    sections.extend(
                        map.values()
                            .filter(|v| v.get("init").is_some() || v.get("connections").is_some())
                            .cloned(),
                    );
                }
                sections.iter().all(|section| {
                    names.is_valid(section.get("connections").unwrap_or(&Value::Null))
                        && section
                            .get("init")
                            .is_none_or(|init| init.is_null() || self.init.is_valid(init))
                })
            }
        })
    }
}

fn polyaxon(
    root: &Path,
    python: &Path,
    input: &[Value],
) -> Result<BTreeMap<String, (bool, String)>, String> {
    let dir = std::env::temp_dir().join(format!("plx-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    let input_path = dir.join("cases.json");
    std::fs::write(
        &input_path,
        serde_json::to_vec(input).map_err(|error| error.to_string())?,
    )
    .map_err(|error| error.to_string())?;
    let output = std::process::Command::new(python)
        .arg(root.join("polyaxon_oracle.py"))
        .arg(&input_path)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !output.status.success() {
        return Err(format!(
            "the oracle exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let verdicts: BTreeMap<String, Value> = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("the oracle's output: {error}"))?;
    Ok(verdicts
        .into_iter()
        .map(|(id, verdict)| {
            let accepted = verdict["accepted"].as_bool().unwrap_or(false);
            let error = verdict["error"].as_str().unwrap_or("").to_owned();
            (id, (accepted, error))
        })
        .collect())
}

/// The case ids in DIVERGENCES.md's table (first column, in backticks), with their reason.
fn divergences(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        if let Some(id) = cells[1]
            .strip_prefix('`')
            .and_then(|id| id.strip_suffix('`'))
        {
            let reason = cells[cells.len() - 2];
            if reason.is_empty() {
                return Err(format!("{id} has no reason"));
            }
            out.insert(id.to_owned(), reason.to_owned());
        }
    }
    Ok(out)
}
