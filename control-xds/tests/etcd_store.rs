//! The etcd store against a real etcd (Debian's `etcd-server`, which
//! `scripts/install-envoy.sh` installs): two control planes on one etcd never
//! lose a change, tokens made on one are known to the other, a document above
//! etcd's request limit is refused, and etcd down is "unavailable".

#[allow(dead_code)] // only free_port is used here
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::auth::{Role, Tokens};
use switchyard::etcd::{Etcd, EtcdUrl};
use switchyard::serve::{ChangeError, ControlPlane};
use switchyard::snapshot_builder::BuildOptions;
use switchyard::state::{generate_context_key, ReleaseRecord, Store};
use switchyard::state_store::{BackendError, Commit, EtcdBackend, StateBackend};
use switchyard::xds::SnapshotCache;

/// One etcd member on loopback ports with a temporary data directory; killed
/// (and its directory removed) when dropped.
struct EtcdServer {
    child: Option<Child>,
    dir: std::path::PathBuf,
    client_port: u16,
}

impl EtcdServer {
    fn start(tag: &str) -> Self {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("etcd not found: run scripts/install-envoy.sh (installs etcd-server)");
        let dir =
            std::env::temp_dir().join(format!("switchyard-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (client_port, peer_port) = (common::free_port(), common::free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(bin)
            .args(["--name", "m0", "--data-dir"])
            .arg(&dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("m0={peer}")])
            .args(["--log-level", "error", "--logger", "zap"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        Self {
            child: Some(child),
            dir,
            client_port,
        }
    }

    fn url(&self, prefix: &str) -> EtcdUrl {
        format!("etcd://127.0.0.1:{}/{prefix}", self.client_port)
            .parse()
            .unwrap()
    }

    /// A connection once etcd answers.
    fn connect(&self, prefix: &str) -> Etcd {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let etcd = Etcd::connect(&self.url(prefix)).unwrap();
            if etcd.get("probe").is_ok() {
                return etcd;
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn build_opts() -> BuildOptions {
    BuildOptions {
        wasm_path: "/filter.wasm".into(),
        native_path: None,
        genesis_listen: ("127.0.0.1".into(), 8080),
        internal_listen: None,
        context_keys: Vec::new(),
    }
}

/// The hello-world resources with a context key.
fn hello_world() -> Store {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hello-world/resources.yaml"
    ));
    let docs = switchyard::load::load_path(path).unwrap();
    let (mut store, _) = Store::new().apply(&docs, "test").unwrap();
    store.context_keys = vec![generate_context_key("k1").unwrap()];
    store
}

/// A control plane on `etcd`, from the state there (created by the first).
fn plane(etcd: &Etcd) -> ControlPlane {
    let backend = Arc::new(EtcdBackend { etcd: etcd.clone() });
    let (store, revision) = match backend.load().unwrap() {
        Some(saved) => saved,
        None => {
            let store = hello_world();
            match backend.commit(&store, 0).unwrap() {
                Commit::Done(rev) => (store, rev),
                Commit::Conflict(saved) => saved.unwrap(),
            }
        }
    };
    ControlPlane::start_on(store, revision, SnapshotCache::new(), build_opts(), backend).unwrap()
}

#[test]
fn two_control_planes_releasing_at_once_lose_nothing() {
    let server = EtcdServer::start("race");
    let etcd = server.connect("race");
    let (a, b) = (Arc::new(plane(&etcd)), Arc::new(plane(&etcd)));
    let deployments = ["hello-world-v2", "hello-world-v3", "hello-world-main"];
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let p = if i % 2 == 0 { a.clone() } else { b.clone() };
            let dep = deployments[i % 3];
            std::thread::spawn(move || {
                p.change(|s| s.release(dep, "team-a", "t"))
                    .map(|(summary, _)| summary.releases)
            })
        })
        .collect();
    let mut recorded: Vec<ReleaseRecord> = Vec::new();
    for t in threads {
        recorded.extend(t.join().unwrap().expect("every release is made"));
    }
    let (saved, _) = EtcdBackend { etcd: etcd.clone() }.load().unwrap().unwrap();
    let history = saved.history_of(Some("team-a"));
    // none lost, none twice
    let mut ids: Vec<_> = recorded.iter().map(|r| r.id.clone()).collect();
    let mut saved_ids: Vec<_> = history
        .iter()
        .filter(|r| r.action == "release")
        .map(|r| r.id.clone())
        .collect();
    ids.sort();
    saved_ids.sort();
    assert_eq!(ids, saved_ids);
    // linear: each release follows the one before
    for w in history.windows(2) {
        assert_eq!(w[1].previous, w[0].deployment, "{w:?}");
    }
    // one generation per recorded change, and both planes can serve the last
    assert_eq!(saved.generation, 1 + recorded.len() as u64);
    for p in [&a, &b] {
        p.adopt(saved.clone(), 0).unwrap();
        assert_eq!(p.store(), saved);
    }
}

#[test]
fn a_token_made_through_one_replica_works_on_the_other() {
    let server = EtcdServer::start("tokens");
    let etcd = server.connect("tokens");
    let (a, admin) = Tokens::open_etcd(&etcd).unwrap();
    let (b, none) = Tokens::open_etcd(&etcd).unwrap();
    assert!(admin.is_some() && none.is_none());
    assert_eq!(
        b.verify(admin.as_deref().unwrap()).unwrap().role,
        Role::Admin
    );
    let token = a.create("ci", Role::Release).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.verify(&token).is_none() {
        assert!(
            Instant::now() < deadline,
            "the token never reached the other replica"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // both change the tokens: neither change is lost
    b.create("ops", Role::Read).unwrap();
    a.revoke("ci").unwrap();
    let names = |t: &Tokens| {
        let mut n: Vec<String> = t
            .list()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(&b) != ["admin", "ops"] {
        assert!(Instant::now() < deadline, "{:?}", names(&b));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(names(&a), ["admin", "ops"]);
}

#[test]
fn a_document_above_etcds_limit_is_refused_and_etcd_down_is_unavailable() {
    let mut server = EtcdServer::start("limits");
    let etcd = server.connect("limits");
    let p = plane(&etcd);
    let mut big = p.store();
    let record = big.history[0].clone();
    big.history = vec![record; 10_000];
    let too_large = EtcdBackend { etcd: etcd.clone() }.commit(&big, 0);
    assert!(
        matches!(&too_large, Err(BackendError::TooLarge(m)) if m.contains("etcd accepts at most")),
        "{too_large:?}"
    );

    server.kill();
    let t0 = Instant::now();
    let r = p.change_as("c-down", |s| s.release("hello-world-v2", "team-a", "t"));
    // the write failed and etcd cannot be asked whether it was made: no
    // "nothing changed", but "unknown", with the change's id
    assert!(
        matches!(&r, Err(ChangeError::OutcomeUnknown { change, .. }) if change == "c-down"),
        "{r:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    // the last store stays served
    assert_eq!(p.store().generation, 1);
}
