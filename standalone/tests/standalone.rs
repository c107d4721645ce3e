//! Standalone mode: live reload, restart without moves, a corrupt state file, malformed YAML,
//! and two hosts agreeing, through the library and through the `ferrolb` binary.

use std::path::Path;
use std::process::Command;

use ferrolb_allocator::{ServiceKey, StalePolicy};
use ferrolb_standalone::config_dir::ConfigDir;
use ferrolb_standalone::engine::Engine;
use ferrolb_standalone::state::{self, StateError};

const POOL: &str = "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lab}\nspec: {addresses: [10.0.0.200-10.0.0.203]}\n";

fn svc(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
    // Modification times can be coarse: make each write distinct by size as well as time.
    std::thread::sleep(std::time::Duration::from_millis(20));
}

fn ip_of(step: &ferrolb_standalone::engine::Step, name: &str) -> Option<String> {
    step.assigned
        .get(&ServiceKey::new("default", name))
        .map(|a| a.ips[0].to_string())
}

fn shared(name: &str, key: &str, port: u16) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, annotations: {{ferrolb.io/allow-shared-ip: {key}}}}}\nspec: {{type: LoadBalancer, ports: [{{port: {port}}}]}}\n"
    )
}

/// MetalLB drop-in (issue 13, class 1): two Services share an address; one changes its
/// sharing key. The one nobody edited keeps the address; the edited one moves. Before, the
/// allocator was rebuilt each scan and re-claimed in name order, so an edited `a` took the
/// address from an untouched `b`.
#[test]
fn an_edit_never_takes_an_address_from_a_service_nobody_edited() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pool.yaml", POOL);
    write(dir.path(), "a.yaml", &shared("a", "share", 80));
    write(dir.path(), "b.yaml", &shared("b", "share", 443));
    let mut config = ConfigDir::new(dir.path());
    let mut engine = Engine::new(StalePolicy::Keep);
    let step = engine.step(&config.scan().unwrap().objects, &Default::default());
    assert_eq!(ip_of(&step, "a").as_deref(), Some("10.0.0.200"));
    assert_eq!(ip_of(&step, "b").as_deref(), Some("10.0.0.200"), "shared");
    write(dir.path(), "a.yaml", &shared("a", "other", 80));
    let step = engine.step(&config.scan().unwrap().objects, &step.state);
    assert_eq!(
        ip_of(&step, "b").as_deref(),
        Some("10.0.0.200"),
        "b was not edited: it keeps its address"
    );
    assert_eq!(ip_of(&step, "a").as_deref(), Some("10.0.0.201"), "a moved");
}

#[test]
fn live_reload_picks_up_new_services_and_pool_edits() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pool.yaml", POOL);
    write(dir.path(), "web.yaml", &svc("web"));
    let mut config = ConfigDir::new(dir.path());
    let mut engine = Engine::new(StalePolicy::Keep);
    let scan = config.scan().unwrap();
    assert!(scan.changed && scan.errors.is_empty());
    let step = engine.step(&scan.objects, &Default::default());
    assert_eq!(ip_of(&step, "web").as_deref(), Some("10.0.0.200"));
    let held = step.state;

    assert!(
        !config.scan().unwrap().changed,
        "nothing changed, nothing to do"
    );
    write(dir.path(), "db.yaml", &svc("db"));
    let scan = config.scan().unwrap();
    assert!(scan.changed);
    let step = engine.step(&scan.objects, &held);
    assert_eq!(
        ip_of(&step, "web").as_deref(),
        Some("10.0.0.200"),
        "web keeps its address"
    );
    assert_eq!(ip_of(&step, "db").as_deref(), Some("10.0.0.201"));

    // Shrinking the pool to one address: the held ones stay (stale policy keep), nobody new fits.
    write(
        dir.path(),
        "pool.yaml",
        &POOL.replace("10.0.0.200-10.0.0.203", "10.0.0.200/32"),
    );
    write(dir.path(), "cache.yaml", &svc("cache"));
    let held = step.state;
    let step = engine.step(&config.scan().unwrap().objects, &held);
    assert_eq!(ip_of(&step, "web").as_deref(), Some("10.0.0.200"));
    assert!(
        step.assigned[&ServiceKey::new("default", "db")].stale.len() == 1,
        "db's address is kept and reported stale"
    );
    let refusal = step
        .refused
        .get(&ServiceKey::new("default", "cache"))
        .expect("cache waits")
        .to_string();
    assert!(refusal.contains("pool lab"), "{refusal}");
}

