//! The web console: one page at `/` (with its script, style sheet and icon under
//! `/console/`) to try and manage the service from a browser.
//!
//! The files are built into the binary (`crates/api/console/`: plain HTML, CSS and
//! JavaScript, no build step, nothing fetched from elsewhere). The page holds no data: it
//! talks to the same public API as any client, with the caller's API key when keys exist, so
//! the files themselves are served to anyone.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// One file of the console.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../console/index.html"),
    },
    Asset {
        path: "/console/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/console.js"),
    },
    Asset {
        path: "/console/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../console/console.css"),
    },
    Asset {
        path: "/console/icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../console/icon.svg"),
    },
];

/// What the page may load and where it may send requests: only this server (photos shown
/// from `blob:` URLs made in the page); no inline script or style, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The console's paths (for metrics labels).
pub(crate) fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

/// Registers the console's files: `GET` and `HEAD`, a JSON 405 for other methods.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    for (index, asset) in ASSETS.iter().enumerate() {
        cfg.service(
            web::resource(asset.path)
                .route(web::get().to(move |req: HttpRequest| serve(index, req)))
                .route(web::head().to(move |req: HttpRequest| serve(index, req)))
                .default_service(web::to(|req: HttpRequest| async move {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                        method: req.method().to_string(),
                        path: req.path().to_owned(),
                        allowed: "GET, HEAD".to_owned(),
                    })
                })),
        );
    }
}

/// Each file's entity tag: a hash of its bytes, so a browser revalidates cheaply and never
/// keeps a page older than the binary.
fn etag(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })[index]
}

async fn serve(index: usize, req: HttpRequest) -> HttpResponse {
    let asset = &ASSETS[index];
    let tag = etag(index);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ));
    if fresh {
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_served() {
        let page = ASSETS[0].body;
        for asset in &ASSETS[1..] {
            assert!(
                page.contains(asset.path),
                "index.html does not use {}",
                asset.path
            );
        }
        // No file reaches outside the server (the CSP would block it anyway).
        for asset in ASSETS {
            let body = asset.body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !body.contains("http://"),
                "{} names an http URL",
                asset.path
            );
            assert!(
                !body.contains("https://"),
                "{} names an https URL",
                asset.path
            );
        }
    }
}
