//! `switchyard render envoy --ads HOST:PORT`: the bootstrap of an Envoy that
//! gets everything over ADS from `switchyard serve` (node, the ADS cluster,
//! load reports (LRS) to the same server, admin — as `envoy/bootstrap-ads.yaml`), optionally over TLS: the server's
//! certificate is verified against a CA and its name or IP, and a client
//! certificate is presented for xDS mTLS (`serve --xds-client-ca`); with
//! `--delta` the ADS stream speaks delta xDS (`DELTA_GRPC`). Every other xDS
//! config source in the bootstrap and in the resources served is `ads: {}`
//! (resource API V3), so it follows the ADS stream's protocol.

use serde_json::{json, Value};

/// TLS of the ADS connection, as Envoy sees the files.
#[derive(Debug, Clone)]
pub struct XdsTls {
    /// The CA that signed the control plane's xDS certificate.
    pub ca: String,
    /// The client certificate chain and key (mTLS), if any.
    pub client_cert: Option<(String, String)>,
}

/// What the ADS bootstrap needs.
#[derive(Debug, Clone)]
pub struct AdsBootstrap {
    /// The control plane's xDS addresses: one, or several replicas (the
    /// first is preferred; see [`render`]).
    pub ads: Vec<(String, u16)>,
    pub admin: (String, u16),
    pub node_id: String,
    pub tls: Option<XdsTls>,
    /// Delta xDS (`api_type: DELTA_GRPC`) instead of state of the world: on a
    /// change Envoy is sent only the resources that changed (README
    /// "Configuration delivery").
    pub delta: bool,
}

fn socket(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

/// The transport socket of a cluster to the control plane (ADS: `alpn` h2;
/// the API in pull mode: http/1.1): the server is verified against the CA and
/// must be named `host` (an IP SAN for an address, else a DNS SAN).
pub fn upstream_tls(tls: &XdsTls, host: &str, alpn: &str) -> Value {
    upstream_tls_any(tls, &[host], alpn)
}

/// [`upstream_tls`] for a cluster of several servers (replicas): a server is
/// accepted if its certificate names any of `hosts`; no SNI is sent unless
/// there is one host and it is a name.
pub fn upstream_tls_any(tls: &XdsTls, hosts: &[&str], alpn: &str) -> Value {
    let is_ip = |h: &str| h.parse::<std::net::IpAddr>().is_ok();
    let mut names: Vec<&str> = hosts.to_vec();
    names.dedup();
    let matchers: Vec<Value> = names
        .iter()
        .map(|h| {
            json!({
                "san_type": if is_ip(h) { "IP_ADDRESS" } else { "DNS" },
                "matcher": {"exact": h}
            })
        })
        .collect();
    let mut common = json!({
        "alpn_protocols": [alpn],
        "validation_context": {
            "trusted_ca": {"filename": tls.ca},
            "match_typed_subject_alt_names": matchers
        }
    });
    if let Some((cert, key)) = &tls.client_cert {
        common["tls_certificates"] = json!([{
            "certificate_chain": {"filename": cert},
            "private_key": {"filename": key}
        }]);
    }
    let mut context = json!({"common_tls_context": common});
    if let [host] = names[..] {
        if !is_ip(host) {
            context["sni"] = json!(host);
        }
    }
    context["@type"] =
        json!("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext");
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
}

/// Pull mode over https: the API cluster of a rendered static bootstrap
/// ([`crate::render::PULL_CLUSTER`]) verifies the API's certificate against
/// `tls.ca` (and `host`) and presents `tls.client_cert` if any.
pub fn pull_over_tls(bootstrap: &mut Value, tls: &XdsTls, host: &str) {
    let clusters = bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut);
    for c in clusters.into_iter().flatten() {
        if c["name"] == crate::render::PULL_CLUSTER {
            c["transport_socket"] = upstream_tls(tls, host, "http/1.1");
        }
    }
}

/// How often Envoy checks that each replica's xDS port accepts connections
/// (several `--ads` addresses only).
pub const REPLICA_HEALTH_CHECK: &str = "1s";

