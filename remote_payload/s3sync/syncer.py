"""One whole sync: connect, list, read the manifest, plan, check space, download, summarise."""

from __future__ import annotations

import os
import threading
import time

from .client import make_client
from .download import Downloader, RateLimiter
from .listing import RemoteObject, list_objects
from .manifest import Manifest
from .names import boot_id, parse_s3_uri
from .plan import Planner, check_space, extra_files


class Syncer:
    def __init__(self, args, reporter, creds: dict | None):
        self.args = args
        self.out = reporter
        self.bucket, self.prefix = parse_s3_uri(args.source)
        self.source = f"s3://{self.bucket}/{self.prefix}"
        self.dest = os.path.abspath(args.dest)
        self.endpoint = args.endpoint
        self.creds = creds
        self.client = None
        self.requests: dict[str, int] = {}
        self.count_lock = threading.Lock()
        self.warnings: list[str] = []
        self.manifest = Manifest(self.dest, self.source, self.endpoint, boot_id())
        self.t0 = time.monotonic()

    def _count(self, model, **_):
        with self.count_lock:
            self.requests[model.name] = self.requests.get(model.name, 0) + 1

    def connect(self) -> None:
        self.client = make_client(self.endpoint, self.args.region, self.creds, self.args.concurrency)
        self.client.meta.events.register("before-call.s3", self._count)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.out.event("warning", message=message)

    def head_part_size(self, obj: RemoteObject) -> int | None:
        """The first part's size of a multipart upload (HeadObject PartNumber=1), or None when the store
        does not tell."""
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=obj.key, PartNumber=1)
        except Exception:  # noqa: BLE001 - unknown part size: the file is downloaded instead of adopted
            return None
        size = int(resp.get("ContentLength") or 0)
        return size if 0 < size <= obj.size else None

    def run(self) -> dict:
        self.connect()
        objects = list_objects(self.client, self.bucket, self.prefix, self.endpoint, self.warn)
        self.manifest.load(self.warn)
        planner = Planner(self.dest, self.manifest, self.args.part_size, self.out, self.warn, self.head_part_size)
        todo, present = planner.plan(objects)
        totals = {"files": len(objects), "bytes": sum(o.size for o in objects),
                  "present_files": len(present), "present_bytes": sum(o.size for o in present)}
        need = check_space(self.dest, todo, skip=self.args.no_space_check)
        self.out.event("start", source=self.source, dest=self.dest, files=totals["files"], bytes=totals["bytes"],
                       download_files=len(todo), download_bytes=need, present_files=len(present),
                       resumed_files=sum(1 for t in todo if t.done), concurrency=self.args.concurrency,
                       part_size=self.args.part_size)
        downloader = Downloader(self.client, self.bucket, self.endpoint, self.dest, self.manifest, self.out,
                                self.warn, concurrency=self.args.concurrency,
                                limiter=RateLimiter(self.args.max_bandwidth) if self.args.max_bandwidth else None)
        result, dl_seconds = {"resumed_bytes": 0}, 0.0
        if self.args.dry_run:
            pass                          # nothing written
        elif todo:
            t_dl = time.monotonic()
            result = downloader.run(todo, totals)
            dl_seconds = time.monotonic() - t_dl
        else:
            self.manifest.save()
        seconds = time.monotonic() - self.t0
        extra = extra_files(self.dest, objects)
        if extra:
            self.warn(f"{len(extra)} local file(s) in {self.dest} are not in {self.source}: "
                      + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
        summary = {
            "ok": True, "source": self.source, "dest": self.dest, "endpoint": self.endpoint,
            "files": totals["files"], "bytes": totals["bytes"],
            "downloaded_files": 0 if self.args.dry_run else len(todo), "downloaded_bytes": downloader.bytes_done,
            "skipped_files": len(present), "skipped_bytes": totals["present_bytes"],
            "resumed_files": sum(1 for t in todo if t.resumed_parts), "resumed_bytes": result["resumed_bytes"],
            "to_download_files": len(todo), "to_download_bytes": need,
            "repaired": downloader.repaired, "warnings": self.warnings, "extra_local_files": extra,
            "seconds": round(seconds, 3), "download_seconds": round(dl_seconds, 3),
            "rate_mb_s": round(downloader.bytes_done / 1e6 / max(seconds, 1e-6), 1),
            "requests": dict(sorted(self.requests.items())), "manifest": self.manifest.path,
            "dry_run": bool(self.args.dry_run),
        }
        self.out.event("done", **summary)
        self.out.document(summary)
        return summary
