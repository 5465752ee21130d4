#![no_main]

//! Calls `beep_proto::fuzzing::sasl_listener`; see its documentation for
//! the invariants checked (above all: nobody authenticates without the
//! application's consent).

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: beep_proto_fuzz::BoundedAlloc = beep_proto_fuzz::BoundedAlloc::new();

fuzz_target!(|data: &[u8]| beep_proto::fuzzing::sasl_listener(data));