/// The ADS bootstrap.
///
/// With several addresses (replicas of `serve --store etcd://…`), each is its
/// own priority level of the ADS cluster, in the given order, with a TCP
/// health check every [`REPLICA_HEALTH_CHECK`]: Envoy's ADS stream is one
/// gRPC stream on one connection, opened to a host the cluster's load
/// balancer picks, so the Envoy stays on the first healthy replica and, when
/// that replica dies (its stream closes and its health check fails), opens the
/// stream again to the next one. Give different Envoys different orders to
/// spread them over the replicas.
pub fn render(opts: &AdsBootstrap) -> Value {
    let (host, _) = opts.ads.first().cloned().unwrap_or_default();
    let all_ips = opts
        .ads
        .iter()
        .all(|(h, _)| h.parse::<std::net::IpAddr>().is_ok());
    let endpoints: Vec<Value> = if opts.ads.len() == 1 {
        vec![json!({"lb_endpoints": [{"endpoint": {"address": socket(&host, opts.ads[0].1)}}]})]
    } else {
        opts.ads
            .iter()
            .enumerate()
            .map(|(i, (h, p))| {
                json!({"priority": i, "lb_endpoints": [{"endpoint": {"address": socket(h, *p)}}]})
            })
            .collect()
    };
    let mut cluster = json!({
        "name": "xds_cluster",
        "type": if all_ips { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        },
        "load_assignment": {
            "cluster_name": "xds_cluster",
            "endpoints": endpoints
        }
    });
    if opts.ads.len() > 1 {
        cluster["health_checks"] = json!([{
            "timeout": "1s",
            "interval": REPLICA_HEALTH_CHECK,
            // The ADS stream is not "traffic" to Envoy's health checker: without
            // this, checks run only every 60 s.
            "no_traffic_interval": REPLICA_HEALTH_CHECK,
            "no_traffic_healthy_interval": REPLICA_HEALTH_CHECK,
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            "tcp_health_check": {}
        }]);
        // A replica that went away without closing the connection (its host
        // died) is noticed by TCP keepalive.
        cluster["upstream_connection_options"] = json!({
            "tcp_keepalive": {"keepalive_probes": 3, "keepalive_time": 10, "keepalive_interval": 2}
        });
    }
    if let Some(tls) = &opts.tls {
        let hosts: Vec<&str> = opts.ads.iter().map(|(h, _)| h.as_str()).collect();
        cluster["transport_socket"] = upstream_tls_any(tls, &hosts, "h2");
    }
    json!({
        "node": {"id": opts.node_id, "cluster": "switchyard"},
        "dynamic_resources": {
            "ads_config": {
                "api_type": if opts.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]
            },
            "cds_config": {"resource_api_version": "V3", "ads": {}},
            "lds_config": {"resource_api_version": "V3", "ads": {}}
        },
        // Load reports (LRS) to the same server: they judge progressive rollouts.
        "cluster_manager": {
            "load_stats_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]
            }
        },
        "static_resources": {"clusters": [cluster]},
        "admin": {"address": socket(&opts.admin.0, opts.admin.1)}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tls_it_is_the_checked_in_ads_bootstrap() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/bootstrap-ads.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let checked_in: Value = serde_saphyr::from_str(&text).unwrap();
        let rendered = render(&AdsBootstrap {
            ads: vec![("127.0.0.1".into(), 18000)],
            admin: ("127.0.0.1".into(), 9901),
            node_id: "switchyard-envoy".into(),
            tls: None,
            delta: false,
        });
        assert_eq!(rendered, checked_in);
    }

    #[test]
    fn delta_changes_only_the_ads_api_type() {
        let opts = |delta| AdsBootstrap {
            ads: vec![("127.0.0.1".into(), 18000)],
            admin: ("127.0.0.1".into(), 9901),
            node_id: "n".into(),
            tls: None,
            delta,
        };
        let (sotw, mut delta) = (render(&opts(false)), render(&opts(true)));
        let ads = &delta["dynamic_resources"]["ads_config"];
        assert_eq!(ads["api_type"], "DELTA_GRPC");
        assert_eq!(ads["transport_api_version"], "V3");
        for source in ["cds_config", "lds_config"] {
            assert_eq!(
                delta["dynamic_resources"][source],
                json!({"resource_api_version": "V3", "ads": {}})
            );
        }
        delta["dynamic_resources"]["ads_config"]["api_type"] = json!("GRPC");
        assert_eq!(delta, sotw);
    }

    #[test]
    fn several_replicas_are_priorities_in_order_with_a_health_check() {
        let b = render(&AdsBootstrap {
            ads: vec![
                ("127.0.0.1".into(), 18000),
                ("127.0.0.1".into(), 18010),
                ("127.0.0.1".into(), 18020),
            ],
            admin: ("127.0.0.1".into(), 9901),
            node_id: "n".into(),
            tls: None,
            delta: false,
        });
        let c = &b["static_resources"]["clusters"][0];
        let eps = c["load_assignment"]["endpoints"].as_array().unwrap();
        let ports: Vec<(u64, u64)> = eps
            .iter()
            .map(|e| {
                (
                    e["priority"].as_u64().unwrap(),
                    e["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"]
                        .as_u64()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(ports, vec![(0, 18000), (1, 18010), (2, 18020)]);
        assert_eq!(c["health_checks"][0]["interval"], REPLICA_HEALTH_CHECK);
        // over TLS, a replica's certificate may name any of them
        let tls = XdsTls {
            ca: "/ca.pem".into(),
            client_cert: None,
        };
        let b = render(&AdsBootstrap {
            ads: vec![("cp-0.example".into(), 443), ("cp-1.example".into(), 443)],
            admin: ("127.0.0.1".into(), 9901),
            node_id: "n".into(),
            tls: Some(tls),
            delta: false,
        });
        let ctx = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        let sans =
            &ctx["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"];
        assert_eq!(sans[1]["matcher"]["exact"], "cp-1.example");
        assert!(ctx.get("sni").is_none());
        assert!(c["health_checks"][0]["tcp_health_check"].is_object());
    }

    #[test]
    fn tls_verifies_the_server_and_presents_the_client_certificate() {
        let tls = XdsTls {
            ca: "/ca.pem".into(),
            client_cert: Some(("/c.pem".into(), "/c.key".into())),
        };
        let b = render(&AdsBootstrap {
            ads: vec![("cp.example".into(), 443)],
            admin: ("127.0.0.1".into(), 9901),
            node_id: "n".into(),
            tls: Some(tls),
            delta: false,
        });
        let socket = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert_eq!(socket["sni"], "cp.example");
        let common = &socket["common_tls_context"];
        assert_eq!(
            common["validation_context"]["trusted_ca"]["filename"],
            "/ca.pem"
        );
        assert_eq!(
            common["validation_context"]["match_typed_subject_alt_names"][0]["san_type"],
            "DNS"
        );
        assert_eq!(
            common["tls_certificates"][0]["private_key"]["filename"],
            "/c.key"
        );
    }
}
