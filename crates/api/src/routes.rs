//! The route table (the one list of paths and methods, shared by the router, the `Allow`
//! headers, the metrics labels and the OpenAPI test), the app, and the request middleware.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Data};
use actix_web::{App, HttpRequest, HttpResponse, Route};
use tracing::Instrument;

use facerec_store::Role;

use crate::auth::{Access, authorize};
use crate::{ApiError, FaceService, Limits, console, handlers};

/// The request id header, read (when sane) and always sent back.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }
}

/// Attaches a handler to a route.
type Bind = fn(Route) -> Route;

struct RouteSpec {
    path: &'static str,
    /// Each method with what it needs of the caller and its handler.
    methods: &'static [(Verb, Access, Bind)],
}

const READ: Access = Access::Role(Role::Read);
const WRITE: Access = Access::Role(Role::Write);
const ADMIN: Access = Access::Role(Role::Admin);

static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        path: "/detect",
        methods: &[(Verb::Post, READ, |r| r.to(handlers::detect))],
    },
    RouteSpec {
        path: "/addface",
        methods: &[
            (Verb::Get, WRITE, |r| r.to(handlers::add_face)),
            (Verb::Post, WRITE, |r| r.to(handlers::add_face_form)),
        ],
    },
    RouteSpec {
        path: "/removeface",
        methods: &[
            (Verb::Get, WRITE, |r| r.to(handlers::remove_face)),
            (Verb::Post, WRITE, |r| r.to(handlers::remove_face_form)),
        ],
    },
    RouteSpec {
        path: "/search",
        methods: &[
            (Verb::Get, READ, |r| r.to(handlers::search)),
            (Verb::Post, READ, |r| r.to(handlers::search_form)),
        ],
    },
    RouteSpec {
        path: "/compare",
        methods: &[
            (Verb::Get, READ, |r| r.to(handlers::compare)),
            (Verb::Post, READ, |r| r.to(handlers::compare_form)),
        ],
    },
    RouteSpec {
        path: "/facesets",
        methods: &[(Verb::Get, READ, |r| r.to(handlers::face_sets))],
    },
    RouteSpec {
        path: "/faceset",
        methods: &[(Verb::Get, READ, |r| r.to(handlers::face_set))],
    },
    RouteSpec {
        path: "/faceset/{face_set}/faces",
        methods: &[(Verb::Post, WRITE, |r| r.to(handlers::enroll))],
    },
    RouteSpec {
        path: "/crops/{face_name}",
        methods: &[(Verb::Get, READ, |r| r.to(handlers::crop))],
    },
    RouteSpec {
        path: "/health",
        methods: &[(Verb::Get, Access::Open, |r| r.to(handlers::health))],
    },
    RouteSpec {
        path: "/ready",
        methods: &[(Verb::Get, Access::Open, |r| r.to(handlers::ready))],
    },
    RouteSpec {
        path: "/metrics",
        methods: &[(Verb::Get, ADMIN, |r| r.to(handlers::metrics))],
    },
    RouteSpec {
        path: "/openapi.json",
        methods: &[(Verb::Get, READ, |r| r.to(handlers::openapi))],
    },
    RouteSpec {
        path: "/keys",
        methods: &[
            (Verb::Get, Access::Keys, |r| r.to(handlers::list_keys)),
            (Verb::Post, Access::Keys, |r| r.to(handlers::create_key)),
        ],
    },
    RouteSpec {
        path: "/keys/{name}",
        methods: &[(Verb::Delete, Access::Keys, |r| r.to(handlers::revoke_key))],
    },
];

/// Every `(path, method)` the server answers, paths in OpenAPI template form
/// (`/crops/{face_name}`).
///
/// ```
/// let routes = facerec_api::routes();
/// assert!(routes.contains(&("/detect", "POST")));
/// assert!(routes.contains(&("/search", "GET")));
/// ```
pub fn routes() -> Vec<(&'static str, &'static str)> {
    ROUTES
        .iter()
        .flat_map(|r| r.methods.iter().map(|(verb, ..)| (r.path, verb.as_str())))
        .collect()
}

/// What a route needs of the caller for `method` (a method it lacks needs nothing: the
/// answer is 405 whoever asks).
fn access(spec: &RouteSpec, method: &Method) -> Access {
    spec.methods
        .iter()
        .find(|(verb, ..)| verb.method() == method)
        .map_or(Access::Open, |(_, access, _)| *access)
}

/// What each route needs, by path and method (for the OpenAPI document and tests).
pub(crate) fn route_access() -> Vec<(&'static str, &'static str, Access)> {
    ROUTES
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(|(verb, access, _)| (r.path, verb.as_str(), *access))
        })
        .collect()
}

