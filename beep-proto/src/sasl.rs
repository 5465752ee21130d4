//! The SASL family of profiles (RFC 3080 4.1): user authentication with
//! rsasl, driven in memory like TLS.

// Mechanisms rsasl lacks, written as rsasl custom mechanisms.
pub(crate) mod cram_md5;
pub(crate) mod digest_md5;
