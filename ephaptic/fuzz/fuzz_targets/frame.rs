//! The frame reader against a second reading with rmpv (`ephaptic::__fuzz::frame`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ephaptic::__fuzz::frame(data));