/// Registers every route, each with a JSON 405 (and `Allow`) for the methods it lacks and
/// the key check of [`authorize`] in front.
fn configure(cfg: &mut web::ServiceConfig) {
    for spec in ROUTES {
        let allowed: Vec<&str> = spec.methods.iter().map(|(v, ..)| v.as_str()).collect();
        let allowed = allowed.join(", ");
        let mut resource = web::resource(spec.path);
        for (verb, _, bind) in spec.methods {
            resource = resource.route(bind(web::route().method(verb.method())));
        }
        resource = resource.default_service(web::to(move |req: HttpRequest| {
            let allowed = allowed.clone();
            async move {
                Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                    method: req.method().to_string(),
                    path: req.path().to_owned(),
                    allowed,
                })
            }
        }));
        let resource = resource.wrap(from_fn(move |req: ServiceRequest, next| {
            authorize(access(spec, req.method()), req, next)
        }));
        cfg.service(resource);
    }
}

/// The Face API as an actix [`App`]: every route, the web console at `/`, JSON 404/405
/// answers, the service and its request [`Limits`] as app data, and the middleware that gives
/// each request an id, logs it and counts it. Use it in an `HttpServer` factory
/// (see [`server`](crate::server)) or with `actix_web::test`.
pub fn app(
    service: FaceService,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limits: Limits = service.limits().clone();
    App::new()
        .app_data(Data::new(limits))
        .app_data(Data::new(service))
        .configure(configure)
        .configure(console::configure)
        .default_service(web::to(handlers::not_found))
        .wrap(from_fn(observe))
}

/// Request id, logging and metrics around every request.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(req.headers());
    let service = req.app_data::<Data<FaceService>>().cloned();
    if let Some(service) = &service {
        service.purge_expired_if_due();
    }
    let method = method_label(req.method());
    let span = tracing::info_span!("request", id = %id, method, path = %req.path());
    let mut res = next.call(req).instrument(span.clone()).await?;

    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    let endpoint = endpoint_label(res.request().match_pattern().as_deref());
    let api_error = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>());
    let error_code = api_error.map(|e| e.code().code());
    // The whole chain of causes (tract's, the database driver's) goes to the log.
    let error = match (api_error, res.response().error()) {
        (Some(e), _) => Some(error_chain(e)),
        (None, e) => e.map(ToString::to_string),
    };
    if let Some(service) = &service {
        service
            .metrics()
            .record_request(endpoint, method, status, error_code, elapsed);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    let _span = span.enter();
    match error {
        Some(error) if status >= 500 => {
            tracing::error!(status, elapsed_ms, error_code, error, "request failed");
        }
        Some(error) => tracing::info!(status, elapsed_ms, error_code, error, "request refused"),
        None => tracing::info!(status, elapsed_ms, "request done"),
    }
    Ok(res)
}

/// An error and its sources, each once: "outer: cause: root cause".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause's message in their own.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The client's `X-Request-Id` when it is 1-64 characters of `A-Z a-z 0-9 . _ : -`, else a
/// new random one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map_or_else(|| nanoid::nanoid!(), str::to_owned)
}

/// The route pattern as a metrics label: one of the table's paths, a console file's, or
/// `unmatched`.
fn endpoint_label(pattern: Option<&str>) -> &'static str {
    ROUTES
        .iter()
        .map(|r| r.path)
        .chain(console::paths())
        .find(|path| Some(*path) == pattern)
        .unwrap_or("unmatched")
}

/// The method as a metrics label, from a fixed set.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123.x_y:z"));
        assert_eq!(request_id(&headers), "abc-123.x_y:z");
        headers.insert(REQUEST_ID, HeaderValue::from_static("bad id <script>"));
        let replaced = request_id(&headers);
        assert_ne!(replaced, "bad id <script>");
        assert_eq!(replaced.len(), 21);
        headers.insert(REQUEST_ID, HeaderValue::from_str(&"a".repeat(65)).unwrap());
        assert_eq!(request_id(&headers).len(), 21);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(endpoint_label(Some("/detect")), "/detect");
        assert_eq!(
            endpoint_label(Some("/crops/{face_name}")),
            "/crops/{face_name}"
        );
        assert_eq!(endpoint_label(Some("/")), "/");
        assert_eq!(endpoint_label(Some("/etc/passwd")), "unmatched");
        assert_eq!(endpoint_label(None), "unmatched");
        let weird = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&weird), "OTHER");
    }

    #[test]
    fn logged_errors_carry_their_causes_once() {
        let io = std::io::Error::other("disk on fire");
        let store = facerec_store::Error::Io {
            context: "writing crop x.jpg".into(),
            source: io,
        };
        let api = ApiError::from(store);
        assert_eq!(error_chain(&api), "writing crop x.jpg: disk on fire");
        let unavailable = ApiError::from(facerec_store::Error::Unavailable {
            context: "adding face 't'".into(),
            source: Box::new(std::io::Error::other("connection refused")),
        });
        assert_eq!(
            error_chain(&unavailable),
            "the face store is unavailable while adding face 't': connection refused"
        );
    }

    #[test]
    fn every_route_is_listed_once() {
        let routes = routes();
        let mut unique = routes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), routes.len());
        assert_eq!(routes.len(), 20);
    }
}
