//! hello-world upstream: one component (frontend or backend) of the hello-world
//! example, in one version.
//!
//! ```text
//! hello-world-upstream --listen 127.0.0.1:9101 --component frontend --version f1a0001 \
//!     [--call-backend http://127.0.0.1:15001] [--threads 4]
//! ```
//!
//! Every request is answered 200 with a JSON description of what arrived:
//! `component`, `version`, `method`, `path` (with query), `kf` (the `kf-*` headers),
//! `vars` (`kf-var-*` headers without the prefix), `headers` (all, lower-cased) and
//! `listen`; plus the response header `x-upstream: component/version@addr`.
//!
//! With `--call-backend URL` the component first calls `URL/backend` with
//! `Host: backend`, passing on the `kf-context` header it received (component to
//! component through Envoy's internal listener), and nests the answer under
//! `backend`. A backend answer other than 200 is passed on as `backendStatus` and
//! this component answers 502.
//!
//! For error-rate tests a request may ask for a status: header `x-upstream-status: 503`.
//!
//! A failing version (progressive rollouts): `--fail-status 500` answers every
//! request but `/healthz` with that status from the start; at run time
//! `POST /_admin/fail?status=500` switches it on and `?status=0` off. The admin
//! path is honoured only on a direct request (no `kf-*` headers: not through
//! Envoy), and answers `{"failStatus": N}`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::serve::ListenerExt;
use serde_json::{json, Map, Value};

struct Args {
    listen: String,
    component: String,
    version: String,
    call_backend: Option<String>,
    threads: usize,
    /// Status every request is answered with (0: normal answers).
    fail_status: AtomicU16,
}

const USAGE: &str =
    "usage: hello-world-upstream --listen HOST:PORT --component NAME --version VER \
                     [--call-backend http://HOST:PORT] [--threads N] [--fail-status N]";

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut component = None;
    let mut version = None;
    let mut call_backend = None;
    let mut threads = 4;
    let mut fail_status = 0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--component" => component = Some(value()?),
            "--version" => version = Some(value()?),
            "--call-backend" => call_backend = Some(value()?),
            "--threads" => threads = value()?.parse().map_err(|_| "--threads: not a number")?,
            "--fail-status" => {
                fail_status = value()?
                    .parse()
                    .map_err(|_| "--fail-status: not a status")?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or(USAGE)?,
        component: component.ok_or(USAGE)?,
        version: version.ok_or(USAGE)?,
        call_backend,
        threads: threads.max(1),
        fail_status: AtomicU16::new(fail_status),
    })
}

/// A listening socket with SO_REUSEADDR (restarts on the same port in tests).
fn listen(addr: &str) -> Result<std::net::TcpListener, Box<dyn std::error::Error + Send + Sync>> {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = addr.parse()?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => Arc::new(args),
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    let served = runtime.block_on(async {
        let listener = listen(&args.listen)
            .and_then(|l| Ok(tokio::net::TcpListener::from_std(l)?))
            .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
        eprintln!(
            "hello-world {}/{} listening on {}",
            args.component, args.version, args.listen
        );
        // Nagle plus delayed ACKs would add ~40 ms to every keep-alive answer.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&args));
        axum::serve(listener, app)
            .await
            .map_err(|err| format!("server failed: {err}"))
    });
    if let Err(msg) = served {
        eprintln!("{msg}");
        std::process::exit(1);
    }
}

async fn handle(
    State(args): State<Arc<Args>>,
    method: Method,
    uri: Uri,
    request_headers: HeaderMap,
) -> Response {
    let mut headers = BTreeMap::new();
    for (name, value) in &request_headers {
        headers.insert(
            name.as_str().to_ascii_lowercase(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    let kf: Map<String, Value> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("kf-"))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let vars: Map<String, Value> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("kf-var-")?.to_string(), json!(v))))
        .collect();

    let mut status: u16 = headers
        .get("x-upstream-status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.to_string(), |pq| pq.as_str().to_string());
    let health_check = path == "/healthz";
    if path.starts_with("/_admin/fail") && kf.is_empty() && method == Method::POST {
        let wanted = path
            .split_once("status=")
            .and_then(|(_, v)| v.split('&').next()?.parse::<u16>().ok());
        let Some(wanted) = wanted.filter(|s| *s == 0 || (100..600).contains(s)) else {
            let mut r = Response::new(Body::from(
                json!({"error": "bad_request", "message": "status=0 (off) or 100-599"}).to_string(),
            ));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        };
        args.fail_status.store(wanted, Ordering::Relaxed);
        eprintln!(
            "hello-world {}/{}: fail status {wanted}",
            args.component, args.version
        );
        return Response::new(Body::from(json!({ "failStatus": wanted }).to_string()));
    }
    let failing = args.fail_status.load(Ordering::Relaxed);
    if failing != 0 && !health_check {
        status = failing;
    }
    let mut body = json!({
        "component": args.component,
        "version": args.version,
        "method": method.as_str(),
        "path": path,
        "kf": kf,
        "vars": vars,
        "headers": headers,
        "listen": args.listen,
    });
    if let Some(base) = args.call_backend.clone().filter(|_| !health_check) {
        let context = headers.get("kf-context").cloned();
        let answer =
            tokio::task::spawn_blocking(move || call_backend(&base, context.as_ref())).await;
        let (backend_status, backend_body) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => (502, json!({"error": "backend_unreachable", "message": err})),
            Err(err) => (
                502,
                json!({"error": "backend_unreachable", "message": err.to_string()}),
            ),
        };
        body["backend"] = backend_body;
        if backend_status != 200 {
            body["backendStatus"] = json!(backend_status);
            status = 502;
        }
    }

    let upstream = format!("{}/{}@{}", args.component, args.version, args.listen);
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let out = response.headers_mut();
    out.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&upstream) {
        out.insert("x-upstream", v);
    }
    response
}

/// GET `base/backend` with `Host: backend` over a fresh connection (HTTP/1.1,
/// `Connection: close`); returns the status and the body as JSON (or as text).
/// A hand-written client keeps the example free of an HTTP client dependency.
fn call_backend(base: &str, context: Option<&String>) -> Result<(u16, Value), String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or("--call-backend must be http://HOST:PORT")?
        .trim_end_matches('/');
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or(format!("{authority}: no address"))?;
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut req = String::from("GET /backend HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n");
    if let Some(ctx) = context {
        req.push_str(&format!("kf-context: {ctx}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed backend response")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed backend status line")?;
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or("malformed chunked body")?;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
