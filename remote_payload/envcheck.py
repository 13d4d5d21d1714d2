"""Which versions of the payload's packages a Python env has: `python -m remote_payload.envcheck torch peft ...`
prints {"torch": "2.13.0", ...} and exits 0, or names the missing package on stderr and exits 1.
Used by deploy to check an existing `python_env:` before a run is started with it."""

import json
import sys
from importlib import metadata


def main(argv=None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    versions, missing = {}, []
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        print(f"not installed in {sys.executable}: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(json.dumps(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
