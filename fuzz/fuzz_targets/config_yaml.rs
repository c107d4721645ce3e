//! Config files (standalone mode reads them from disk): any text through the YAML reader and
//! the config model never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(docs) = ferrolb_config::parse_documents(text)
    {
        let _ = ferrolb_config::build(&docs.config);
        // The model over time: each object refused on its own, rounds bounded.
        let mut model = ferrolb_config::LastGood::default();
        let _ = model.build(&docs.config);
        let _ = model.build(&docs.config);
    }
});
