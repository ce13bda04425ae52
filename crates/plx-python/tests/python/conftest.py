"""The servers `tests/it` started, a bucket on each, and the pod's catalog naming them.

Polyaxon reads its catalog when it is imported, so the catalog is in the environment before
any test imports it. Each s3 connection reads its keys, endpoint and region from a mounted
secret's files (the layout Polyaxon's converter mounts): two servers cannot share the
process's environment.
"""

import json
import os
import tempfile
import uuid

import botocore.session
import pytest

SERVERS = {
    name: json.loads(os.environ[f"PLX_TEST_{name.upper()}"])
    for name in ("moto", "s3s", "faulty", "corrupt", "changing")
}
#: This session's bucket on each server.
BUCKETS = {"moto": f"plx-{uuid.uuid4().hex[:12]}", "s3s": f"plx-{uuid.uuid4().hex[:12]}"}
BUCKETS["faulty"] = BUCKETS["corrupt"] = BUCKETS["s3s"]
#: The proxy that overwrites one object between two ranged parts names its own bucket.
BUCKETS["changing"] = SERVERS["changing"]["bucket"]
SECRETS = tempfile.mkdtemp(prefix="plx-secrets-")
LOCAL = tempfile.mkdtemp(prefix="plx-local-")


def client(server):
    """A plain botocore client: the data is put and read back by neither filesystem."""
    config = SERVERS[server]
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=config["endpoint"],
        region_name=config["region"],
        aws_access_key_id=config["access_key"],
        aws_secret_access_key=config["secret_key"],
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}),
    )


def _connection(server):
    config = SERVERS[server]
    mount = os.path.join(SECRETS, server)
    os.makedirs(mount, exist_ok=True)
    for key, value in (
        ("AWS_ACCESS_KEY_ID", config["access_key"]),
        ("AWS_SECRET_ACCESS_KEY", config["secret_key"]),
        ("AWS_ENDPOINT_URL", config["endpoint"]),
        ("AWS_REGION", config["region"]),
        ("AWS_USE_SSL", "false"),
    ):
        with open(os.path.join(mount, key), "w") as file:
            # A trailing newline, as `kubectl create secret --from-file` often leaves one.
            file.write(value)
    return {
        "name": f"{server}-data",
        "kind": "s3",
        "schema": {"bucket": f"s3://{BUCKETS[server]}"},
        "secret": {"name": f"{server}-secret", "mountPath": mount},
    }


CATALOG = {
    "connections": [_connection(server) for server in SERVERS]
    # Keys in the connection's own env (the validator warns; Polyaxon's agent injects them).
    + [
        {
            "name": "s3s-env",
            "kind": "s3",
            "schema": {"bucket": f"s3://{BUCKETS['s3s']}"},
            "env": {
                "AWS_ACCESS_KEY_ID": SERVERS["s3s"]["access_key"],
                "AWS_SECRET_ACCESS_KEY": SERVERS["s3s"]["secret_key"],
                "AWS_ENDPOINT_URL": SERVERS["s3s"]["endpoint"],
                "AWS_REGION": SERVERS["s3s"]["region"],
            },
        }
    ]
    + [{"name": "local", "kind": "host_path", "schema": {"hostPath": LOCAL, "mountPath": LOCAL}}]
}
os.environ["POLYAXON_CONNECTIONS_CATALOG"] = json.dumps(CATALOG)
os.environ.setdefault("POLYAXON_HOME", tempfile.mkdtemp(prefix="plx-polyaxon-home-"))
os.environ["POLYAXON_NO_OP"] = "false"

for name in ("moto", "s3s", "changing"):
    client(name).create_bucket(Bucket=BUCKETS[name])


def seed(server, objects):
    """Puts ``objects`` (key to bytes) into the server's bucket."""
    s3 = client(server)
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKETS[server], Key=key, Body=body)


@pytest.fixture
def prefix():
    """A fresh prefix, so that tests never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:10]}"
