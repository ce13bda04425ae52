//! Reading documents: YAML or JSON text in any of the forms Polyaxon users write, with limits.

use serde_json::{Map, Value};

use crate::{
    diag::{Code, Diagnostic, Ptr, Sink},
    model::Catalog,
    model::JobSection,
    parse::{self, Known},
    readers::{self, Reader},
};

/// The largest document read, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// The agent's connections variable (a JSON list).
pub const AGENT_CONNECTIONS: &str = "POLYAXON_AGENT_CONNECTIONS";
/// The agent's artifacts store variable (a JSON object).
pub const AGENT_ARTIFACTS_STORE: &str = "POLYAXON_AGENT_ARTIFACTS_STORE";
/// The pod's catalog variable (JSON `{"connections": [...]}`).
pub const CONNECTIONS_CATALOG: &str = "POLYAXON_CONNECTIONS_CATALOG";

/// Which of the known forms a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Form {
    /// A list of connections.
    ConnectionList,
    /// One connection.
    Connection,
    /// A mapping with `connections:` and `artifactsStore:`: a Polyaxon Helm values file or a catalog JSON.
    Values,
    /// The agent's `POLYAXON_AGENT_CONNECTIONS` / `POLYAXON_AGENT_ARTIFACTS_STORE`, as a mapping of
    /// variables or a ConfigMap holding them.
    AgentEnv,
    /// The pod's `POLYAXON_CONNECTIONS_CATALOG`, as a mapping of variables or a ConfigMap.
    PodEnv,
    /// A Polyaxon operation or component: `run.connections` and `run.init`.
    Job,
}

/// What a document held, if it was good enough to build.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per document, so the size difference between the variants costs nothing"
)]
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A catalog (every form but jobs).
    Catalog(Catalog),
    /// The connection-related sections of a job.
    Job(Vec<JobSection>),
}

/// The result of reading and validating one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The form detected, if the document could be parsed at all.
    pub form: Option<Form>,
    /// Every problem found, in document order.
    pub diagnostics: Vec<Diagnostic>,
    /// The typed content, when there are no errors.
    pub content: Option<Content>,
}

impl Report {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The catalog, if the document was a valid catalog.
    pub fn catalog(&self) -> Option<&Catalog> {
        match &self.content {
            Some(Content::Catalog(catalog)) => Some(catalog),
            _ => None,
        }
    }
}

/// Reads YAML or JSON text (JSON is YAML) into a JSON value, refusing what is too large, too deep,
/// expands too much through aliases, or is not a single document.
pub fn read_value(text: &str) -> Result<Value, Diagnostic> {
    size(text)?;
    // serde_yaml bounds nesting (128 levels) and alias expansion itself; its errors say which.
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(yaml_error)?;
    json(yaml)
}

/// Reads a stream of YAML documents separated by `---`, as `helm template` and `kubectl get -o
/// yaml` print them, each with [`read_value`]'s limits (the size limit is the whole stream's).
/// Empty documents (a comment alone, a trailing `---`) are left out.
pub fn read_documents(text: &str) -> Result<Vec<Value>, Diagnostic> {
    use serde::Deserialize;
    size(text)?;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let yaml = serde_yaml::Value::deserialize(document).map_err(yaml_error)?;
        if !yaml.is_null() {
            documents.push(json(yaml)?);
        }
    }
    Ok(documents)
}

/// The most a stream of rendered Kubernetes manifests may hold: a release with its CRDs runs to a
/// few MiB (Polyaxon's chart renders 1.8 MB); the catalogs inside keep [`MAX_DOCUMENT_BYTES`].
pub const MAX_MANIFESTS_BYTES: usize = 64 * 1024 * 1024;

