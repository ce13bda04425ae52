"""Feeds conformance cases to the real Polyaxon 2.18 and prints its verdicts.

Input: a JSON file with a list of {"id", "form", "document", "catalog"} (the document already read
from YAML by plx-connections). Output on stdout: a JSON object {id: {"accepted": bool, "error": str}}.
It uses Polyaxon's own models and checks, the ones its agent and compiler run:
AgentConfig (V1Connection per entry, unique names when a store is set), V1Init per init entry,
and AgentResolver._resolve_replica_connections for a job's connection names.
"""

import json
import sys
import types

from polyaxon._compiler.resolver.agent import AgentResolver
from polyaxon._connections import V1Connection
from polyaxon._flow.init import V1Init
from polyaxon._schemas.agent import AgentConfig


def agent_config(connections, store):
    data = {"connections": connections or []}
    if store is not None:
        data["artifactsStore"] = store
    return AgentConfig.from_dict(data)


def env_json(vars, key):
    value = vars.get(key)
    return json.loads(value) if isinstance(value, str) else value


def catalog_parts(form, document):
    if form == "connection-list":
        return document, None
    if form == "connection":
        V1Connection.from_dict(document)
        return [document], None
    if form == "values":
        return document.get("connections"), document.get("artifactsStore")
    if form in ("agent-env", "pod-env"):
        vars = document
        if document.get("apiVersion") and document.get("kind") == "ConfigMap":
            vars = document.get("data") or {}
        connections = env_json(vars, "POLYAXON_AGENT_CONNECTIONS") or []
        store = env_json(vars, "POLYAXON_AGENT_ARTIFACTS_STORE")
        pod = env_json(vars, "POLYAXON_CONNECTIONS_CATALOG")
        if pod is not None:
            connections = list(connections) + list(pod.get("connections") or [])
        return connections, store
    raise ValueError("unknown form " + str(form))


def job(document, catalog):
    run = document.get("run") or (document.get("component") or {}).get("run") or {}
    connections, store = catalog_parts(catalog["form"], catalog["document"]) if catalog else ([], None)
    config = agent_config(connections, store)
    # AgentResolver is a pydantic model needing a compiled operation; its connection methods only
    # use connection_by_names, so they run on a plain namespace.
    resolver = types.SimpleNamespace(connection_by_names={})
    resolver._resolve_connections = lambda connections, agent_config: AgentResolver._resolve_connections(
        resolver, connections=connections, agent_config=agent_config
    )
    sections = [run] + [v for v in run.values() if isinstance(v, dict) and ("init" in v or "connections" in v)]
    for section in sections:
        init = [V1Init.from_dict(entry) for entry in (section.get("init") or [])]
        names = section.get("connections")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError("connections must be a list of strings")
        if catalog:
            AgentResolver._resolve_replica_connections(resolver, connections=names, init=init, agent_config=config)


def verdict(case):
    form, document = case["form"], case["document"]
    if form == "job":
        job(document, case.get("catalog"))
    else:
        connections, store = catalog_parts(form, document)
        agent_config(connections, store)


def main():
    with open(sys.argv[1]) as handle:
        cases = json.load(handle)
    out = {}
    for case in cases:
        try:
            verdict(case)
            out[case["id"]] = {"accepted": True, "error": ""}
        except Exception as error:  # Any refusal is a verdict, whatever its type.
            out[case["id"]] = {"accepted": False, "error": (type(error).__name__ + ": " + str(error))[:300]}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
