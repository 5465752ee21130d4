//! TLS across drivers: a beep-tokio initiator with a beep-blocking
//! listener and the other way round (RFC 3080 3.1).

mod tls_support;

use tls_support::Pki;

/// The test PKI itself: a leaf loads as a listener certificate, a client
/// trusts its CA, and a stranger's CA has another name.
#[test]
fn test_certificates_load() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
    let _server = leaf.server();
    assert_eq!(pki.client("localhost").server_name(), "localhost");
    assert_ne!(Pki::new().ca_pem, pki.ca_pem);
}
