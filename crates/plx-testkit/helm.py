"""Real Helm v4 code (helm-python-sdk, the C ABI over Helm's Go SDK) for the tests that run Helm.

Reads a JSON list of requests on stdin and writes a JSON list of answers on stdout, so one
process serves a whole test:

  {"op": "lint", "chart": DIR, "values": {...}}        -> {"messages": [...], "errors": [...]}
  {"op": "render", "chart": DIR, "values": {...},
   "name": NAME, "namespace": NS}                       -> {"manifests": {template: text}}
  {"op": "validate", "chart": DIR, "values": {...}}     -> {}  (values.schema.json)
  {"op": "install", "chart": DIR, "values": {...},
   "name": NAME, "namespace": NS,
   "post_renderer": PLUGIN}                             -> {"manifest": "..."}
  {"op": "version"}                                     -> {"helm": "..."}

`install` is `helm install --dry-run=client --post-renderer PLUGIN`: Helm's install action up to
the point where it would send objects to a cluster, with the post-renderer plugins found under
HELM_PLUGINS (Helm reads it when the library loads, so it is set before this process starts).

A failure is {"error": "..."} in place of the answer.
"""

import json
import sys

import helm_python as helm
from helm_python import _native


def answer(request, charts):
    op = request["op"]
    if op == "version":
        return {"helm": helm.helm_sdk_version()}
    path = request["chart"]
    if op == "lint":
        report = helm.lint(path, request.get("values"), strict=True, namespace=request.get("namespace"))
        return {"messages": report.get("messages") or [], "errors": report.get("errors") or []}
    chart = charts.get(path)
    if chart is None:
        chart = charts[path] = helm.Chart.load(path)
    if op == "validate":
        chart.validate_schema(chart.merge_values(request.get("values")))
        return {}
    if op == "render":
        return {
            "manifests": chart.render(
                request.get("values"),
                name=request.get("name", "release"),
                namespace=request.get("namespace", "default"),
                is_install=True,
            )
        }
    if op == "install":
        # The Python wrapper does not pass the C SDK's `post_renderer` option: call the C ABI.
        config = helm.Config(namespace=request.get("namespace", "default"))
        payload = _native.call_string(
            "helm_install",
            config._raw(),
            config._context_arg(None),
            chart._raw(),
            None,
            request.get("name", "release"),
            json.dumps(request.get("values") or {}),
            json.dumps(
                {
                    "namespace": request.get("namespace", "default"),
                    "dry_run": "client",
                    "post_renderer": request["post_renderer"],
                }
            ),
        )
        return {"manifest": json.loads(payload).get("manifest", "")}
    raise ValueError(f"unknown op {op!r}")


def main():
    charts = {}
    answers = []
    for request in json.load(sys.stdin):
        try:
            answers.append(answer(request, charts))
        except helm.HelmError as error:
            answers.append({"error": str(error)})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