/// Reads a stream of Kubernetes manifests (`helm template`, a post-renderer's input) as the API
/// machinery reads them: a key written twice in a mapping keeps its last value instead of
/// failing the document. Polyaxon's own chart renders a ClusterRole with `rules:` twice, which
/// Helm and Kubernetes take; [`read_documents`] refuses it, as it should for a catalog. The
/// catalogs such a stream carries are strings, read strictly when they are checked.
pub fn read_manifests(text: &str) -> Result<Vec<Value>, Diagnostic> {
    use serde::Deserialize;
    if text.len() > MAX_MANIFESTS_BYTES {
        return Err(failure(
            Code::TooLarge,
            format!(
                "the manifests are {} bytes; the limit is {MAX_MANIFESTS_BYTES}",
                text.len()
            ),
        ));
    }
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        // serde_json's map keeps the last of repeated keys; serde_yaml still bounds nesting and
        // alias expansion.
        let value = Value::deserialize(document).map_err(yaml_error)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn failure(code: Code, message: String) -> Diagnostic {
    Diagnostic {
        severity: crate::Severity::Error,
        path: String::new(),
        code,
        message,
    }
}

fn size(text: &str) -> Result<(), Diagnostic> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(failure(
            Code::TooLarge,
            format!(
                "the document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(())
}

fn yaml_error(error: serde_yaml::Error) -> Diagnostic {
    let message = error.to_string();
    if message.contains("recursion limit") || message.contains("repetition limit") {
        failure(
            Code::TooLarge,
            format!("{message}: the document nests too deeply or expands too many aliases"),
        )
    } else {
        failure(Code::InvalidYaml, message)
    }
}

fn json(yaml: serde_yaml::Value) -> Result<Value, Diagnostic> {
    to_json(yaml, &Ptr::default()).map_err(|(path, message)| Diagnostic {
        severity: crate::Severity::Error,
        path: path.0,
        code: Code::InvalidYaml,
        message,
    })
}

fn to_json(yaml: serde_yaml::Value, path: &Ptr) -> Result<Value, (Ptr, String)> {
    Ok(match yaml {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(flag) => Value::Bool(flag),
        serde_yaml::Value::Number(number) => {
            if let Some(int) = number.as_u64() {
                Value::from(int)
            } else if let Some(int) = number.as_i64() {
                Value::from(int)
            } else {
                let float = number.as_f64().unwrap_or(f64::NAN);
                match serde_json::Number::from_f64(float) {
                    Some(number) => Value::Number(number),
                    None => return Err((path.clone(), format!("{float} is not a finite number"))),
                }
            }
        }
        serde_yaml::Value::String(text) => Value::String(text),
        serde_yaml::Value::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                out.push(to_json(item, &path.index(index))?);
            }
            Value::Array(out)
        }
        serde_yaml::Value::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    serde_yaml::Value::String(text) => text,
                    serde_yaml::Value::Number(number) => number.to_string(),
                    serde_yaml::Value::Bool(flag) => flag.to_string(),
                    other => {
                        return Err((
                            path.clone(),
                            format!("mapping keys must be strings, not {other:?}"),
                        ));
                    }
                };
                let value = to_json(value, &path.key(&key))?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        serde_yaml::Value::Tagged(tagged) => to_json(tagged.value, path)?,
    })
}

/// Validates a document of any form. Job documents have their connection names checked against
/// `catalogs` (not checked when it is empty).
pub fn validate(text: &str, catalogs: &[Catalog]) -> Report {
    match read_value(text) {
        Ok(value) => validate_value(&value, catalogs),
        Err(diagnostic) => Report {
            form: None,
            diagnostics: vec![diagnostic],
            content: None,
        },
    }
}

/// Validates an already-read document as everything that reads it would: plx-init, and, for a
/// values file or the agent's variables, Polyaxon's chart and agent (`readers`).
pub fn validate_value(value: &Value, catalogs: &[Catalog]) -> Report {
    check(value, catalogs, true)
}

/// Reads a catalog document as plx-init does at run time: every `env` form in every place, so a
/// catalog Polyaxon's agent would refuse still runs (`plx-init validate` says why it should not).
pub fn load(text: &str) -> Report {
    match read_value(text) {
        Ok(value) => check(&value, &[], false),
        Err(diagnostic) => Report {
            form: None,
            diagnostics: vec![diagnostic],
            content: None,
        },
    }
}

