//! CRAM-MD5 (RFC 2195) as an rsasl mechanism.
