#![no_main]

//! Calls `beep_proto::fuzzing::channel_zero_xml`; see its documentation for the
//! invariants checked.

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: beep_proto_fuzz::BoundedAlloc = beep_proto_fuzz::BoundedAlloc::new();

fuzz_target!(|data: &[u8]| beep_proto::fuzzing::channel_zero_xml(data));
