//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the
//! entry points the fuzz targets call, so that `cargo test` on stable
//! exercises every target and keeps every seed and past finding passing.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use beep_proto::fuzzing;

/// The corpus files of `target`, sorted; panics if there are none.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| {
            path.is_file()
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files
}

/// Runs every corpus file of `target` through `entry`, naming the file
/// that fails.
fn replay(target: &str, entry: fn(&[u8])) {
    for path in corpus(target) {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| entry(&data))) {
            eprintln!("fuzz corpus file {} fails", path.display());
            resume_unwind(panic);
        }
    }
}

#[test]
fn frame_header_corpus() {
    replay("frame_header", fuzzing::frame_header);
}

#[test]
fn session_listener_corpus() {
    replay("session_listener", fuzzing::session_listener);
}

#[test]
fn session_initiator_corpus() {
    replay("session_initiator", fuzzing::session_initiator);
}

#[test]
fn channel_zero_xml_corpus() {
    replay("channel_zero_xml", fuzzing::channel_zero_xml);
}

#[test]
fn tls_after_proceed_corpus() {
    // The listener's certificate, generated here as the fuzz target does.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = cert.signing_key.serialize_pem();
    let server =
        beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), key.as_bytes()).unwrap();
    for path in corpus("tls_after_proceed") {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
            fuzzing::tls_after_proceed(&data, &server)
        })) {
            eprintln!("fuzz corpus file {} fails", path.display());
            resume_unwind(panic);
        }
    }
}

#[test]
fn sasl_listener_corpus() {
    replay("sasl_listener", fuzzing::sasl_listener);
}
