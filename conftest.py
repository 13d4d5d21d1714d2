"""Registers the shared fixtures: the real servers the tests use (an sshd and an S3 server on 127.0.0.1)
and the payload's tiny model and trained run."""

pytest_plugins = ["tests.fixtures.sshd", "tests.fixtures.s3server", "tests.conftest_payload", "tests.fixtures.validators",
                  "tests.conftest_serving", "tests.fixtures.payload_venv",
                  "tests.fixtures.classification_project"]
