//! The README demo keeps working: it runs end to end in the lab and fails over.

use std::time::Duration;

use ferrolb_tests::{demo, lab};

#[test]
fn the_readme_demo_runs_and_fails_over() {
    if !lab::require_lab() {
        return;
    }
    // target/debug/deps/demo-HASH -> target/debug/ferrolb (built by `cargo build --workspace`).
    let ferrolb = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("ferrolb")))
        .expect("test binary path");
    assert!(
        ferrolb.exists(),
        "build it first: cargo build -p ferrolb-standalone ({})",
        ferrolb.display()
    );
    let mut out = Vec::new();
    let figures = demo::run(&ferrolb, &mut out)
        .unwrap_or_else(|e| panic!("demo failed: {e}\n{}", String::from_utf8_lossy(&out)));
    let text = String::from_utf8_lossy(&out);
    assert_eq!(figures.assigned.len(), 2, "{text}");
    assert_ne!(figures.owner, figures.survivor);
    assert_eq!(
        figures.bgp_next_hops.len(),
        2,
        "both nodes announce the BGP Service: {text}"
    );
    assert!(text.contains("BGP.community: (65000,100)"), "{text}");
    assert!(figures.failover < Duration::from_secs(5), "{text}");
    assert!(text.contains("again through"), "{text}");
}
