//! The etcd side of `serve --store etcd://HOST:PORT[,HOST:PORT…]/PREFIX`: one
//! connection to an etcd cluster and the few things Switchyard does with it.
//!
//! Keys (all under `PREFIX/`):
//! - `state`: the whole persisted state document (the JSON of
//!   [`crate::persist`], written compact) — resources, releases, history,
//!   context keys, canary rollouts;
//! - `tokens`: the API tokens' hashes ([`crate::auth`]);
//! - `leader`: the id of the replica that runs singleton work, attached to
//!   its lease;
//! - `replicas/ID`: each replica's address and connected Envoys, attached to
//!   its lease (gone a few seconds after the replica dies).
//!
//! A document is written by a transaction guarded by the revision it was read
//! at ([`Etcd::commit`]: `mod_revision == read`, or `create_revision == 0` for
//! a new key); a lost race returns the current document to retry from. So two
//! replicas changing the state at once never lose an update.
//!
//! etcd refuses requests above its `--max-request-bytes` (1.5 MiB by
//! default); a document above [`MAX_DOCUMENT_BYTES`] is refused here with a
//! clear error rather than by etcd.
//!
//! The client runs on its own single-threaded Tokio runtime: the control
//! plane's changes are synchronous (they build snapshots), and can call etcd
//! from any thread ([`Etcd::get`], [`Etcd::commit`] block for at most
//! the store's timeout, [`OP_TIMEOUT`] unless `?timeout=` says otherwise). The background loops (watches, the session) reconnect by
//! themselves when etcd comes back.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;

mod url;

/// etcd's default `--max-request-bytes` is 1.5 MiB (1,572,864 bytes); a state
/// document must stay below it with room for the transaction around it.
pub const MAX_DOCUMENT_BYTES: usize = 1_500_000;
/// The longest one etcd call may take before it counts as etcd unavailable
/// (long enough to ride through an etcd leader election).
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// The TTL of a replica's lease (registration and leadership): a dead
/// replica's Envoys and leadership are released within this time.
pub const LEASE_TTL_SECS: i64 = 3;
/// How often a replica renews its lease and publishes its status.
pub const SESSION_TICK: Duration = Duration::from_millis(1000);
/// How often the leader compacts etcd's history: every revision older than
/// the previous compaction round (so at least this long ago) is dropped.
/// No replica needs an old revision: each follows the latest value of its
/// keys, and a watch that falls behind a compaction reads them again. etcd's
/// compaction is for the whole cluster: an etcd shared with applications that
/// read old revisions wants `?compact=off` (and etcd's own
/// `--auto-compaction-retention`).
pub const COMPACT_EVERY: Duration = Duration::from_secs(5);

pub use crate::leadership::{mono_ms, Leadership};

/// Why etcd could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    #[error("bad --store '{url}': {reason} (expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX)")]
    Url { url: String, reason: String },
    #[error("cannot use {path} for etcd: {reason}")]
    File { path: String, reason: String },
    #[error("etcd is unavailable ({endpoints}): {message}")]
    Unavailable { endpoints: String, message: String },
    #[error(
        "the document {key} would be {size} bytes; etcd accepts at most \
         {MAX_DOCUMENT_BYTES} (its default --max-request-bytes is 1.5 MiB)"
    )]
    TooLarge { key: String, size: usize },
}

pub use url::{EtcdCredentials, EtcdUrl};

/// A document and the revision it was last modified at.
pub type Doc = (Vec<u8>, i64);

/// What a guarded write did.
#[derive(Debug)]
pub enum Commit {
    /// Written; the key's new `mod_revision`.
    Done(i64),
    /// Someone wrote first: the current document, if the key exists.
    Conflict(Option<Doc>),
}

