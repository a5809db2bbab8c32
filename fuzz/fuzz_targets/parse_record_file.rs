//! Fuzz target: see `sentiflow_jobs::fuzzcheck::records` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sentiflow_jobs::fuzzcheck::let_caught_panics_pass();
    sentiflow_jobs::fuzzcheck::records(data)
});
