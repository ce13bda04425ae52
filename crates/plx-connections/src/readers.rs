//! What Polyaxon's own readers make of a catalog's `env`, beyond the model: the forms its agent
//! refuses and the ones its chart renders into a broken Deployment.
//!
//! The model (and plx-init) takes `env` in three forms: a map, `[name, value]` pairs and
//! `{name, value}` objects. Polyaxon 2.18's `AgentConfig`, which reads `POLYAXON_AGENT_CONNECTIONS`
//! and `POLYAXON_AGENT_ARTIFACTS_STORE`, refuses the objects ("Input should be a valid
//! dictionary"). Polyaxon's chart copies a values file's `connections` and `artifactsStore` into
//! that ConfigMap unchanged, and also renders the `env` of each connection in `mountConnections`
//! and of the store into its api (and streams) container env, where only the objects are valid.
//! So these checks depend on where the document is read; the model's parse does not know that.

use serde_json::{Map, Value};

use crate::diag::{Code, Ptr, Sink};

/// Who reads a catalog document besides plx-init.
pub(crate) enum Reader<'a> {
    /// Polyaxon's agent, through `POLYAXON_AGENT_*` variables (a ConfigMap, a Secret, a mapping).
    Agent,
    /// Polyaxon's chart, from a values file: the agent's ConfigMap and the service pods' env.
    Chart {
        /// `mountConnections`: rendered into the api's container env.
        mounted: &'a [String],
        /// `agent.enabled` is not false: the store's env is rendered into the api's env.
        agent: bool,
    },
}

const SAFE_PLACE: &str = "put these variables in the connection's `secret` or `configMap` (a Secret or ConfigMap whose keys are the variables), which Polyaxon's agent, its chart and plx-init all read";

/// Checks the `env` of each connection (a list) and of the store (an object) for `reader`.
pub(crate) fn check(
    sink: &mut Sink,
    connections: Option<(&Value, &Ptr)>,
    store: Option<(&Value, &Ptr)>,
    reader: &Reader<'_>,
) {
    if let Some((Value::Array(items), path)) = connections {
        for (index, item) in items.iter().enumerate() {
            if let Value::Object(map) = item {
                let mounted = match reader {
                    Reader::Chart { mounted, .. } => {
                        !is_alias(map)
                            && map
                                .get("name")
                                .and_then(Value::as_str)
                                .is_some_and(|name| mounted.iter().any(|m| m == name))
                    }
                    Reader::Agent => false,
                };
                let place = Place::Connection { mounted };
                env(sink, map, &path.index(index), reader, place);
            }
        }
    }
    if let Some((Value::Object(map), path)) = store {
        let rendered = matches!(reader, Reader::Chart { agent: true, .. });
        env(sink, map, path, reader, Place::Store { rendered });
    }
}

#[derive(Clone, Copy)]
enum Place {
    /// An entry of the connections; `mounted` when the chart also renders its env into pods.
    Connection { mounted: bool },
    /// The artifacts store; `rendered` when the chart also renders its env into pods.
    Store { rendered: bool },
}

fn env(sink: &mut Sink, map: &Map<String, Value>, path: &Ptr, reader: &Reader<'_>, place: Place) {
    let Some(value) = map.get("env") else {
        return;
    };
    let path = path.key("env");
    let in_pods = match place {
        Place::Connection { mounted } => mounted,
        Place::Store { rendered } => rendered,
    };
    let (variable, rendered_by) = match place {
        Place::Connection { .. } => (
            "POLYAXON_AGENT_CONNECTIONS",
            "it is in `mountConnections`, so Polyaxon's chart also renders its `env` into the api's container env",
        ),
        Place::Store { .. } => (
            "POLYAXON_AGENT_ARTIFACTS_STORE",
            "Polyaxon's chart also renders the store's `env` into the api's container env",
        ),
    };
    let objects = matches!(value, Value::Array(items) if items.iter().any(Value::is_object));
    if objects {
        let reads = match reader {
            Reader::Agent => format!(
                "Polyaxon's agent reads {variable} and refuses `env` as a list of {{name, value}} objects (\"Input should be a valid dictionary\")"
            ),
            Reader::Chart { .. } => format!(
                "Polyaxon's chart copies this into the agent's {variable}, and the agent refuses `env` as a list of {{name, value}} objects (\"Input should be a valid dictionary\")"
            ),
        };
        let fix = if in_pods {
            format!(
                "; {rendered_by}, where only that list is valid, so no `env` form works for both: {SAFE_PLACE}"
            )
        } else {
            "; write it as a map (`env: {NAME: value}`), which plx-init reads too".to_owned()
        };
        sink.error(&path, Code::EnvListForAgent, format!("{reads}{fix}"));
        return;
    }
    let empty = match value {
        Value::Object(vars) => vars.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => true,
    };
    if in_pods && !empty {
        let form = match value {
            Value::Object(_) => "a map",
            _ => "a list of [name, value] pairs",
        };
        sink.warning(
            &path,
            Code::EnvInServicePods,
            format!(
                "{rendered_by}, where {form} renders an invalid Deployment (a container's env is a list of {{name, value}}), while Polyaxon's agent refuses that list in {variable}: {SAFE_PLACE}"
            ),
        );
    }
}

fn is_alias(map: &Map<String, Value>) -> bool {
    map.get("isAlias").and_then(Value::as_bool) == Some(true)
}
