//! The Face API over HTTP (actix-web): detect faces in an uploaded photo, enrol them in named
//! face sets, search and compare them. Compatible with the original Flask Face API (same
//! routes, fields, error codes and limits, typos such as `sucess` included), plus
//! `/compare`, face set listing, crops, health, readiness, metrics and an OpenAPI document.
//!
//! * [`FaceService`] holds the models, the face store, the token cache, the crops folder, the
//!   bounded inference pool and the metrics; [`ApiConfig`] and [`Limits`] configure it.
//! * [`app`] is the actix `App` (routes, the web console at `/`, JSON 404/405, request ids,
//!   logs, metrics);
//!   [`server`] runs it on a listener and [`spawn`] does the same on a background thread.
//! * [`ApiError`] is every way a request can fail; its one `ResponseError` impl maps each to
//!   an HTTP status, an [`ErrorCode`] and one JSON shape.
//!
//! The app can be exercised without binding a port:
//!
//! ```
//! use std::sync::Arc;
//! use actix_web::test;
//! use facerec_api::{ApiConfig, FaceService};
//!
//! let engine = Arc::new(facerec::FaceEngine::from_dir(facerec_fixtures::models_dir())?);
//! let data = std::env::temp_dir().join(format!("facerec-api-doc-{}", std::process::id()));
//! let service = FaceService::open(engine, ApiConfig::new(&data))?;
//!
//! actix_web::rt::System::new().block_on(async {
//!     let app = test::init_service(facerec_api::app(service)).await;
//!
//!     let health: serde_json::Value =
//!         test::call_and_read_body_json(&app, test::TestRequest::get().uri("/health").to_request()).await;
//!     assert_eq!(health["status"], "ok");
//!
//!     // An unknown token is a FACE_TOKEN_ERROR (1006), answered 404 in the one JSON shape.
//!     let req = test::TestRequest::get().uri("/addface?face_token=nosuchtoken").to_request();
//!     let res = test::call_service(&app, req).await;
//!     assert_eq!(res.status(), 404);
//!     let error: serde_json::Value = test::read_body_json(res).await;
//!     assert_eq!(error["sucess"], false);
//!     assert_eq!(error["error_code"], 1006);
//!     assert_eq!(error["error_message"], "FACE_TOKEN_ERROR");
//! });
//! # std::fs::remove_dir_all(&data).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod auth;
mod config;
mod console;
mod crop;
mod dto;
mod enroll;
mod error;
mod fetch;
mod handlers;
mod input;
mod keys;
mod metrics;
mod openapi;
mod pool;
mod routes;
mod server;
mod service;

pub use config::{ApiConfig, AuthConfig, Limits, RateLimit};
pub use enroll::{EnrollError, EnrollImage, EnrollResult, EnrolledFace, enrolment_token};
pub use error::{ApiError, ErrorCode};
pub use fetch::{AllowedHost, ImageUrlPolicy};
pub use openapi::openapi_json;
pub use routes::{REQUEST_ID, app, routes};
pub use server::{RunningServer, ServerOptions, server, spawn};
pub use service::{FaceService, StartError};
