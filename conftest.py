"""Registers the fixtures of the real servers the tests use (an sshd and an S3 server on loopback)."""

from pathlib import Path

pytest_plugins = [p for p in ("tests.fixtures.sshd", "tests.fixtures.s3server")
                  if (Path(__file__).parent / (p.replace(".", "/") + ".py")).exists()]
