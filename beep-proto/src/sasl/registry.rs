//! The rsasl mechanisms the session runs, and how each [`Mechanism`] maps
//! to one.

use rsasl::mechanisms::{
    anonymous::ANONYMOUS,
    external::EXTERNAL,
    plain::PLAIN,
    scram::{SCRAM_SHA256, SCRAM_SHA256_PLUS},
};
use rsasl::prelude::Registry;
use rsasl::registry::Mechanism as RsaslMechanism;

use super::Mechanism;
use super::cram_md5::CRAM_MD5;
use super::digest_md5::DIGEST_MD5;

/// Every mechanism wired but SCRAM-SHA-256-PLUS, for both sides (rsasl
/// takes a `'static` slice; the exchange names the one it runs, so the
/// order does not matter).
static WITHOUT_BINDING: &[RsaslMechanism] = &[
    ANONYMOUS,
    PLAIN,
    EXTERNAL,
    SCRAM_SHA256,
    // The custom mechanisms (`cram_md5.rs`, `digest_md5.rs`): rsasl has
    // neither.
    CRAM_MD5,
    DIGEST_MD5,
];

/// The same with SCRAM-SHA-256-PLUS. Which one a server runs with
/// matters: rsasl's SCRAM-SHA-256 server refuses a client that says "I
/// could bind but you do not offer it" (`y`, RFC 5802 6) exactly when
/// -PLUS is in its registry, which detects a stripped -PLUS offer. So a
/// server has it only when this session offered -PLUS.
static WITH_BINDING: &[RsaslMechanism] = &[
    ANONYMOUS,
    PLAIN,
    EXTERNAL,
    SCRAM_SHA256,
    SCRAM_SHA256_PLUS,
    CRAM_MD5,
    DIGEST_MD5,
];

/// The registry: with SCRAM-SHA-256-PLUS when `binding` (see
/// [`WITH_BINDING`]).
pub(super) fn registry(binding: bool) -> Registry {
    Registry::with_mechanisms(if binding {
        WITH_BINDING
    } else {
        WITHOUT_BINDING
    })
}

/// rsasl's implementation of `mechanism`, if it is wired.
pub(super) fn mechanism(mechanism: Mechanism) -> Option<&'static RsaslMechanism> {
    let name = match mechanism {
        Mechanism::Anonymous => ANONYMOUS.mechanism,
        Mechanism::Plain => PLAIN.mechanism,
        Mechanism::External => EXTERNAL.mechanism,
        Mechanism::ScramSha256 => SCRAM_SHA256.mechanism,
        Mechanism::ScramSha256Plus => SCRAM_SHA256_PLUS.mechanism,
        Mechanism::CramMd5 => CRAM_MD5.mechanism,
        Mechanism::DigestMd5 => DIGEST_MD5.mechanism,
    };
    WITH_BINDING.iter().find(|m| m.mechanism == name)
}
