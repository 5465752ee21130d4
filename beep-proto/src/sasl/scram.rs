//! The SCRAM-SHA-256 server's secret (RFC 5802 3, RFC 7677): rsasl's
//! server asks for the stored key and server key of a user rather than
//! the password, so the session derives them from the password the
//! application gives.
//!
//! PBKDF2, HMAC and SHA-256 are the RustCrypto crates rsasl's own SCRAM
//! uses, so the build carries one implementation of each.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PBKDF2 iterations for the salted password: RFC 7677 4's minimum. The
/// salt is fresh for every exchange (the application holds passwords,
/// not salted ones), so there is no stored value to protect with more.
pub(super) const ITERATIONS: u32 = 4096;

/// What rsasl's SCRAM server wants for a user (`ScramStoredPassword`).
pub(super) struct ScramKeys {
    pub(super) salt: Vec<u8>,
    pub(super) iterations: u32,
    pub(super) stored_key: Vec<u8>,
    pub(super) server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys").finish_non_exhaustive()
    }
}

/// HMAC-SHA-256 of `message` under `key`; `None` never happens (HMAC
/// takes keys of any length) but is not unwrapped.
fn hmac(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().to_vec())
}

/// The keys of `password` with `salt` (RFC 5802 3): SaltedPassword =
/// PBKDF2-HMAC-SHA-256(password, salt, i), ClientKey and ServerKey its
/// HMACs of "Client Key" and "Server Key", StoredKey = SHA-256(ClientKey).
pub(super) fn derive(password: &[u8], salt: Vec<u8>, iterations: u32) -> Option<ScramKeys> {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key")?;
    let server_key = hmac(&salted, b"Server Key")?;
    let stored_key = Sha256::digest(&client_key).to_vec();
    Some(ScramKeys {
        salt,
        iterations,
        stored_key,
        server_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 3's example: user "user", password "pencil", salt
    /// `W22ZaJ0SNY7soEsUEjb6gQ==`, 4096 iterations; its ServerSignature
    /// `6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=` checks the server key
    /// and its proof `dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=` the
    /// client key, through the stored key.
    #[test]
    fn rfc7677_3_example_keys() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        let keys = derive(b"pencil", b64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096).unwrap();
        let hmac = |key: &[u8], m: &[u8]| hmac(key, m).unwrap();
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac(&keys.server_key, auth_message.as_bytes());
        assert_eq!(
            server_signature,
            b64("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
        let client_signature = hmac(&keys.stored_key, auth_message.as_bytes());
        let proof = b64("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored = Sha256::digest(&client_key);
        assert_eq!(&stored[..], &keys.stored_key[..]);
    }

    #[test]
    fn long_passwords_are_hashed_as_hmac_keys() {
        let long = vec![b'x'; 200];
        assert!(derive(&long, b"salt".to_vec(), 2).is_some());
    }
}
