//! The one error type of the API, and the one place that maps every error to an HTTP status,
//! an error code and a JSON body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// The error codes of the Face API: 1001-1007 come from the original API, 1008 and 1009 are
/// added for unknown routes and wrong methods, 1010-1012 for API keys and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1001: a parameter could not be parsed or is out of range.
    BadArguments,
    /// 1002: a required parameter is missing.
    MissingArguments,
    /// 1003: the server failed, or is overloaded (then with HTTP 503 and `Retry-After`).
    InternalError,
    /// 1004: the image is not a JPEG/PNG, is corrupt, or is too small or too large.
    FileError,
    /// 1005: the request body could not be read (truncated, wrong content type, ...).
    UploadError,
    /// 1006: the face token is unknown or expired.
    FaceTokenError,
    /// 1007: no face was found where one is needed.
    FaceInfoError,
    /// 1008: no such route.
    NotFound,
    /// 1009: the route exists but not with this method.
    MethodNotAllowed,
    /// 1010: no API key, or an unknown or revoked one (HTTP 401).
    Unauthorized,
    /// 1011: the API key may not do this, or not on this face set (HTTP 403).
    Forbidden,
    /// 1012: the API key sent too many requests (HTTP 429 with `Retry-After`).
    RateLimited,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 12] = [
        Self::BadArguments,
        Self::MissingArguments,
        Self::InternalError,
        Self::FileError,
        Self::UploadError,
        Self::FaceTokenError,
        Self::FaceInfoError,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Unauthorized,
        Self::Forbidden,
        Self::RateLimited,
    ];

    /// The number sent as `error_code`.
    pub fn code(self) -> u16 {
        match self {
            Self::BadArguments => 1001,
            Self::MissingArguments => 1002,
            Self::InternalError => 1003,
            Self::FileError => 1004,
            Self::UploadError => 1005,
            Self::FaceTokenError => 1006,
            Self::FaceInfoError => 1007,
            Self::NotFound => 1008,
            Self::MethodNotAllowed => 1009,
            Self::Unauthorized => 1010,
            Self::Forbidden => 1011,
            Self::RateLimited => 1012,
        }
    }

    /// The name sent as `error_message`.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadArguments => "BAD_ARGUMENTS",
            Self::MissingArguments => "MISSING_ARGUMENTS",
            Self::InternalError => "INTERNAL_ERROR",
            Self::FileError => "FILE_ERROR",
            Self::UploadError => "UPLOAD_ERROR",
            Self::FaceTokenError => "FACE_TOKEN_ERROR",
            Self::FaceInfoError => "FACE_INFO_ERROR",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited => "RATE_LIMITED",
        }
    }
}

