"""Extract a bundle tar from stdin into DEST, refusing anything that would escape DEST. Stdlib only.

    python3 -c "$(cat unpack.py)" DEST < bundle.tar

The controller sends this script as the -c argument (the bundle is not on the instance yet). Members
must be plain files or folders with relative paths inside DEST: no absolute paths, no `..`, no links
or devices. It extracts into DEST.partial and renames to DEST when complete, then marks it `.complete`.
"""

import os
import shutil
import sys
import tarfile

# Python >= 3.12 (and 3.8.17+/3.9.17+/3.10.12+/3.11.4+) vet members too; older ones rely on safe_members.
FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def safe_members(tar, dest):
    root = os.path.realpath(dest)
    for member in tar:
        name = member.name
        target = os.path.realpath(os.path.join(root, name))
        if name.startswith("/") or ".." in name.split("/") or not target.startswith(root + os.sep):
            raise SystemExit("refusing %r: it would land outside %s" % (name, dest))
        if not (member.isfile() or member.isdir()):
            raise SystemExit("refusing %r: only plain files and folders are allowed" % name)
        member.mode &= 0o755
        yield member


def main():
    dest = sys.argv[1]
    partial = dest + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
        for member in safe_members(tar, partial):
            tar.extract(member, partial, set_attrs=False, **FILTER)
            if member.isfile():
                os.chmod(os.path.join(partial, member.name), member.mode | 0o600)
    open(os.path.join(partial, ".complete"), "w").close()
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial, dest)
    print(dest)


if __name__ == "__main__":
    main()
