//! Argument binding against rmp_serde alone (`ephaptic::__fuzz::bind`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ephaptic::__fuzz::bind(data));