/// Everything a request can fail with. [`ResponseError`] turns each into one JSON shape:
/// `{"sucess": false, "success": false, "error_code": N, "error_message": NAME, "detail": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter could not be parsed or is out of range.
    #[error("parameter '{name}' is invalid: {reason}")]
    BadArgument {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A required parameter is missing (or empty).
    #[error("missing parameter: {name}")]
    MissingArgument {
        /// The parameter (or the alternatives, e.g. `face_token or image_file`).
        name: &'static str,
    },
    /// The pipeline refused the image or failed.
    #[error(transparent)]
    Image(#[from] facerec::Error),
    /// The face store refused the request or failed.
    #[error(transparent)]
    Store(#[from] facerec_store::Error),
    /// An uploaded file is larger than allowed (found while streaming it).
    #[error("upload '{field}' is larger than {limit} bytes")]
    FileTooLarge {
        /// The multipart field.
        field: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body is larger than allowed.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
        /// Whether the endpoint takes image uploads (then the code is FILE_ERROR).
        uploads: bool,
    },
    /// The image of an `image_url` parameter could not be fetched: an error status, a
    /// timeout, a failed connection, or more bytes than an upload may have (then 413, like
    /// an oversize upload). A URL refused before fetching is a [`ApiError::BadArgument`].
    #[error("parameter '{name}': {reason}")]
    ImageFetch {
        /// The parameter (`image_url`, `image_url_a`, ...).
        name: &'static str,
        /// What went wrong, with the URL.
        reason: String,
        /// Whether the image is larger than the limit.
        too_large: bool,
    },
    /// The request body could not be read or parsed.
    #[error("the request body could not be read: {reason}")]
    Upload {
        /// What went wrong.
        reason: String,
    },
    /// A face token is not in the token cache (nor in the face set asked about).
    #[error(
        "face token '{token}' is unknown or expired (tokens from /detect live until they are \
         evicted or the server restarts; enrolled faces are looked up in face set '{set}')"
    )]
    UnknownToken {
        /// The token.
        token: String,
        /// The face set that was also searched.
        set: String,
    },
    /// A crop file does not exist (its token was evicted or expired, or never existed).
    #[error("face crop '{name}' does not exist (its token is unknown or expired)")]
    CropNotFound {
        /// The file name asked for.
        name: String,
    },
    /// No face was found in an image that needs one.
    #[error("no face found in '{field}'")]
    NoFace {
        /// The multipart field of the image.
        field: &'static str,
    },
    /// Every inference slot and queue place is taken.
    #[error("the server is busy ({capacity} inference jobs running or queued); retry in a second")]
    Overloaded {
        /// Running plus queued jobs allowed.
        capacity: usize,
    },
    /// No route has this path.
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// The route exists, but not with this method.
    #[error("method {method} is not allowed on {path}; allowed: {allowed}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
        /// The methods the route takes, comma-separated (also sent as `Allow`).
        allowed: String,
    },
    /// The request carries no API key, or one the server does not know (any more).
    #[error("{reason}")]
    Unauthorized {
        /// What was wrong and what to do.
        reason: String,
    },
    /// The API key may not do this.
    #[error("{reason}")]
    Forbidden {
        /// What the key may not do, and what it may.
        reason: String,
    },
    /// The API key has used up its request rate.
    #[error(
        "API key '{key}' sent more than {per_second} requests per second (bursts of \
         {burst}); retry in {retry_after_s} s"
    )]
    RateLimited {
        /// The key's name.
        key: String,
        /// The sustained rate allowed.
        per_second: u32,
        /// The burst allowed.
        burst: u32,
        /// Seconds until a request will be accepted (also sent as `Retry-After`).
        retry_after_s: u64,
    },
    /// Something failed inside the server.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How one error is answered.
struct Mapping {
    status: StatusCode,
    code: ErrorCode,
    header: Option<(HeaderName, String)>,
}

impl Mapping {
    fn new(status: StatusCode, code: ErrorCode) -> Self {
        Self {
            status,
            code,
            header: None,
        }
    }

    fn with_header(mut self, name: HeaderName, value: String) -> Self {
        self.header = Some((name, value));
        self
    }
}

impl ApiError {
    /// The error code sent for this error.
    pub fn code(&self) -> ErrorCode {
        self.mapping().code
    }

