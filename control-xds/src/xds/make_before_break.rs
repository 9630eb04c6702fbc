//! Make-before-break, per stream: CDS and EDS are pushed from the newest
//! snapshot (the *target*); the types that route to clusters (ECDS, LDS, RDS,
//! in [`ResourceType::PUSH_ORDER`]) only once the target is *routable* — its
//! clusters ACKed, its EDS clusters loaded, new DNS clusters given
//! [`DNS_WARMUP`]; clusters the target dropped are retired only once nothing
//! routes to them (see [`super::server`] for why, in Envoy 1.40's terms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::Closed;
use super::snapshot::{ResourceType, Snapshot};
use super::stream::AdsStream;

/// How long a new STRICT_DNS cluster is given to warm (its first resolution)
/// after Envoy ACKed it, before config that routes to it is sent. xDS does not
/// report DNS warming; clusters of IP endpoints (EDS) need no such wait.
pub const DNS_WARMUP: Duration = Duration::from_millis(500);

/// A wait for new DNS clusters to resolve before the target becomes routable.
pub(super) struct DnsHold {
    /// The target version the wait is for.
    pub(super) version: String,
    pub(super) until: Instant,
}

impl AdsStream {
    /// Pushes a new target: CDS and EDS now, the rest once it is routable.
    pub(super) async fn push(&mut self, snapshot: Option<Arc<Snapshot>>) -> Result<(), Closed> {
        self.target = snapshot;
        let Some(target) = self.target.clone() else {
            return Ok(());
        };
        self.send_behind(&[ResourceType::Cluster, ResourceType::Endpoint], &target)
            .await?;
        self.progress().await
    }

    /// Sends each of `kinds` this stream subscribed to and was not sent at
    /// `snapshot`'s version, in the order given.
    pub(super) async fn send_behind(
        &mut self,
        kinds: &[ResourceType],
        snapshot: &Arc<Snapshot>,
    ) -> Result<(), Closed> {
        for &kind in kinds {
            let behind = self
                .types
                .get(&kind)
                .is_some_and(|s| s.sent_version.as_deref() != Some(snapshot.version(kind)));
            if behind {
                self.send(kind, snapshot, false).await?;
            }
        }
        Ok(())
    }

    /// Makes the target routable once its clusters are, sends the types that
    /// route to clusters, and retires dropped clusters once nothing uses them.
    pub(super) async fn progress(&mut self) -> Result<(), Closed> {
        let Some(target) = self.target.clone() else {
            return Ok(());
        };
        let routable_version = self
            .routable
            .as_ref()
            .map(|r| r.version(ResourceType::Cluster));
        if routable_version != Some(target.version(ResourceType::Cluster))
            && self.clusters_ready(&target)
        {
            tracing::debug!(node = %self.node, version = %target.version(ResourceType::Cluster), "clusters ready: routable");
            self.routable = Some(target.clone());
            let routing: Vec<ResourceType> = ResourceType::PUSH_ORDER
                .into_iter()
                .filter(|k| k.routes_to_clusters())
                .collect();
            self.send_behind(&routing, &target).await?;
        }
        self.finish_retiring().await
    }

    /// Whether this Envoy can use every cluster of `target`: it ACKed the
    /// target's CDS and an EDS response carrying each of its EDS clusters, and
    /// new DNS clusters have had [`DNS_WARMUP`]. A stream that never subscribed
    /// to CDS has nothing to wait for.
    pub(super) fn clusters_ready(&mut self, target: &Snapshot) -> bool {
        let Some(cds) = self.types.get(&ResourceType::Cluster) else {
            return true;
        };
        if !cds.acked(target.version(ResourceType::Cluster)) {
            return false;
        }
        let eds_names = &target.resources(ResourceType::Endpoint).items;
        if !eds_names.is_empty() {
            let Some(eds) = self.types.get(&ResourceType::Endpoint) else {
                return false;
            };
            if !eds.acked(target.version(ResourceType::Endpoint))
                || !eds_names.keys().all(|n| eds.have.contains_key(n))
            {
                return false;
            }
        }
        let new_dns: Vec<String> = target
            .resources(ResourceType::Cluster)
            .items
            .keys()
            .filter(|n| !eds_names.contains_key(*n) && !self.warm_dns.contains(*n))
            .cloned()
            .collect();
        if new_dns.is_empty() {
            return true;
        }
        let version = target.version(ResourceType::Cluster);
        match &self.dns_hold {
            Some(hold) if hold.version == version && Instant::now() >= hold.until => {
                self.dns_hold = None;
                self.warm_dns.extend(new_dns);
                true
            }
            Some(hold) if hold.version == version => false,
            _ => {
                self.dns_hold = Some(DnsHold {
                    version: version.to_string(),
                    until: Instant::now() + DNS_WARMUP,
                });
                false
            }
        }
    }

    /// Sends the final CDS response (without dropped clusters; delta: their
    /// removal) once the target is routable and Envoy ACKed every type of it:
    /// nothing routes to the dropped clusters any more.
    pub(super) async fn finish_retiring(&mut self) -> Result<(), Closed> {
        if !self.retiring {
            return Ok(());
        }
        let (Some(target), Some(routable)) = (self.target.clone(), self.routable.clone()) else {
            return Ok(());
        };
        let settled = Arc::ptr_eq(&target, &routable)
            && self
                .types
                .iter()
                .all(|(kind, s)| s.acked(target.version(*kind)));
        if !settled {
            return Ok(());
        }
        self.retiring = false;
        let resources = self.selected(ResourceType::Cluster, &target);
        let version = target.version(ResourceType::Cluster).to_string();
        self.respond(
            ResourceType::Cluster,
            version.clone(),
            version,
            &resources,
            true,
        )
        .await?;
        self.sent_clusters = resources;
        if let Some(state) = self.types.get_mut(&ResourceType::Cluster) {
            state.basis = Some(target.resources(ResourceType::Cluster).digest);
        }
        Ok(())
    }
}
