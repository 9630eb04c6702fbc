//! The dashboard at `/ui/` on the API port: a page, a script and a style sheet
//! compiled into the binary (nothing is fetched from elsewhere), served without
//! a credential because they hold no data. The script reads the JSON API with
//! the token the user signs in with, sent only in the `Authorization` header
//! (`GET /v1/whoami` tells the page which actions the token's role allows;
//! [`series`] keeps the rollouts' LRS counts over time for the plots, which
//! `GET /v1/canaries/{name}/series` answers). The routes are rows of the
//! API's one table ([`crate::api::routes`]).
//!
//! Every answer carries a Content-Security-Policy that allows scripts, styles,
//! images and connections from this origin only, no inline script, no framing
//! and no form posts: data shown by the page can never run as code, and the
//! page cannot be framed by another site (clickjacking).

pub mod series;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The page's assets: (path under `/ui/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

/// The policy every dashboard answer carries (see the module comment).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /ui`: to the page, whose relative links need the slash.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/`: the page.
pub async fn page() -> Response {
    asset("")
}

/// `GET /ui/{file}`: one of the page's assets.
pub async fn file(Path(file): Path<String>) -> Response {
    asset(&file)
}

/// The asset at `path`, with its content type and the security headers; 404
/// for anything else.
fn asset(path: &str) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "no such dashboard file\n").into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, *content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The size of the embedded assets in bytes (the dashboard's whole weight).
pub fn assets_bytes() -> usize {
    ASSETS.iter().map(|(_, _, body)| body.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_small_and_carry_the_security_headers() {
        assert!(assets_bytes() < 300 * 1024, "{} bytes", assets_bytes());
        let r = asset("app.js");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(asset("../api.rs").status(), StatusCode::NOT_FOUND);
        assert_eq!(asset("nope.js").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_loads_only_its_own_script_and_style() {
        let html = std::str::from_utf8(ASSETS[0].2).unwrap();
        assert!(html.contains(r#"<script src="app.js""#));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script>"), "no inline script");
    }
}
