use std::net::{Ipv4Addr, SocketAddr};

use super::*;

#[test]
fn hmac_matches_rfc4231_case_2() {
    let mac = hmac(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // A key longer than the block is hashed first (RFC 4231 case 6).
    let mac = hmac(
        &[0xaa; 131],
        b"Test Using Larger Than Block-Size Key - Hash Key First",
    );
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn sealed_datagrams_open_only_intact_and_with_the_key() {
    let sealed = seal(b"k1", b"hello");
    assert_eq!(sealed.len(), 5 + MAC_LEN);
    assert_eq!(open(b"k1", &sealed), Some(&b"hello"[..]));
    assert_eq!(open(b"k2", &sealed), None);
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x80;
        assert_eq!(open(b"k1", &bad), None, "byte {i}");
    }
    assert_eq!(open(b"k1", &sealed[..MAC_LEN - 1]), None);
    assert_eq!(open(b"k1", &[]), None);
}

fn config(name: &str, seeds: Vec<SocketAddr>, secret: &[u8]) -> MembershipConfig {
    MembershipConfig {
        name: name.into(),
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        seeds,
        secret: secret.to_vec(),
        timing: Timing::default(),
        cluster_size: 3,
    }
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Polls `m.live()` until it equals `want`, at most `within`; returns how long it took.
fn wait_live(m: &Membership, want: &BTreeSet<String>, within: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if &m.live() == want {
            return start.elapsed();
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "{}: live {:?}, want {want:?} within {within:?}",
        m.me().name,
        m.live()
    );
}

#[test]
fn members_join_detect_a_crash_fast_and_see_a_leave_at_once() {
    let a = Membership::start(config("a", vec![], b"secret")).unwrap();
    let seed = vec![a.me().addr];
    let b = Membership::start(config("b", seed.clone(), b"secret")).unwrap();
    let c = Membership::start(config("c", seed, b"secret")).unwrap();
    let all = names(&["a", "b", "c"]);
    for m in [&a, &b, &c] {
        wait_live(m, &all, Duration::from_secs(3));
    }
    // c crashes: no goodbye. Detection must be well under a second.
    c.stop();
    let ab = names(&["a", "b"]);
    let took = wait_live(&a, &ab, Duration::from_secs(2));
    wait_live(&b, &ab, Duration::from_secs(2));
    assert!(
        took < Duration::from_millis(900),
        "crash detected after {took:?}"
    );
    // b leaves gracefully: a knows at once (no failure detector involved).
    b.leave();
    let took = wait_live(&a, &names(&["a"]), Duration::from_secs(2));
    assert!(
        took < Duration::from_millis(150),
        "leave seen after {took:?}"
    );
    assert_eq!(a.stats().rejected, 0);
}

#[test]
fn a_speaker_without_the_secret_cannot_join() {
    let a = Membership::start(config("a", vec![], b"right")).unwrap();
    let intruder = Membership::start(config("x", vec![a.me().addr], b"wrong")).unwrap();
    thread::sleep(Duration::from_millis(800));
    assert_eq!(a.live(), names(&["a"]));
    assert_eq!(intruder.live(), names(&["x"]));
    assert!(a.stats().rejected > 0, "{:?}", a.stats());
}

#[test]
fn a_restarted_speaker_rejoins() {
    let a = Membership::start(config("a", vec![], b"s")).unwrap();
    let b = Membership::start(config("b", vec![a.me().addr], b"s")).unwrap();
    wait_live(&a, &names(&["a", "b"]), Duration::from_secs(3));
    b.stop();
    wait_live(&a, &names(&["a"]), Duration::from_secs(2));
    thread::sleep(Duration::from_millis(5));
    let b2 = Membership::start(config("b", vec![a.me().addr], b"s")).unwrap();
    wait_live(&a, &names(&["a", "b"]), Duration::from_secs(3));
    wait_live(&b2, &names(&["a", "b"]), Duration::from_secs(3));
}

#[test]
fn bad_timers_are_refused() {
    let mut c = config("a", vec![], b"s");
    c.timing.probe_rtt = c.timing.probe_period;
    assert!(matches!(
        Membership::start(c),
        Err(MembershipError::Config(_))
    ));
    assert!(matches!(
        Membership::start(config("a", vec![], b"")),
        Err(MembershipError::NoSecret)
    ));
}
