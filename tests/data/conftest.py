"""Fixtures of tests/data: the local S3 API (tests/data/s3_helpers.py)."""

from tests.data.s3_helpers import s3, s3_server  # noqa: F401 - fixtures
