//! DIGEST-MD5 (RFC 2831) as an rsasl mechanism, authentication only.
