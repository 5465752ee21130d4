//! Cross-crate integration tests of beep-rs: drivers talking to each other
//! over real loopback sockets. The tests are in `tests/`.
