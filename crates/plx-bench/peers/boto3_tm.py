"""boto3's transfer manager (s3transfer), as a Python program would use it: every object of the
spec's prefixes and keys through one TransferManager, defaults or tuned to plx-init's settings."""

import json
import os
import sys

import boto3
from botocore.config import Config
from s3transfer.manager import TransferConfig, TransferManager


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    if spec["tuned"]:
        transfer = TransferConfig(
            max_request_concurrency=spec["concurrency"],
            multipart_threshold=spec["threshold"],
            multipart_chunksize=spec["part_size"],
        )
        # botocore's pool caps concurrency silently at its default of 10.
        config = Config(max_pool_connections=spec["concurrency"] * 2)
    else:
        transfer = TransferConfig()
        config = Config()
    config = config.merge(
        Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    )
    client = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        region_name=spec["region"],
        config=config,
    )
    bucket = spec["bucket"]
    local = spec["local"]
    with TransferManager(client, transfer) as manager:
        futures = []
        if spec["upload"]:
            prefix = spec["upload_prefix"].rstrip("/")
            for root, _, files in os.walk(local):
                for name in files:
                    path = os.path.join(root, name)
                    key = prefix + "/" + os.path.relpath(path, local)
                    futures.append(manager.upload(path, bucket, key))
        else:
            keys = list(spec["keys"])
            paginator = client.get_paginator("list_objects_v2")
            for prefix in spec["prefixes"]:
                for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                    keys.extend(item["Key"] for item in page.get("Contents", []))
            for key in keys:
                path = os.path.join(local, key)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                futures.append(manager.download(bucket, key, path))
        for future in futures:
            future.result()


if __name__ == "__main__":
    main()
