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

/// A SCRAM `saslname` as the client meant it (RFC 5802 5.1): `=2C` is
/// `,` and `=3D` is `=`; any other `=` is malformed (`None`), and so is
/// an empty name. rsasl hands the names over still escaped.
pub(super) fn unescape_name(escaped: &str) -> Option<String> {
    if escaped.is_empty() {
        return None;
    }
    let mut name = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        name.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        name.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Some(name)
}

/// True when a SCRAM-SHA-256-PLUS client-first message binds to the one
/// type this server offers (RFC 5802 7: `p=tls-exporter` opens its GS2
/// header). rsasl's -PLUS server would take `n` or `y` (no binding) as
/// well: that is the stripped binding -PLUS exists to refuse.
pub(super) fn binds_to_tls_exporter(client_first: &[u8]) -> bool {
    client_first.starts_with(b"p=tls-exporter,")
}

/// True when every attribute of a SCRAM message has the `x=` shape of
/// RFC 5802 7 (`attr-val`), so rsasl 2.3.1's parsers can read it: they
/// slice each comma-separated part at 2 without looking at its length,
/// and panic on a shorter one (`n,,n`, a trailing comma, an authzid of
/// one octet). Every message from the peer passes here first; one that
/// does not is a failed exchange, never a panic. In a client-first
/// message (`client_first`) the GS2 header's two parts are the
/// exception: the channel-binding flag (`n`, `y`, `p=name`) and the
/// authzid, empty or `a=...`.
pub(super) fn attributes_well_formed(message: &[u8], client_first: bool) -> bool {
    let attribute = |part: &[u8]| part.len() >= 2 && part[1] == b'=';
    let mut parts = message.split(|&b| b == b',');
    if client_first {
        let flag_ok = parts
            .next()
            .is_some_and(|f| f == b"n" || f == b"y" || f.starts_with(b"p="));
        let authzid_ok = parts
            .next()
            .is_some_and(|a| a.is_empty() || a.starts_with(b"a="));
        if !(flag_ok && authzid_ok) {
            return false;
        }
    }
    parts.all(attribute)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What panicked rsasl 2.3.1's SCRAM parsers (found by the
    /// `sasl_listener` fuzz target) is refused before it reaches them.
    #[test]
    fn short_scram_attributes_never_reach_rsasl() {
        assert!(attributes_well_formed(b"n,,n=bob,r=abc", true));
        assert!(attributes_well_formed(
            b"p=tls-exporter,a=al,n=bob,r=abc,x=ext",
            true
        ));
        assert!(attributes_well_formed(b"c=biws,r=abc,p=AAAA", false));
        assert!(attributes_well_formed(b"v=AAAA", false));
        for bad in [
            &b"n,,n"[..],
            b"n,a,n=bob,r=x",
            b"n,,n=bob,r",
            b"n,,n=bob,r=x,",
            b"",
            b"x,,n=a,r=b",
        ] {
            assert!(
                !attributes_well_formed(bad, true),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"c=biws,r=abc,p=AAAA,"[..],
            b"c",
            b"",
            b"v",
            b"c=biws,,p=x",
        ] {
            assert!(
                !attributes_well_formed(bad, false),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// RFC 5802 5.1: the two escapes, and nothing else after `=`.
    #[test]
    fn rfc5802_5_1_saslnames_are_unescaped() {
        assert_eq!(unescape_name("bob").as_deref(), Some("bob"));
        assert_eq!(unescape_name("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(unescape_name("=3D=2C").as_deref(), Some("=,"));
        assert_eq!(unescape_name("ünï").as_deref(), Some("ünï"));
        for bad in ["", "a=", "a=2", "a=2c", "a=41", "a==3D", "a=ü"] {
            assert_eq!(unescape_name(bad), None, "{bad:?}");
        }
    }

    /// RFC 5802 7 / RFC 9266: only `p=tls-exporter` binds here.
    #[test]
    fn plus_needs_the_tls_exporter_flag() {
        assert!(binds_to_tls_exporter(b"p=tls-exporter,,n=bob,r=abc"));
        for stripped in [
            &b"n,,n=bob,r=abc"[..],
            b"y,,n=bob,r=abc",
            b"p=tls-unique,,n=bob,r=abc",
            b"p=tls-exporter",
        ] {
            assert!(!binds_to_tls_exporter(stripped));
        }
    }

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
