"""Generates a run's init containers with Polyaxon 2.18's own converter, as its agent does.

Input (argv[1]): a JSON object {"agent": the agent config, "operation": a compiled operation,
"uuid": the run's uuid}; `{{ globals.* }}` templates in the operation are filled in first, as
Polyaxon's compiler fills them in (the run's path is its uuid). Output on stdout: {"initContainers": [...], "volumes": [...]}, the
pod spec's fields as the agent would send them to the API server (Kubernetes' JSON names).

It calls what the agent's `create_from_run` calls (`BaseExecutor.convert`: `AgentResolver`,
then the job converter's `get_resource`), offline: the agent config is passed as the agent
reads it from its ConfigMap, and `POLYAXON_HOST` and the internal token are set to any value.
"""

import json
import os
import sys

os.environ.setdefault("POLYAXON_HOST", "http://polyaxon-api.polyaxon.svc")
os.environ.setdefault("POLYAXON_SECRET_INTERNAL_TOKEN", "internal-token")

from polyaxon import settings  # noqa: E402
from polyaxon._k8s.executor.executor import Executor  # noqa: E402
from polyaxon._schemas.agent import AgentConfig  # noqa: E402


def pod_spec(resource):
    """The pod template in whatever custom resource the converter made."""
    if isinstance(resource, dict):
        if "initContainers" in resource or "containers" in resource:
            return resource
        for value in resource.values():
            found = pod_spec(value)
            if found is not None:
                return found
    elif isinstance(resource, list):
        for value in resource:
            found = pod_spec(value)
            if found is not None:
                return found
    return None


def resolved(operation, agent, run_uuid):
    """The operation with its `{{ globals.* }}` templates filled in, as Polyaxon's compiler
    fills them in before the agent sees a run (`resolve_globals_contexts`, then
    `apply_runtime_contexts`); an operation without templates is returned as it is."""
    if "{{" not in json.dumps(operation):
        return operation
    import datetime

    from polyaxon._compiler.contexts.contexts import resolve_globals_contexts
    from polyaxon._flow.operations.compiled_operation import V1CompiledOperation
    from polyaxon._polyaxonfile.specs import CompiledOperationSpecification

    config = V1CompiledOperation.read(operation)
    now = datetime.datetime.now(datetime.timezone.utc)
    contexts = resolve_globals_contexts(
        namespace=agent.namespace,
        owner_name="acme",
        project_name="vision",
        project_uuid="0" * 32,
        run_uuid=run_uuid,
        run_name="train",
        run_path=run_uuid,
        iteration=None,
        created_at=now,
        compiled_at=now,
        plugins=config.plugins,
        artifacts_store=agent.artifacts_store,
    )
    config = CompiledOperationSpecification.apply_runtime_contexts(config, contexts=contexts)
    return config.to_dict()


def main():
    case = json.loads(sys.argv[1])
    agent = json.dumps(case["agent"])
    # The converter reads a few settings (the runs' service account) from the agent's config.
    settings.AGENT_CONFIG = AgentConfig.read(agent)
    case["operation"] = resolved(case["operation"], settings.AGENT_CONFIG, case["uuid"])
    resource = Executor.convert(
        owner_name="acme",
        project_name="vision",
        run_name="train",
        run_uuid=case["uuid"],
        content=json.dumps(case["operation"]),
        default_auth=True,
        agent_content=agent,
    )
    spec = pod_spec(resource) or {}
    json.dump(
        {
            "initContainers": spec.get("initContainers") or [],
            "volumes": spec.get("volumes") or [],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
