//! Integration tests of keycard live in `tests/`.