#[test]
fn restart_from_the_state_file_moves_no_address() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state/state.json");
    std::fs::create_dir_all(state_file.parent().unwrap()).unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    write(&conf, "pool.yaml", POOL);
    write(&conf, "svcs.yaml", &(svc("m") + &svc("n")));
    let step = Engine::new(StalePolicy::Keep).step(
        &ConfigDir::new(&conf).scan().unwrap().objects,
        &Default::default(),
    );
    assert_eq!(
        (ip_of(&step, "m").as_deref(), ip_of(&step, "n").as_deref()),
        (Some("10.0.0.200"), Some("10.0.0.201"))
    );
    state::save(&state_file, &step.state).unwrap();

    // While stopped: m is deleted, and two Services that sort first appear.
    write(&conf, "svcs.yaml", &(svc("a") + &svc("b") + &svc("n")));
    let loaded = state::load(&state_file);
    assert!(loaded.warnings.is_empty());
    let step = Engine::new(StalePolicy::Keep).step(
        &ConfigDir::new(&conf).scan().unwrap().objects,
        &loaded.state,
    );
    assert_eq!(
        ip_of(&step, "n").as_deref(),
        Some("10.0.0.201"),
        "n keeps its address across the restart"
    );
    let mut new: Vec<String> = ["a", "b"].iter().filter_map(|s| ip_of(&step, s)).collect();
    new.sort();
    assert_eq!(new, ["10.0.0.200", "10.0.0.202"]);
}

