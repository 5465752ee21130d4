//! The rsasl mechanisms the session runs, and how each [`Mechanism`] maps
//! to one.

use rsasl::mechanisms::{
    anonymous::ANONYMOUS, external::EXTERNAL, plain::PLAIN, scram::SCRAM_SHA256,
};
use rsasl::prelude::Registry;
use rsasl::registry::Mechanism as RsaslMechanism;

use super::Mechanism;
use super::cram_md5::CRAM_MD5;
use super::digest_md5::DIGEST_MD5;

/// Every mechanism wired, for both sides (rsasl takes a `'static` slice;
/// the exchange names the one it runs, so the order does not matter).
/// SCRAM-SHA-256-PLUS is left out on purpose: with it in the list,
/// rsasl's SCRAM server would insist on channel binding.
static MECHANISMS: &[RsaslMechanism] = &[
    ANONYMOUS,
    PLAIN,
    EXTERNAL,
    SCRAM_SHA256,
    // The custom mechanisms (`cram_md5.rs`, `digest_md5.rs`): rsasl has
    // neither.
    CRAM_MD5,
    DIGEST_MD5,
];

/// The registry of [`MECHANISMS`].
pub(super) fn registry() -> Registry {
    Registry::with_mechanisms(MECHANISMS)
}

/// rsasl's implementation of `mechanism`, if it is wired.
pub(super) fn mechanism(mechanism: Mechanism) -> Option<&'static RsaslMechanism> {
    let name = match mechanism {
        Mechanism::Anonymous => ANONYMOUS.mechanism,
        Mechanism::Plain => PLAIN.mechanism,
        Mechanism::External => EXTERNAL.mechanism,
        Mechanism::ScramSha256 => SCRAM_SHA256.mechanism,
        Mechanism::CramMd5 => CRAM_MD5.mechanism,
        Mechanism::DigestMd5 => DIGEST_MD5.mechanism,
    };
    MECHANISMS.iter().find(|m| m.mechanism == name)
}
