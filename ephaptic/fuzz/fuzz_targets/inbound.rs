//! The whole frame path of a server: one bounded answer at most (`ephaptic::__fuzz::Inbound`).
#![no_main]

use std::cell::RefCell;

use ephaptic::__fuzz::Inbound;

thread_local! {
    static SERVER: RefCell<Inbound> = RefCell::new(Inbound::new());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| SERVER.with(|s| s.borrow_mut().frame(data)));
