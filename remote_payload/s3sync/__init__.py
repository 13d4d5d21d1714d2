"""Sync an S3 prefix into a local models directory: verified, resumable, fast, gzipped text repaired.

    python -m remote_payload.s3sync --source s3://bucket/prefix/ --dest DIR [--endpoint URL] [--region R]
                                    [--creds-stdin] [--progress-json | --json] [--dry-run] [--lock PATH]

Runs on the instance, inside the payload venv (botocore + the standard library; it never imports
`orchestrator`). The controller runs it from the deployed payload (`orchestrator/weights.py`).

What it guarantees:

* It is a sync. `DIR/.orch-weights.json` (the manifest) records, per file, the S3 key, size and ETag, the
  local size, mtime and (for files up to 64 MiB) sha256, and whether it was repaired. A file whose manifest
  entry matches the listing and whose size and mtime on disk match the entry is not read again: a re-run of
  a completed sync makes ONE listing request and no object reads. A file already present without a manifest
  entry (copied by hand, another tool) is adopted when its MD5 matches the ETag (for a multipart ETag, the
  part size comes from `HeadObject(PartNumber=1)`), instead of downloaded.
* Nothing truncated ever carries a real name: data goes to `NAME.orch-partial` and is renamed when
  complete. Large objects are fetched as parallel ranged GETs (`--part-size`, `--concurrency`), written in
  place with `pwrite`; the parts already on disk are recorded in the manifest about once a second, so an
  interrupted run (Ctrl-C, SIGTERM, SIGKILL, a dropped SSH session) resumes part by part. A reboot in
  between discards partial state (data not yet flushed may be lost) and re-checks files whose data might
  not have reached the disk.
* Gzip repair: a JSON or text file (by name) whose bytes start with the gzip magic `1f 8b`, whether or not
  S3 stores it with `Content-Encoding: gzip`, is decompressed after download and must then parse as JSON
  (`.json`) or decode as UTF-8; otherwise the sync fails naming the file. botocore never decodes
  `Content-Encoding: gzip` bodies itself, so the stored bytes always arrive as stored. Weights
  (`.safetensors`, `.bin`, ...) are never modified. Each repair is reported.
* Before downloading, free space in DIR is checked against what remains to download; a disk that fills up
  anyway (ENOSPC) removes the partial files and keeps every completed file.

Output: with `--progress-json`, one JSON object per line on stdout (`start`, `progress`, `file`, `repaired`,
`warning`, then `done` or `error`); with `--json`, one summary document at the end; otherwise short lines on
stderr for a person. Exit status: 0 done, 1 runtime failure (access denied, endpoint unreachable, disk full,
corrupt gzip JSON, ...), 2 bad input (bad URI, missing bucket, empty prefix, bad destination), 130 interrupted.

Credentials: the default botocore chain (the instance's role or profile), or with `--creds-stdin` one JSON
line on stdin `{"aws_access_key_id": ..., "aws_secret_access_key": ..., "aws_session_token": ...}`, held in
memory only: never written to disk, never printed.

The package, by noun: `names` (paths, sizes, URIs: what the sync calls things), `errors` (the failures and
how a botocore/OS exception becomes one), `client` (the botocore client and its fast body reader), `report`
(what is printed), `etag` (does a local file have this ETag?), `manifest` (the record on disk), `plan` (what
is current, adopted, resumed or to fetch), `repair` (gzipped text), `download` (ranged GETs into partial
files), `syncer` (one whole run), `cli` (arguments, locks, signals, exit status).
"""
