//! The Load Reporting Service (`envoy.service.load_stats.v3`), on the xDS port:
//! every Envoy with `cluster_manager.load_stats_config` streams, per interval,
//! each named cluster's finished (successful + 5xx) and 5xx request counts.
//!
//! How Envoy 1.40 reports (`source/common/upstream/load_stats_reporter.cc`):
//! it opens the stream with a request carrying only its node; each
//! `LoadStatsResponse` names the clusters to report and the interval and
//! restarts the reporting period. Counters are latched per period: a report
//! holds the counts *since the previous report*, per locality; a locality with
//! nothing finished or in flight is left out, and a cluster that did not exist
//! when the period started is not reported for that period (its first requests
//! are counted from the next one). `total_error_requests` are responses with
//! a 5xx status (and resets/timeouts, which the router answers with 5xx).
//!
//! [`LoadReports`] sums what every stream reports until the driver takes it, and
//! tells every stream which clusters to ask for: when that set changes, each
//! stream sends a new response.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use envoy_types::pb::envoy::service::load_stats::v3::load_reporting_service_server::{
    LoadReportingService, LoadReportingServiceServer,
};
use envoy_types::pb::envoy::service::load_stats::v3::{LoadStatsRequest, LoadStatsResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::analyzer::Counts;
use crate::clock::now_unix_ms;

/// The interval the server asks for.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Inner {
    /// Counts per cluster since the last [`LoadReports::take`].
    pending: BTreeMap<String, Counts>,
    /// Last report per node id (Unix ms), for `status`.
    nodes: BTreeMap<String, u64>,
}

/// What the Envoys reported, shared by the LRS streams and the driver.
#[derive(Debug, Clone)]
pub struct LoadReports {
    inner: Arc<Mutex<Inner>>,
    wanted: Arc<watch::Sender<BTreeSet<String>>>,
    interval: Duration,
}

impl Default for LoadReports {
    fn default() -> Self {
        Self::new(REPORT_INTERVAL)
    }
}

impl LoadReports {
    pub fn new(interval: Duration) -> Self {
        Self {
            inner: Arc::default(),
            wanted: Arc::new(watch::channel(BTreeSet::new()).0),
            interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Names the clusters every Envoy should report; streams are told at once
    /// when the set changes.
    pub fn want(&self, clusters: BTreeSet<String>) {
        self.wanted.send_if_modified(|w| {
            if *w == clusters {
                false
            } else {
                *w = clusters;
                true
            }
        });
    }

    /// The clusters asked for.
    pub fn wanted(&self) -> BTreeSet<String> {
        self.wanted.borrow().clone()
    }

    /// Adds one report's counts (a stream calls this).
    pub fn record(&self, node: &str, report: &LoadStatsRequest) {
        let mut inner = self.lock();
        inner.nodes.insert(node.to_string(), now_unix_ms());
        for c in &report.cluster_stats {
            let mut counts = Counts::default();
            for l in &c.upstream_locality_stats {
                counts.requests += l.total_successful_requests + l.total_error_requests;
                counts.errors += l.total_error_requests;
            }
            if counts.requests > 0 {
                inner
                    .pending
                    .entry(c.cluster_name.clone())
                    .or_default()
                    .add(counts);
            }
        }
    }

    /// The counts per cluster since the last call.
    pub fn take(&self) -> BTreeMap<String, Counts> {
        std::mem::take(&mut self.lock().pending)
    }

    /// Node ids with an LRS stream that reported, and when last (Unix ms).
    pub fn nodes(&self) -> BTreeMap<String, u64> {
        self.lock().nodes.clone()
    }

    fn response(&self, clusters: &BTreeSet<String>) -> LoadStatsResponse {
        LoadStatsResponse {
            clusters: clusters.iter().cloned().collect(),
            send_all_clusters: false,
            load_reporting_interval: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: self.interval.as_secs() as i64,
                nanos: self.interval.subsec_nanos() as i32,
            }),
            report_endpoint_granularity: false,
        }
    }

    /// The gRPC service to mount beside ADS.
    pub fn service(&self) -> LoadReportingServiceServer<LrsServer> {
        LoadReportingServiceServer::new(LrsServer {
            reports: self.clone(),
        })
    }
}

/// The LRS gRPC service.
#[derive(Debug, Clone)]
pub struct LrsServer {
    reports: LoadReports,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<LoadStatsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LoadReportingService for LrsServer {
    type StreamLoadStatsStream = ResponseStream;

    async fn stream_load_stats(
        &self,
        request: Request<Streaming<LoadStatsRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let reports = self.reports.clone();
        tokio::spawn(async move { run_stream(reports, inbound, tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn run_stream(
    reports: LoadReports,
    mut inbound: Streaming<LoadStatsRequest>,
    tx: mpsc::Sender<Result<LoadStatsResponse, Status>>,
) {
    let node = match inbound.message().await {
        Ok(Some(first)) => first.node.map(|n| n.id).unwrap_or_default(),
        Ok(None) | Err(_) => return,
    };
    tracing::info!(%node, "LRS stream opened");
    let mut wanted = reports.wanted.subscribe();
    let first = wanted.borrow_and_update().clone();
    if tx.send(Ok(reports.response(&first))).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(report)) => reports.record(&node, &report),
                Ok(None) | Err(_) => break,
            },
            changed = wanted.changed() => {
                if changed.is_err() {
                    break;
                }
                let clusters = wanted.borrow_and_update().clone();
                if tx.send(Ok(reports.response(&clusters))).await.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!(%node, "LRS stream closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::endpoint::v3::{ClusterStats, UpstreamLocalityStats};

    fn report(cluster: &str, ok: u64, err: u64) -> LoadStatsRequest {
        LoadStatsRequest {
            node: None,
            cluster_stats: vec![ClusterStats {
                cluster_name: cluster.into(),
                upstream_locality_stats: vec![
                    UpstreamLocalityStats {
                        total_successful_requests: ok,
                        total_error_requests: err,
                        total_issued_requests: ok + err,
                        ..Default::default()
                    },
                    UpstreamLocalityStats {
                        total_successful_requests: 1,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn reports_of_every_envoy_add_up_until_taken() {
        let r = LoadReports::default();
        r.record("envoy-1", &report("a", 10, 2));
        r.record("envoy-2", &report("a", 5, 0));
        r.record("envoy-2", &report("b", 0, 0));
        let taken = r.take();
        assert_eq!(
            taken.get("a"),
            Some(&Counts {
                requests: 19,
                errors: 2
            })
        );
        assert_eq!(taken.get("b").map(|c| c.requests), Some(1));
        assert!(r.take().is_empty());
        assert_eq!(r.nodes().len(), 2);
    }
}