/// A connection to an etcd cluster, usable from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    handle: tokio::runtime::Handle,
    members: Members,
    prefix: String,
    endpoints: String,
    /// How long one call may keep trying ([`EtcdUrl::timeout`]).
    timeout: Duration,
    /// Whether the leader compacts ([`EtcdUrl::compact`]).
    compact: bool,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Etcd {
    /// Starts the client's runtime and connects (lazily: a member that is
    /// down is tried again on every call).
    pub fn connect(url: &EtcdUrl) -> Result<Self, EtcdError> {
        let endpoints = url.endpoints.join(",");
        let unavailable = |message: String| EtcdError::Unavailable {
            endpoints: endpoints.clone(),
            message,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("switchyard-etcd".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(std::future::pending::<()>());
            })
            .map_err(|e| unavailable(e.to_string()))?;
        let handle = rx
            .recv()
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(unavailable)?;
        // One client per member (each connects lazily), used in turn: a call
        // that cannot reach its member moves on to the next one.
        let options = connect_options(&url.credentials)?;
        let mut clients = Vec::new();
        for ep in &url.endpoints {
            let (ep, options) = (ep.clone(), options.clone());
            let client = block(&handle, async move {
                Client::connect([ep], Some(options)).await
            })
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|e| unavailable(e.to_string()))?;
            clients.push(client);
        }
        Ok(Self {
            handle,
            members: Members {
                // replicas start on different members (by process id), so one
                // member going down does not interrupt every replica at once
                current: Arc::new(AtomicUsize::new(
                    std::process::id() as usize % clients.len(),
                )),
                clients: Arc::new(clients),
            },
            prefix: url.prefix.clone(),
            endpoints,
            timeout: url.timeout,
            compact: url.compact,
        })
    }

    /// `PREFIX/name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    /// The members, comma-separated (for messages).
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> EtcdError {
        EtcdError::Unavailable {
            endpoints: self.endpoints.clone(),
            message: message.to_string(),
        }
    }

    /// Runs `f` on the client's runtime and waits for it: tried again while
    /// etcd cannot be reached (a member is down, or the cluster is electing a
    /// leader), for at most the store's timeout in all. A write whose answer was lost
    /// may have been made: tried again, its guard then fails and the change is
    /// computed again from the document that holds it.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, EtcdError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        match block(
            &self.handle,
            retrying(self.members.clone(), self.timeout, f),
        ) {
            Ok(r) => r.map_err(|e| self.unavailable(e)),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// The same as [`Self::get`], for async callers.
    pub async fn get_async(&self, name: &str) -> Result<Option<Doc>, EtcdError> {
        let key = self.key(name);
        let task = self.handle.spawn(retrying(
            self.members.clone(),
            self.timeout,
            move |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            },
        ));
        match task.await {
            Ok(Ok(mut r)) => Ok(r
                .take_kvs()
                .into_iter()
                .next()
                .map(|kv| (kv.value().to_vec(), kv.mod_revision()))),
            Ok(Err(e)) => Err(self.unavailable(e)),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// The document at `PREFIX/name` and its `mod_revision`; `None` if absent.
    pub fn get(&self, name: &str) -> Result<Option<Doc>, EtcdError> {
        let key = self.key(name);
        let mut r = self.run(move |mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })?;
        Ok(r.take_kvs()
            .into_iter()
            .next()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    /// Writes `value` at `PREFIX/name` if the key is still at revision `read`
    /// (`0`: if it does not exist yet).
    pub fn commit(&self, name: &str, value: Vec<u8>, read: i64) -> Result<Commit, EtcdError> {
        let key = self.key(name);
        if value.len() > MAX_DOCUMENT_BYTES {
            return Err(EtcdError::TooLarge {
                key,
                size: value.len(),
            });
        }
        let guard = if read == 0 {
            Compare::create_revision(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, read)
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([TxnOp::put(key.clone(), value, None)])
            .or_else([TxnOp::get(key, None)]);
        let r = self.run(move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        if r.succeeded() {
            return Ok(Commit::Done(r.header().map_or(0, |h| h.revision())));
        }
        let current = r.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(mut g) => g
                .take_kvs()
                .into_iter()
                .next()
                .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
            _ => None,
        });
        Ok(Commit::Conflict(current))
    }

    /// Follows `PREFIX/name`: the receiver holds its latest document (`None`
    /// until it was read once, or while it does not exist). Reconnects by itself.
    pub fn watch(&self, name: &str) -> watch::Receiver<Option<Doc>> {
        let (tx, rx) = watch::channel(None);
        let members = self.members.clone();
        let key = self.key(name);
        self.handle.spawn(async move {
            let mut last = 0i64;
            loop {
                if tx.is_closed() {
                    return;
                }
                let (i, client) = members.current();
                if let Err(e) = follow_key(client, &key, &tx, &mut last).await {
                    tracing::debug!(key, error = %e, "etcd watch interrupted; reconnecting");
                    members.next(i);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        rx
    }

    /// Follows every key under `PREFIX/dir/`: the receiver holds them by the
    /// rest of their key. Reconnects by itself.
    pub fn watch_dir(&self, dir: &str) -> watch::Receiver<BTreeMap<String, Vec<u8>>> {
        let (tx, rx) = watch::channel(BTreeMap::new());
        let members = self.members.clone();
        let prefix = format!("{}/", self.key(dir));
        self.handle.spawn(async move {
            loop {
                if tx.is_closed() {
                    return;
                }
                let (i, client) = members.current();
                if let Err(e) = follow_dir(client, &prefix, &tx).await {
                    tracing::debug!(prefix, error = %e, "etcd watch interrupted; reconnecting");
                    members.next(i);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        rx
    }

    /// Runs this replica's session until the process ends: a lease of
    /// [`LEASE_TTL_SECS`] renewed every [`SESSION_TICK`]; `PREFIX/replicas/ID`
    /// set to `status()` (again at once when `changes` ticks); and the
    /// leadership (`PREFIX/leader`), reported in `leader`. On any etcd error the
    /// replica stops counting itself leader until it holds the lease again.
    pub fn run_session(
        &self,
        id: String,
        status: Arc<dyn Fn(bool) -> Vec<u8> + Send + Sync>,
        mut changes: watch::Receiver<u64>,
        leader: Leadership,
    ) {
        let members = self.members.clone();
        let replica_key = self.key(&format!("replicas/{id}"));
        let leader_key = self.key("leader");
        let mut compaction = self.compact.then(Compaction::default);
        self.handle.spawn(async move {
            loop {
                let (i, client) = members.current();
                let r = session(
                    client,
                    &id,
                    &replica_key,
                    &leader_key,
                    &status,
                    &mut changes,
                    &leader,
                    compaction.as_mut(),
                )
                .await;
                if leader.drop_it() {
                    tracing::warn!(replica = %id, "leadership lost");
                }
                if let Err(e) = r {
                    tracing::debug!(error = %e, "etcd session interrupted; starting again");
                    members.next(i);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
    }
}

/// The client's options: timeouts, keep-alive, and `credentials` (TLS files
/// read now, the password from its file).
fn connect_options(credentials: &EtcdCredentials) -> Result<ConnectOptions, EtcdError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| EtcdError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(TRY_TIMEOUT)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if credentials.tls() {
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &credentials.ca {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = &credentials.client_cert {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    if let Some((user, password_file)) = &credentials.user {
        let password = String::from_utf8(read(password_file)?).map_err(|_| EtcdError::File {
            path: password_file.display().to_string(),
            reason: "the password is not UTF-8".into(),
        })?;
        options = options.with_user(user.clone(), password.trim_end_matches(['\r', '\n']));
    }
    Ok(options)
}

/// Runs `f` on `handle`'s runtime from any thread (also from inside another
/// runtime) and waits for its result.
fn block<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    f: impl Future<Output = T> + Send + 'static,
) -> Result<T, &'static str> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().map_err(|_| "the etcd client's runtime stopped")
}

type Res<T> = Result<T, etcd_client::Error>;

/// Whether an error means "etcd could not be reached" (worth another try).
fn unreachable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            // (tonic reports its own request timeout as Cancelled)
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
        ),
        _ => false,
    }
}

/// `f` until it succeeds, fails for another reason than an unreachable etcd,
/// or `timeout` passed.
async fn retrying<T, F, Fut>(members: Members, timeout: Duration, f: F) -> Res<T>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Res<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tried = 0;
    loop {
        let (i, client) = members.current();
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(TRY_TIMEOUT);
        let r = match tokio::time::timeout(left, f(client)).await {
            Ok(r) => r,
            Err(_) => Err(etcd_client::Error::WatchError(format!(
                "no answer within {} ms",
                left.as_millis()
            ))),
        };
        match r {
            Err(e) if unreachable(&e) && tokio::time::Instant::now() < deadline => {
                members.next(i);
                tried += 1;
                if tried % members.clients.len() == 0 {
                    tokio::time::sleep_until(
                        deadline.min(tokio::time::Instant::now() + RETRY_PAUSE),
                    )
                    .await;
                }
                if tokio::time::Instant::now() >= deadline {
                    // the last real reason, not an empty try
                    return Err(e);
                }
            }
            r => return r,
        }
    }
}

/// A pause after every member was tried once.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest one try on one member may take. Short: when etcd's leader
/// dies, a request to a follower waits for the old leader until it times out
/// (2 s before, measured), while the next try answers "no leader" at once
/// until the election is over. A try that timed out may still have been
/// made: the next one's guard then fails, and the store's change log tells
/// ([`crate::change_log`]).
const TRY_TIMEOUT: Duration = Duration::from_millis(600);

/// One client per etcd member, and the one in use.
#[derive(Clone)]
struct Members {
    clients: Arc<Vec<Client>>,
    current: Arc<AtomicUsize>,
}

impl Members {
    fn current(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::SeqCst) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// Member `i` failed: use the next one (unless another call moved on already).
    fn next(&self, i: usize) {
        let _ = self.current.compare_exchange(
            i,
            (i + 1) % self.clients.len(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

async fn timed<T>(f: impl Future<Output = Res<T>>) -> Res<T> {
    tokio::time::timeout(OP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(etcd_client::Error::WatchError("no answer in time".into())))
}

async fn follow_key(
    mut client: Client,
    key: &str,
    tx: &watch::Sender<Option<Doc>>,
    last: &mut i64,
) -> Res<()> {
    let mut r = timed(client.get(key, None)).await?;
    let revision = r.header().map_or(0, |h| h.revision());
    match r.take_kvs().into_iter().next() {
        Some(kv) if kv.mod_revision() > *last => {
            *last = kv.mod_revision();
            tx.send_replace(Some((kv.value().to_vec(), kv.mod_revision())));
        }
        _ => {}
    }
    let mut stream = timed(client.watch(
        key,
        Some(WatchOptions::new().with_start_revision(revision + 1)),
    ))
    .await?;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            return Ok(());
        }
        for ev in resp.events() {
            if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                if kv.mod_revision() > *last {
                    *last = kv.mod_revision();
                    tx.send_replace(Some((kv.value().to_vec(), kv.mod_revision())));
                }
            }
        }
    }
    Ok(())
}

async fn follow_dir(
    mut client: Client,
    prefix: &str,
    tx: &watch::Sender<BTreeMap<String, Vec<u8>>>,
) -> Res<()> {
    let name = |k: &[u8]| String::from_utf8_lossy(&k[prefix.len().min(k.len())..]).into_owned();
    let r = timed(client.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
    let revision = r.header().map_or(0, |h| h.revision());
    let mut all: BTreeMap<String, Vec<u8>> = r
        .kvs()
        .iter()
        .map(|kv| (name(kv.key()), kv.value().to_vec()))
        .collect();
    tx.send_replace(all.clone());
    let mut stream = timed(
        client.watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        ),
    )
    .await?;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            return Ok(());
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            match ev.event_type() {
                EventType::Put => {
                    all.insert(name(kv.key()), kv.value().to_vec());
                }
                EventType::Delete => {
                    all.remove(&name(kv.key()));
                }
            }
        }
        tx.send_replace(all.clone());
    }
    Ok(())
}

/// The leader's compaction rounds: the revision etcd was at in the last round.
#[derive(Debug, Default)]
struct Compaction {
    mark: i64,
    at: Option<tokio::time::Instant>,
}

impl Compaction {
    /// Every [`COMPACT_EVERY`]: compacts up to the revision of the previous
    /// round (in the background: the session's renewals do not wait for it)
    /// and remembers `revision` (etcd's now) for the next one. A failed
    /// compaction (another one was further, etcd busy) only waits for the next.
    fn round(&mut self, client: &Client, revision: i64) {
        let now = tokio::time::Instant::now();
        if self.at.is_some_and(|at| now < at + COMPACT_EVERY) {
            return;
        }
        if self.mark > 0 {
            let (mut client, mark) = (client.clone(), self.mark);
            tokio::spawn(async move {
                match timed(client.compact(mark, None)).await {
                    Ok(_) => tracing::debug!(revision = mark, "etcd compacted"),
                    Err(e) => tracing::debug!(revision = mark, error = %e, "etcd not compacted"),
                }
            });
        }
        (self.mark, self.at) = (revision, Some(now));
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    mut client: Client,
    id: &str,
    replica_key: &str,
    leader_key: &str,
    status: &Arc<dyn Fn(bool) -> Vec<u8> + Send + Sync>,
    changes: &mut watch::Receiver<u64>,
    leader: &Leadership,
    mut compaction: Option<&mut Compaction>,
) -> Res<()> {
    let lease = timed(client.lease_grant(LEASE_TTL_SECS, None)).await?.id();
    let (mut keeper, mut answers) = timed(client.lease_keep_alive(lease)).await?;
    let mut next_renewal = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_renewal {
            let sent_ms = mono_ms();
            timed(keeper.keep_alive()).await?;
            match timed(async { answers.message().await }).await? {
                Some(a) if a.ttl() > 0 => {}
                _ => {
                    return Err(etcd_client::Error::LeaseKeepAliveError(
                        "the lease expired".into(),
                    ))
                }
            }
            // Leadership: take the key if nobody holds it; keep it while ours.
            let txn = Txn::new()
                .when([Compare::create_revision(leader_key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    leader_key,
                    id,
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(leader_key, None)]);
            let r = timed(client.txn(txn)).await?;
            let revision = r.header().map_or(0, |h| h.revision());
            let is_leader = r.succeeded()
                || r.op_responses().into_iter().any(|op| match op {
                    TxnOpResponse::Get(g) => g
                        .kvs()
                        .first()
                        .is_some_and(|kv| kv.lease() == lease && kv.value() == id.as_bytes()),
                    _ => false,
                });
            let was = leader.holds();
            if is_leader {
                // etcd lets the lease go TTL after it got the renewal; stop a
                // second before that, counted from before it was sent
                leader.hold_until(sent_ms + LEASE_TTL_SECS as u64 * 1000 - 1000);
                if let Some(c) = compaction.as_deref_mut() {
                    c.round(&client, revision);
                }
            } else {
                leader.drop_it();
            }
            if was != is_leader {
                if is_leader {
                    tracing::info!(replica = %id, "this replica is the leader (singleton work)");
                } else {
                    tracing::info!(replica = %id, "this replica is not the leader");
                }
            }
            next_renewal = now + SESSION_TICK;
        }
        let value = status(leader.holds());
        timed(client.put(
            replica_key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        ))
        .await?;
        // Publish again at the next renewal, or soon after an Envoy's status
        // changed (a short pause gathers a burst of ACKs into one write).
        tokio::select! {
            () = tokio::time::sleep_until(next_renewal) => {}
            r = changes.changed() => {
                if r.is_err() {
                    tokio::time::sleep_until(next_renewal).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
