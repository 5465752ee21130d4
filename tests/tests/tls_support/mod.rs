//! Certificates for the TLS tests, generated at test time (no private key
//! is committed): a CA of its own for each [`Pki`], and leaves it signed.

#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicUsize, Ordering};

use beep_proto::tls::{TlsClient, TlsServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and what it signed.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate: its chain, key and DER (to compare with what a
/// peer presented).
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    /// A new CA, named apart from every other one of this run (a
    /// stranger's CA must not look like ours).
    pub fn new() -> Self {
        static CAS: AtomicUsize = AtomicUsize::new(0);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let n = CAS.fetch_add(1, Ordering::Relaxed);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("beep-rs test CA {n}"));
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names or IP addresses).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        Leaf {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client that trusts this CA and asks for `name`.
    pub fn client(&self, name: &str) -> TlsClient {
        TlsClient::with_ca_pem(self.ca_pem.as_bytes(), name).unwrap()
    }
}

impl Leaf {
    /// The listener side of this certificate.
    pub fn server(&self) -> TlsServer {
        TlsServer::from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}
