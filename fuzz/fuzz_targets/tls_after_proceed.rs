#![no_main]

//! Calls `beep_proto::fuzzing::tls_after_proceed`; see its documentation
//! for the invariants checked. The listener's certificate is generated
//! once per fuzzing process (no private key is committed).

use std::sync::OnceLock;

use beep_proto::tls::TlsServer;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: beep_proto_fuzz::BoundedAlloc = beep_proto_fuzz::BoundedAlloc::new();

fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = cert.signing_key.serialize_pem();
        TlsServer::from_pem(cert.cert.pem().as_bytes(), key.as_bytes()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| beep_proto::fuzzing::tls_after_proceed(data, server()));