#[test]
fn a_corrupt_or_unreadable_state_file_is_named_and_the_previous_state_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let mut first = state::State {
        version: state::VERSION,
        ..Default::default()
    };
    first.services.insert(
        "default/web".into(),
        state::Held {
            pool: "lab".into(),
            ips: vec!["10.0.0.200".parse().unwrap()],
        },
    );
    state::save(&file, &first).unwrap();
    let mut second = first.clone();
    second.services.insert(
        "default/db".into(),
        state::Held {
            pool: "lab".into(),
            ips: vec!["10.0.0.201".parse().unwrap()],
        },
    );
    state::save(&file, &second).unwrap();
    assert_eq!(state::load(&file).state, second);

    std::fs::write(&file, b"{\"version\": 1, \"services\": {\"default/web\": ").unwrap();
    let loaded = state::load(&file);
    assert_eq!(loaded.state, first, "falls back to the previous good state");
    assert!(
        matches!(&loaded.warnings[..], [StateError::Corrupt { file: f, .. }] if f == &file),
        "{:?}",
        loaded.warnings
    );
    assert!(
        loaded.warnings[0]
            .to_string()
            .contains("state.json is corrupt")
    );
    assert!(
        std::fs::read(&file)
            .unwrap()
            .starts_with(b"{\"version\": 1"),
        "the bad file is left for inspection"
    );

    // A later save replaces the bad file and keeps `.prev` good.
    state::save(&file, &second).unwrap();
    assert_eq!(state::load(&file).state, second);
    assert!(state::load(&file).warnings.is_empty());

    // Unreadable: a directory where the file should be.
    let odd = dir.path().join("odd.json");
    std::fs::create_dir(&odd).unwrap();
    let loaded = state::load(&odd);
    assert!(
        matches!(&loaded.warnings[..], [StateError::Io { .. }]),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.state.services.is_empty());

    // Another version is refused, not guessed at.
    std::fs::write(&file, b"{\"version\": 99, \"services\": {}}").unwrap();
    std::fs::remove_file(dir.path().join("state.json.prev")).unwrap();
    let loaded = state::load(&file);
    assert!(
        loaded.warnings[0].to_string().contains("version 99"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn malformed_yaml_is_named_and_disturbs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pool.yaml", POOL);
    write(dir.path(), "web.yaml", &svc("web"));
    let mut config = ConfigDir::new(dir.path());
    let mut engine = Engine::new(StalePolicy::Keep);
    let step = engine.step(&config.scan().unwrap().objects, &Default::default());
    let held = step.state;

    write(
        dir.path(),
        "web.yaml",
        &(svc("web") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: [broken\n"),
    );
    write(dir.path(), "db.yaml", &svc("db"));
    let scan = config.scan().unwrap();
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    let message = scan.errors[0].to_string();
    assert!(
        message.contains("web.yaml") && message.contains("document 1"),
        "{message}"
    );
    let step = engine.step(&scan.objects, &held);
    assert_eq!(
        ip_of(&step, "web").as_deref(),
        Some("10.0.0.200"),
        "web.yaml's last good content stays"
    );
    assert_eq!(
        ip_of(&step, "db").as_deref(),
        Some("10.0.0.201"),
        "the other files still apply"
    );

    // An invalid (but well-formed) edit of the pool keeps its last accepted version.
    write(
        dir.path(),
        "pool.yaml",
        &POOL.replace("10.0.0.200-10.0.0.203", "10.0.0.203-10.0.0.200"),
    );
    let step = engine.step(&config.scan().unwrap().objects, &step.state);
    let errors = step.verdicts.errors.to_string();
    assert!(
        errors.contains("IPAddressPool lab") && errors.contains("is after its end"),
        "{errors}"
    );
    assert_eq!(step.verdicts.kept.len(), 1, "{:?}", step.verdicts.kept);
    assert_eq!(ip_of(&step, "db").as_deref(), Some("10.0.0.201"));
}

fn run_once(conf: &Path, state_file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["standalone", "--once", "--config"])
        .arg(conf)
        .arg("--state")
        .arg(state_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_binary_assigns_persists_and_two_hosts_agree() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    write(&conf, "pool.yaml", POOL);
    write(
        &conf,
        "svcs.yaml",
        &(svc("web") + &svc("db") + &svc("cache")),
    );
    let host_a = run_once(&conf, &dir.path().join("a.json"));
    let host_b = run_once(&conf, &dir.path().join("b.json"));
    assert!(
        host_a.contains("assigned default/web 10.0.0.202 (pool lab)"),
        "{host_a}"
    );
    assert_eq!(host_a, host_b, "hosts reading the same directory agree");
    assert_eq!(
        std::fs::read(dir.path().join("a.json")).unwrap(),
        std::fs::read(dir.path().join("b.json")).unwrap()
    );
    // Running again changes nothing.
    assert_eq!(run_once(&conf, &dir.path().join("a.json")), host_a);
}

#[test]
fn the_running_binary_reloads_edits_live() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    write(&conf, "pool.yaml", POOL);
    write(&conf, "web.yaml", &svc("web"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["standalone", "--interval-ms", "100", "--config"])
        .arg(&conf)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_line = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(want) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    let first = wait_line("assigned default/web 10.0.0.200");
    write(&conf, "db.yaml", &svc("db"));
    let second = first && wait_line("assigned default/db 10.0.0.201");
    let _ = child.kill();
    let _ = child.wait();
    assert!(first, "the first assignment was printed");
    assert!(second, "the edit was picked up while running");
}

/// Issue 13, class 2, across a restart: the state file keeps each config object's last
/// accepted spec, so a pool file broken while the host was down keeps its last version in
/// force after the restart, and its Services keep their addresses (files have no status).
#[test]
fn a_pool_broken_while_down_keeps_its_last_version_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pool.yaml", POOL);
    write(dir.path(), "svcs.yaml", &(svc("web") + &svc("db")));
    let mut config = ConfigDir::new(dir.path());
    let mut engine = Engine::new(StalePolicy::Keep);
    let step = engine.step(&config.scan().unwrap().objects, &state::State::default());
    // Key order: db first.
    assert_eq!(ip_of(&step, "db").as_deref(), Some("10.0.0.200"));
    assert_eq!(
        step.state.accepted.get("IPAddressPool/lab"),
        Some(&serde_json::json!({"addresses": ["10.0.0.200-10.0.0.203"]}))
    );
    // The state goes through its file, as across a restart.
    let file = dir.path().join("state.json");
    state::save(&file, &step.state).unwrap();
    let saved = state::load(&file).state;

    // Down; the pool file is broken; a new process starts.
    write(
        dir.path(),
        "pool.yaml",
        &POOL.replace("10.0.0.200-10.0.0.203", "10.0.0.203-10.0.0.200"),
    );
    let mut engine = Engine::new(StalePolicy::Keep);
    let step = engine.step(&config.scan().unwrap().objects, &saved);
    assert_eq!(step.verdicts.kept.len(), 1, "{:?}", step.verdicts);
    assert!(engine.config().is_some_and(|c| c.pools.contains_key("lab")));
    assert!(
        step.assigned.values().all(|a| a.stale.is_empty()),
        "{:?}",
        step.assigned
    );
    assert_eq!(ip_of(&step, "db").as_deref(), Some("10.0.0.200"));
    assert_eq!(ip_of(&step, "web").as_deref(), Some("10.0.0.201"));
    assert!(step.refused.is_empty(), "{:?}", step.refused);
}

/// `ferrolb explain` against a standalone directory: the host's assignment (from the state
/// file) and why, a pending Service, a stale address after a pool edit, and JSON.
#[test]
fn explain_answers_from_the_directory_and_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let state_file = dir.path().join("state.json");
    std::fs::create_dir_all(&conf).unwrap();
    write(&conf, "pool.yaml", POOL);
    let lost = "---\napiVersion: v1\nkind: Service\nmetadata: {name: lost, annotations: {ferrolb.io/address-pool: nowhere}}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
    write(&conf, "svcs.yaml", &(svc("web") + lost));
    run_once(&conf, &state_file);
    let explain = |service: &str, json: bool| -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrolb"));
        cmd.args(["explain", service, "--config"])
            .arg(&conf)
            .arg("--state")
            .arg(&state_file);
        if json {
            cmd.args(["-o", "json"]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let web = explain("web", false);
    assert!(web.starts_with("Service default/web: "), "{web}");
    assert!(web.contains("Addresses:  10.0.0.200"), "{web}");
    assert!(web.contains("pool lab comes first"), "{web}");
    let lost: serde_json::Value = serde_json::from_str(&explain("default/lost", true)).unwrap();
    assert_eq!(lost["verdict"], "pending");
    assert!(
        lost["pendingReason"].as_str().unwrap().contains("nowhere"),
        "{lost}"
    );
    // The pool moves: web keeps 10.0.0.200 (stale policy keep), and explain says it is stale.
    write(
        &conf,
        "pool.yaml",
        "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lab}\nspec: {addresses: [10.0.1.0/30]}\n",
    );
    let web: serde_json::Value = serde_json::from_str(&explain("web", true)).unwrap();
    assert_eq!(web["verdict"], "stale", "{web}");
    assert_eq!(web["addresses"][0], "10.0.0.200");
    // An unknown Service is an error naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["explain", "nope", "--config"])
        .arg(&conf)
        .arg("--state")
        .arg(&state_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Service default/nope"));
}