    /// The one mapping from error to status, code and extra header. Exhaustive on purpose: a
    /// new variant anywhere in the domain errors must be placed here.
    fn mapping(&self) -> Mapping {
        use ErrorCode as C;
        use StatusCode as S;
        use facerec::Error as Img;
        use facerec_store::Error as Sto;
        match self {
            Self::BadArgument { .. } => Mapping::new(S::BAD_REQUEST, C::BadArguments),
            Self::MissingArgument { .. } => Mapping::new(S::BAD_REQUEST, C::MissingArguments),
            Self::Image(e) => match e {
                Img::UnsupportedFormat { .. }
                | Img::TooSmall { .. }
                | Img::TooLarge { .. }
                | Img::Corrupt(_) => Mapping::new(S::BAD_REQUEST, C::FileError),
                Img::FileTooLarge { .. } => Mapping::new(S::PAYLOAD_TOO_LARGE, C::FileError),
                Img::Detect(_) | Img::Embed(_) => {
                    Mapping::new(S::INTERNAL_SERVER_ERROR, C::InternalError)
                }
            },
            Self::Store(e) => match e {
                Sto::InvalidSetName { .. }
                | Sto::InvalidToken { .. }
                | Sto::NameTooLong { .. }
                | Sto::InvalidThreshold { .. }
                | Sto::InvalidKey { .. } => Mapping::new(S::BAD_REQUEST, C::BadArguments),
                Sto::KeyExists { .. } => Mapping::new(S::CONFLICT, C::BadArguments),
                Sto::KeyNotFound { .. } => Mapping::new(S::NOT_FOUND, C::BadArguments),
                Sto::NotFound { .. } => Mapping::new(S::NOT_FOUND, C::FaceTokenError),
                // The database is down or slow: the same request may work in a moment.
                Sto::Unavailable { .. } => Mapping::new(S::SERVICE_UNAVAILABLE, C::InternalError)
                    .with_header(header::RETRY_AFTER, "1".to_owned()),
                // Our own embeddings or data dir are wrong: the client can do nothing about it.
                Sto::WrongDims { .. }
                | Sto::NonFinite { .. }
                | Sto::RecordModelMismatch { .. }
                | Sto::ModelMismatch { .. }
                | Sto::FormatTooNew { .. }
                | Sto::InvalidConfig { .. }
                | Sto::Corrupt { .. }
                | Sto::Locked { .. }
                | Sto::Sled { .. }
                | Sto::Io { .. }
                | Sto::Backend { .. } => Mapping::new(S::INTERNAL_SERVER_ERROR, C::InternalError),
            },
            Self::FileTooLarge { .. } => Mapping::new(S::PAYLOAD_TOO_LARGE, C::FileError),
            Self::BodyTooLarge { uploads, .. } => Mapping::new(
                S::PAYLOAD_TOO_LARGE,
                if *uploads {
                    C::FileError
                } else {
                    C::UploadError
                },
            ),
            Self::ImageFetch { too_large, .. } => Mapping::new(
                if *too_large {
                    S::PAYLOAD_TOO_LARGE
                } else {
                    S::BAD_REQUEST
                },
                C::FileError,
            ),
            Self::Upload { .. } => Mapping::new(S::BAD_REQUEST, C::UploadError),
            Self::UnknownToken { .. } | Self::CropNotFound { .. } => {
                Mapping::new(S::NOT_FOUND, C::FaceTokenError)
            }
            Self::NoFace { .. } => Mapping::new(S::BAD_REQUEST, C::FaceInfoError),
            Self::Overloaded { .. } => Mapping::new(S::SERVICE_UNAVAILABLE, C::InternalError)
                .with_header(header::RETRY_AFTER, "1".to_owned()),
            Self::RouteNotFound { .. } => Mapping::new(S::NOT_FOUND, C::NotFound),
            Self::MethodNotAllowed { allowed, .. } => {
                Mapping::new(S::METHOD_NOT_ALLOWED, C::MethodNotAllowed)
                    .with_header(header::ALLOW, allowed.clone())
            }
            Self::Unauthorized { .. } => Mapping::new(S::UNAUTHORIZED, C::Unauthorized)
                .with_header(header::WWW_AUTHENTICATE, "Bearer".to_owned()),
            Self::Forbidden { .. } => Mapping::new(S::FORBIDDEN, C::Forbidden),
            Self::RateLimited { retry_after_s, .. } => {
                Mapping::new(S::TOO_MANY_REQUESTS, C::RateLimited)
                    .with_header(header::RETRY_AFTER, retry_after_s.to_string())
            }
            Self::Internal(_) => Mapping::new(S::INTERNAL_SERVER_ERROR, C::InternalError),
        }
    }

    /// The `detail` sent to the client. Internal failures are described in the server log
    /// (with the request id), not to the client: they may name paths on the server.
    fn detail(&self, status: StatusCode) -> String {
        match self {
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => {
                "internal server error; the server log has the details (see X-Request-Id)"
                    .to_owned()
            }
            // The driver's words may name database hosts: the log has them.
            Self::Store(facerec_store::Error::Unavailable { context, .. }) => {
                format!("the face store is unavailable (while {context}); retry in a second")
            }
            _ => self.to_string(),
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    #[schema(schema_with = always_false)]
    sucess: bool,
    #[schema(schema_with = always_false)]
    success: bool,
    #[schema(schema_with = every_code)]
    error_code: u16,
    #[schema(schema_with = every_name)]
    error_message: &'static str,
    detail: String,
}

fn always_false() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

fn every_code() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some(ErrorCode::ALL.map(ErrorCode::code)))
        .build()
}

