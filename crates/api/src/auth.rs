//! API keys at the door: every route says what it needs ([`Access`]), and the middleware
//! of each route finds out who is calling ([`Caller`]), refuses what the caller may not do
//! (401, 403) or may not do so often (429), and leaves the caller in the request for the
//! handlers, which check the face sets.
//!
//! Keys come as `Authorization: Bearer KEY` or `X-API-Key: KEY`. With no key in the store
//! and anonymous access allowed ([`AuthConfig`](crate::AuthConfig)), requests without a key
//! are served as the original API served them (but cannot manage keys).

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use facerec_store::{KeyRecord, Role};

use crate::{ApiError, FaceService};

/// The header a key may come in besides `Authorization: Bearer`.
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Nothing: `/health` and `/ready`.
    Open,
    /// A key of this role or above (or no key, while none exists and anonymous access is
    /// allowed).
    Role(Role),
    /// An admin key that is not limited to face sets: key management.
    Keys,
}

/// Who is calling: known once the route's middleware has let the request in.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No key (allowed while no key exists).
    Anonymous,
    /// This key.
    Key(KeyRecord),
}

impl Caller {
    /// Refuses (403) a face set the caller's key is not allowed.
    pub(crate) fn allow_set(&self, set: &str) -> Result<(), ApiError> {
        match self {
            Caller::Key(key) if !key.allows_set(set) => Err(ApiError::Forbidden {
                reason: format!(
                    "API key '{}' may not use face set '{set}'; it may use: {}",
                    key.name,
                    key.sets.as_deref().unwrap_or_default().join(", ")
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the caller may see face set `set` (in listings).
    pub(crate) fn sees_set(&self, set: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Key(key) => key.allows_set(set),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Every route but the open ones puts the caller there; an open route has no caller
        // to ask about.
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or_else(|| ApiError::Internal("no caller on this route".to_owned())),
        )
    }
}

/// The key a request carries, if any: from `Authorization: Bearer` or `X-API-Key` (the
/// same key when both are sent).
pub(crate) fn presented_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let unauthorized = |reason: &str| ApiError::Unauthorized {
        reason: reason.to_owned(),
    };
    let bearer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| unauthorized("the Authorization header is not ASCII"))?;
            let text = text.trim();
            let (scheme, key) = text.split_once(' ').unwrap_or((text, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(unauthorized(
                    "the Authorization header must be `Bearer <API key>` (or send the key as \
                     X-API-Key)",
                ));
            }
            Some(key.trim())
        }
    };
    let x_api_key = match headers.get(X_API_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| unauthorized("the X-API-Key header is not ASCII"))?
                .trim(),
        ),
    };
    let key = match (bearer, x_api_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(unauthorized(
                "Authorization and X-API-Key carry different keys: send one",
            ));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => return Ok(None),
    };
    if key.is_empty() {
        return Err(unauthorized("the API key is empty"));
    }
    Ok(Some(key.to_owned()))
}

/// The middleware of every route: lets the request in with its [`Caller`], or answers 401,
/// 403 or 429 (the request body is not read then).
pub(crate) async fn authorize(
    access: Access,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if access == Access::Open {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(service) = req.app_data::<Data<FaceService>>().cloned() else {
        let error = ApiError::Internal("the service is not registered".to_owned());
        return Ok(req.error_response(error));
    };
    let what = || {
        format!(
            "{} {}",
            req.method(),
            req.match_pattern().unwrap_or_else(|| req.path().to_owned())
        )
    };
    let caller = match presented_key(req.headers()) {
        Ok(key) => service.authenticate(key, access, what()).await,
        Err(e) => Err(e),
    };
    match caller {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(e) => Ok(req.error_response(e)),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn keys_come_from_either_header() {
        assert_eq!(presented_key(&headers(&[])).unwrap(), None);
        let bearer = headers(&[("authorization", "Bearer frk_abc")]);
        assert_eq!(presented_key(&bearer).unwrap().as_deref(), Some("frk_abc"));
        let lower = headers(&[("authorization", "bearer  frk_abc ")]);
        assert_eq!(presented_key(&lower).unwrap().as_deref(), Some("frk_abc"));
        let x = headers(&[("x-api-key", "frk_abc")]);
        assert_eq!(presented_key(&x).unwrap().as_deref(), Some("frk_abc"));
        let both = headers(&[
            ("authorization", "Bearer frk_abc"),
            ("x-api-key", "frk_abc"),
        ]);
        assert_eq!(presented_key(&both).unwrap().as_deref(), Some("frk_abc"));
    }

    #[test]
    fn malformed_keys_are_refused_with_the_reason() {
        for (pairs, says) in [
            (vec![("authorization", "Basic dXNlcjpwdw==")], "Bearer"),
            (vec![("authorization", "Bearer ")], "empty"),
            (vec![("x-api-key", "")], "empty"),
            (
                vec![("authorization", "Bearer a"), ("x-api-key", "b")],
                "different keys",
            ),
        ] {
            let e = presented_key(&headers(&pairs)).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::Unauthorized);
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
