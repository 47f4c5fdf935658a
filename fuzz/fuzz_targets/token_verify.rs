#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_bridge_fuzz::token_verify(data));