fn every_name() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::ALL.map(ErrorCode::name)))
        .build()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.mapping().status
    }

    fn error_response(&self) -> HttpResponse {
        let Mapping {
            status,
            code,
            header,
        } = self.mapping();
        let mut response = HttpResponse::build(status);
        if let Some(header) = header {
            response.insert_header(header);
        }
        response.json(ErrorBody {
            sucess: false,
            success: false,
            error_code: code.code(),
            error_message: code.name(),
            detail: self.detail(status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: ApiError) -> (u16, u16) {
        let r = e.error_response();
        (r.status().as_u16(), e.code().code())
    }

    #[test]
    fn every_kind_of_error_has_its_status_and_code() {
        let cases: Vec<(ApiError, (u16, u16))> = vec![
            (
                ApiError::BadArgument {
                    name: "threshold",
                    reason: "x".into(),
                },
                (400, 1001),
            ),
            (
                ApiError::MissingArgument { name: "face_token" },
                (400, 1002),
            ),
            (
                facerec::Error::UnsupportedFormat { found: "GIF" }.into(),
                (400, 1004),
            ),
            (
                facerec::Error::FileTooLarge { bytes: 3, max: 2 }.into(),
                (413, 1004),
            ),
            (
                facerec::Error::TooLarge {
                    width: 5000,
                    height: 5,
                    max: 4096,
                }
                .into(),
                (400, 1004),
            ),
            (
                facerec::Error::Corrupt(std::io::Error::other("x").into()).into(),
                (400, 1004),
            ),
            (
                ApiError::BodyTooLarge {
                    limit: 1,
                    uploads: true,
                },
                (413, 1004),
            ),
            (
                ApiError::BodyTooLarge {
                    limit: 1,
                    uploads: false,
                },
                (413, 1005),
            ),
            (ApiError::Upload { reason: "x".into() }, (400, 1005)),
            (
                ApiError::UnknownToken {
                    token: "t".into(),
                    set: "default".into(),
                },
                (404, 1006),
            ),
            (
                facerec_store::Error::NotFound {
                    set: "s".into(),
                    token: "t".into(),
                }
                .into(),
                (404, 1006),
            ),
            (
                facerec_store::Error::InvalidSetName { name: "a b".into() }.into(),
                (400, 1001),
            ),
            (
                ApiError::NoFace {
                    field: "image_file",
                },
                (400, 1007),
            ),
            (ApiError::Overloaded { capacity: 1 }, (503, 1003)),
            (
                facerec_store::Error::Unavailable {
                    context: "x".into(),
                    source: "connection refused".into(),
                }
                .into(),
                (503, 1003),
            ),
            (ApiError::Internal("x".into()), (500, 1003)),
            (
                ApiError::RouteNotFound {
                    method: "GET".into(),
                    path: "/x".into(),
                },
                (404, 1008),
            ),
            (
                ApiError::Unauthorized {
                    reason: "no key".into(),
                },
                (401, 1010),
            ),
            (
                ApiError::Forbidden {
                    reason: "read key".into(),
                },
                (403, 1011),
            ),
            (
                ApiError::RateLimited {
                    key: "k".into(),
                    per_second: 1,
                    burst: 1,
                    retry_after_s: 2,
                },
                (429, 1012),
            ),
            (
                facerec_store::Error::KeyExists { name: "k".into() }.into(),
                (409, 1001),
            ),
            (
                facerec_store::Error::KeyNotFound { name: "k".into() }.into(),
                (404, 1001),
            ),
        ];
        for (error, expected) in cases {
            let text = error.to_string();
            assert_eq!(answer(error), expected, "{text}");
        }
    }

    #[test]
    fn overload_says_when_to_retry_and_405_says_what_is_allowed() {
        let r = ApiError::Overloaded { capacity: 3 }.error_response();
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let r = ApiError::MethodNotAllowed {
            method: "GET".into(),
            path: "/detect".into(),
            allowed: "POST".into(),
        }
        .error_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers().get(header::ALLOW).unwrap(), "POST");
    }

    #[test]
    fn codes_are_numbered_in_order() {
        let codes: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, (1001..=1012).collect::<Vec<_>>());
    }
}
