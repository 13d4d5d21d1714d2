"""boto3's own download engines over one prefix, for bench/sync.py (run as a separate process, like the tools
it is compared with).

    python bench/boto3_download.py defaults ENDPOINT BUCKET PREFIX DEST
    python bench/boto3_download.py manager  ENDPOINT BUCKET PREFIX DEST [--concurrency 16] [--part-mb 16]

`defaults`: `download_file` with boto3's defaults, one object after the other (what most scripts do).
`manager`: one s3transfer TransferManager for the whole prefix, every object submitted at once, with the same
concurrency and part size as `remote_payload.s3sync`'s defaults: the library doing what the module's ranged
GETs do (no manifest, no resume, no repair), to measure whether the hand-written download still earns its keep.
"""

from __future__ import annotations

import argparse
import os

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MiB = 1024 * 1024


def listing(s3, bucket: str, prefix: str) -> list[str]:
    return [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", ())]


def local(dest: str, prefix: str, key: str) -> str:
    path = os.path.join(dest, key[len(prefix):])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("defaults", "manager"))
    ap.add_argument("endpoint")
    ap.add_argument("bucket")
    ap.add_argument("prefix")
    ap.add_argument("dest")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--part-mb", type=int, default=16)
    args = ap.parse_args()
    if args.mode == "defaults":
        s3 = boto3.client("s3", endpoint_url=args.endpoint, config=Config(s3={"addressing_style": "path"}))
        for key in listing(s3, args.bucket, args.prefix):
            s3.download_file(args.bucket, key, local(args.dest, args.prefix, key))
        return
    from s3transfer.manager import TransferManager

    s3 = boto3.client("s3", endpoint_url=args.endpoint,
                      config=Config(s3={"addressing_style": "path"}, max_pool_connections=args.concurrency + 4))
    config = TransferConfig(max_concurrency=args.concurrency, multipart_chunksize=args.part_mb * MiB,
                            multipart_threshold=args.part_mb * MiB, use_threads=True)
    with TransferManager(s3, config) as manager:
        futures = [manager.download(args.bucket, key, local(args.dest, args.prefix, key))
                   for key in listing(s3, args.bucket, args.prefix)]
        for future in futures:
            future.result()


if __name__ == "__main__":
    main()