fn check(value: &Value, catalogs: &[Catalog], readers: bool) -> Report {
    let mut sink = Sink::default();
    let root = Ptr::default();
    let form = detect(value);
    let content = match form {
        None => {
            sink.error(
                &root,
                Code::UnknownForm,
                "this is not a connection, a list of connections, a values file with `connections:` or `artifactsStore:`, a ConfigMap or mapping with POLYAXON_AGENT_CONNECTIONS or POLYAXON_CONNECTIONS_CATALOG, or a Polyaxon operation or component with `run:`",
            );
            None
        }
        Some(Form::ConnectionList) => {
            parse::catalog(&mut sink, Some((value, root.clone())), None).map(Content::Catalog)
        }
        Some(Form::Connection) => {
            let parsed = parse::connection(&mut sink, value, &root);
            parsed.connection.map(|connection| {
                Content::Catalog(Catalog {
                    connections: vec![connection],
                    artifacts_store: None,
                })
            })
        }
        Some(Form::Values) => values(&mut sink, value, &root, readers).map(Content::Catalog),
        Some(Form::AgentEnv | Form::PodEnv) => {
            let (vars, path) = variables(value);
            env_catalog(&mut sink, vars, &path, readers).map(Content::Catalog)
        }
        Some(Form::Job) => job(&mut sink, value, &root, &Known { catalogs }).map(Content::Job),
    };
    let content = if sink.has_errors() { None } else { content };
    Report {
        form,
        diagnostics: sink.diagnostics,
        content,
    }
}

