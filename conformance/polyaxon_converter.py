"""Generates a run's init containers with Polyaxon 2.18's own converter, as its agent does.

Input (argv[1]): a JSON object {"agent": the agent config, "operation": a compiled operation,
"uuid": the run's uuid}. Output on stdout: {"initContainers": [...], "volumes": [...]}, the
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


def main():
    case = json.loads(sys.argv[1])
    agent = json.dumps(case["agent"])
    # The converter reads a few settings (the runs' service account) from the agent's config.
    settings.AGENT_CONFIG = AgentConfig.read(agent)
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