/// The pod's catalog: the value of `POLYAXON_CONNECTIONS_CATALOG` (`None` when it is not set),
/// read as plx-init reads it (every `env` form).
pub fn pod_catalog(text: Option<&str>) -> Result<Catalog, crate::LookupError> {
    let text = text.ok_or(crate::LookupError::NoCatalog)?;
    catalog_from_json(text).map_err(|diagnostics| {
        crate::LookupError::Invalid(
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// Parses a catalog from the pod's `POLYAXON_CONNECTIONS_CATALOG` JSON.
pub fn catalog_from_json(text: &str) -> Result<Catalog, Vec<Diagnostic>> {
    let report = load(text);
    match report.content {
        Some(Content::Catalog(catalog)) => Ok(catalog),
        _ if report.has_errors() => Err(report.diagnostics),
        _ => Err(vec![Diagnostic {
            severity: crate::Severity::Error,
            path: String::new(),
            code: Code::UnknownForm,
            message: "expected a connection catalog, not a job".to_owned(),
        }]),
    }
}

fn detect(value: &Value) -> Option<Form> {
    match value {
        Value::Array(_) => Some(Form::ConnectionList),
        Value::Object(map) => {
            let (vars, _) = variables(value);
            if vars.contains_key(AGENT_CONNECTIONS) || vars.contains_key(AGENT_ARTIFACTS_STORE) {
                Some(Form::AgentEnv)
            } else if vars.contains_key(CONNECTIONS_CATALOG) {
                Some(Form::PodEnv)
            } else if map.contains_key("run")
                || map.get("component").is_some_and(|c| c.get("run").is_some())
            {
                Some(Form::Job)
            } else if map.contains_key("connections") || map.contains_key("artifactsStore") {
                Some(Form::Values)
            } else if map.contains_key("kind") && !is_kube_object(map) {
                Some(Form::Connection)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn is_kube_object(map: &Map<String, Value>) -> bool {
    map.contains_key("apiVersion")
}

/// The variables of a mapping, or of a ConfigMap's `data`.
fn variables(value: &Value) -> (&Map<String, Value>, Ptr) {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let empty = EMPTY.get_or_init(Map::new);
    let Value::Object(map) = value else {
        return (empty, Ptr::default());
    };
    if is_kube_object(map) && map.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
        return match map.get("data") {
            Some(Value::Object(data)) => (data, Ptr::default().key("data")),
            _ => (empty, Ptr::default().key("data")),
        };
    }
    (map, Ptr::default())
}

fn values(sink: &mut Sink, value: &Value, path: &Ptr, readers: bool) -> Option<Catalog> {
    let map = value.as_object()?;
    let connections = map
        .get("connections")
        .map(|value| (value, path.key("connections")));
    let store = parse::get(map, "artifactsStore").map(|value| (value, path.key("artifactsStore")));
    let catalog = parse::catalog(sink, connections.clone(), store.clone());
    let mounted = parse::string_list(sink, map, path, "mountConnections");
    if readers {
        // Polyaxon's chart renders the store's env only with its agent on (the default).
        let agent = map
            .get("agent")
            .and_then(|agent| agent.get("enabled"))
            .and_then(Value::as_bool)
            != Some(false);
        let reader = Reader::Chart {
            mounted: mounted.as_deref().unwrap_or_default(),
            agent,
        };
        readers::check(
            sink,
            connections.as_ref().map(|(value, path)| (*value, path)),
            store.as_ref().map(|(value, path)| (*value, path)),
            &reader,
        );
    }
    // Polyaxon's chart mounts `mountConnections` into its service pods: they must exist.
    if let Some(names) = mounted
        && let Some(catalog) = &catalog
    {
        let known = Known {
            catalogs: std::slice::from_ref(catalog),
        };
        for (index, name) in names.iter().enumerate() {
            known.check(sink, name, &path.key("mountConnections").index(index));
        }
    }
    catalog
}

fn env_catalog(
    sink: &mut Sink,
    vars: &Map<String, Value>,
    path: &Ptr,
    readers: bool,
) -> Option<Catalog> {
    let connections_path = path.key(AGENT_CONNECTIONS);
    let store_path = path.key(AGENT_ARTIFACTS_STORE);
    let catalog_path = path.key(CONNECTIONS_CATALOG);
    let connections = embedded(sink, vars.get(AGENT_CONNECTIONS), &connections_path);
    let store = embedded(sink, vars.get(AGENT_ARTIFACTS_STORE), &store_path);
    let pod = embedded(sink, vars.get(CONNECTIONS_CATALOG), &catalog_path);
    if readers {
        readers::check(
            sink,
            connections.as_ref().map(|value| (value, &connections_path)),
            store.as_ref().map(|value| (value, &store_path)),
            &Reader::Agent,
        );
    }
    let mut catalog = parse::catalog(
        sink,
        connections
            .as_ref()
            .map(|value| (value, connections_path.clone())),
        store
            .as_ref()
            .filter(|value| !value.is_null())
            .map(|value| (value, store_path.clone())),
    );
    if let Some(pod) = &pod {
        let map = parse::object(
            sink,
            pod,
            &catalog_path,
            "the connections catalog",
            &["connections"],
        )?;
        let pod_catalog = parse::catalog(
            sink,
            map.get("connections")
                .map(|value| (value, catalog_path.key("connections"))),
            None,
        );
        if let (Some(catalog), Some(pod_catalog)) = (&mut catalog, pod_catalog) {
            catalog.connections.extend(pod_catalog.connections);
        }
    }
    catalog
}

/// Parses JSON held in a string variable; pointers go on inside it.
fn embedded(sink: &mut Sink, value: Option<&Value>, path: &Ptr) -> Option<Value> {
    match value? {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(value) => Some(value),
            Err(error) => {
                let code = if error.to_string().contains("recursion limit") {
                    Code::TooLarge
                } else {
                    Code::InvalidJson
                };
                sink.error(path, code, format!("this variable must hold JSON: {error}"));
                None
            }
        },
        // A mapping of variables written as YAML rather than as a JSON string is read as it is.
        other => Some(other.clone()),
    }
}

fn job(sink: &mut Sink, value: &Value, path: &Ptr, known: &Known<'_>) -> Option<Vec<JobSection>> {
    let map = value.as_object()?;
    let (run, run_path) = match map.get("run") {
        Some(run) => (run, path.key("run")),
        None => {
            let component = map.get("component")?;
            (component.get("run")?, path.key("component").key("run"))
        }
    };
    let Value::Object(run) = run else {
        sink.error(
            &run_path,
            Code::InvalidType,
            format!("run must be a mapping, not {}", parse::type_name(run)),
        );
        return None;
    };
    let mut sections = Vec::new();
    let mut ok = true;
    match parse::job_section(sink, run, &run_path, known) {
        Some(section) => sections.push(section),
        None => ok = false,
    }
    // Distributed runs keep connections and init per replica (chief, worker, master, launcher, ...).
    for (key, replica) in run {
        if let Value::Object(replica) = replica
            && (replica.contains_key("init") || replica.contains_key("connections"))
        {
            match parse::job_section(sink, replica, &run_path.key(key), known) {
                Some(section) => sections.push(section),
                None => ok = false,
            }
        }
    }
    ok.then_some(sections)
}
