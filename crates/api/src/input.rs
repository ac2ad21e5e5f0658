//! Request parameters: read from the query string and from a urlencoded or multipart body,
//! with every limit enforced while the body streams in, then validated into typed inputs.
//!
//! Parameters may come from the query string (GET) or from the body (POST: a urlencoded or
//! multipart form, or a JSON object of strings and numbers); when one is given twice the
//! first wins, the query string first. An image comes as a multipart file field
//! (`image_file`) or, in any body, as base64 text (`image_base64`) or as a URL the server
//! fetches (`image_url`, when [`ImageUrlPolicy`](crate::ImageUrlPolicy) allows). Unknown
//! fields are drained without being stored.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_multipart::{Field, Multipart};
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Data, Query};
use actix_web::{FromRequest, HttpRequest};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures_util::future::LocalBoxFuture;
use futures_util::{Stream, StreamExt};

use facerec_store::FaceToken;

use crate::service::{FaceQuery, Ranking, Threshold};
use crate::{ApiError, Limits, fetch};

/// Face set of requests that name none (the original API's).
pub(crate) const DEFAULT_FACE_SET: &str = "default";
/// Name given to a face enrolled without one (the original API's).
pub(crate) const DEFAULT_FACE_NAME: &str = "unknown";

/// The parameters one endpoint reads.
#[derive(Debug)]
pub(crate) struct ParamSpec {
    /// Text parameters.
    pub(crate) text: &'static [&'static str],
    /// Image uploads (multipart file fields).
    pub(crate) files: &'static [&'static str],
    /// The same images as base64 text, in the order of `files` (body only: never from the
    /// query string).
    pub(crate) base64: &'static [&'static str],
    /// The parameters `from_params` cannot do without, for the OpenAPI document (a choice
    /// such as `face_token or image_file` is not listed).
    pub(crate) required: &'static [&'static str],
}

/// The names of one image's three forms: file field, base64 text, URL.
pub(crate) type ImageNames = [&'static str; 3];

/// Every image parameter in its three forms. An endpoint that takes the file takes the URL
/// too (body only), fetched when [`ImageUrlPolicy`](crate::ImageUrlPolicy) allows.
const IMAGE_FORMS: [ImageNames; 3] = [
    ["image_file", "image_base64", "image_url"],
    ["image_file_a", "image_base64_a", "image_url_a"],
    ["image_file_b", "image_base64_b", "image_url_b"],
];

impl ParamSpec {
    /// The three forms of each image in `files` that may also come as a URL.
    pub(crate) fn urls(&self) -> impl Iterator<Item = ImageNames> + '_ {
        self.files
            .iter()
            .filter_map(|file| IMAGE_FORMS.iter().find(|[f, _, _]| f == file).copied())
    }
}

/// Raw parameters, before validation.
#[derive(Debug, Default)]
pub(crate) struct Params {
    text: Vec<(String, String)>,
    files: Vec<(String, Bytes)>,
    /// Images fetched from their URL parameter, by its name.
    fetched: Vec<(&'static str, Bytes)>,
}

impl Params {
    /// A text parameter; an empty value counts as absent.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.text
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.text(name).ok_or(ApiError::MissingArgument { name })
    }

    fn file(&self, name: &str) -> Option<Bytes> {
        self.files
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn has(&self, name: &str) -> bool {
        self.text.iter().any(|(k, _)| k == name) || self.files.iter().any(|(k, _)| k == name)
    }

    /// The image of file field `file`, of its base64 text `base64` or fetched from its URL
    /// `url` (by [`fetch_images`]), at most one of them, with the name it came by; decoded
    /// and held to `limits.decode.max_bytes`.
    fn image(
        &self,
        [file, base64, url]: ImageNames,
        limits: &Limits,
    ) -> Result<Option<(Bytes, &'static str)>, ApiError> {
        self.one_image([file, base64, url])?;
        if let Some(bytes) = self.file(file) {
            return Ok(Some((bytes, file)));
        }
        if let Some(text) = self.text(base64) {
            return decode_base64(base64, text, limits.decode.max_bytes).map(|b| Some((b, base64)));
        }
        if self.text(url).is_some() {
            return match self.fetched.iter().find(|(name, _)| *name == url) {
                Some((_, bytes)) => Ok(Some((bytes.clone(), url))),
                None => Err(ApiError::Internal(format!("{url} was not fetched"))),
            };
        }
        Ok(None)
    }

    /// Refuses an image given more than one way.
    fn one_image(&self, names: ImageNames) -> Result<(), ApiError> {
        let given: Vec<&'static str> = names
            .into_iter()
            .filter(|name| self.file(name).is_some() || self.text(name).is_some())
            .collect();
        let reason = match given[..] {
            [] | [_] => return Ok(()),
            [a, b] => format!("give {a} or {b}, not both"),
            _ => format!("give one of {}, not all three", given.join(", ")),
        };
        Err(ApiError::BadArgument {
            name: given[1],
            reason,
        })
    }

    fn push_text(&mut self, name: String, value: String) {
        if !self.has(&name) {
            self.text.push((name, value));
        }
    }
}

/// An input read and validated from the request, ready for the service.
pub(crate) trait FromParams: Sized {
    /// What to read.
    const SPEC: ParamSpec;
    /// Validates the raw parameters against the limits.
    fn from_params(params: Params, limits: &Limits) -> Result<Self, ApiError>;
}

/// Extractor of a validated input: `Valid(input): Valid<SearchInput>`.
#[derive(Debug)]
pub(crate) struct Valid<T>(pub(crate) T);

impl<T: FromParams + 'static> FromRequest for Valid<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let default;
            let limits = match req.app_data::<Data<Limits>>() {
                Some(limits) => limits.get_ref(),
                None => {
                    default = Limits::default();
                    &default
                }
            };
            let mut params = read_params(&req, payload, &T::SPEC, limits).await?;
            fetch_images(&mut params, &T::SPEC, limits).await?;
            T::from_params(params, limits).map(Valid)
        })
    }
}

/// Fetches, all at once, the images the request gives by URL, each under
/// `limits.image_urls` and held to `limits.decode.max_bytes`; the bytes then go the way of an
/// uploaded file. An image also given another way is refused before anything is fetched.
async fn fetch_images(
    params: &mut Params,
    spec: &ParamSpec,
    limits: &Limits,
) -> Result<(), ApiError> {
    let mut fetches = Vec::new();
    for [file, base64, url] in spec.urls() {
        let Some(text) = params.text(url) else {
            continue;
        };
        if !limits.image_urls.enabled {
            return Err(fetch::disabled(url));
        }
        params.one_image([file, base64, url])?;
        if text.len() > limits.max_text_bytes {
            return Err(ApiError::BadArgument {
                name: url,
                reason: format!("longer than {} bytes", limits.max_text_bytes),
            });
        }
        fetches.push(async move {
            fetch::fetch_image(url, text, &limits.image_urls, limits.decode.max_bytes)
                .await
                .map(|bytes| (url, bytes))
        });
    }
    if !fetches.is_empty() {
        let fetched = futures_util::future::try_join_all(fetches).await?;
        params.fetched.extend(fetched);
    }
    Ok(())
}

/// What kind of body a request has.
enum Body {
    None,
    UrlEncoded,
    Multipart,
    Json,
    Other(String),
}

fn body_kind(req: &HttpRequest) -> Body {
    let headers = req.headers();
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let has_body = chunked || declared_len.is_some_and(|n| n > 0);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match content_type {
        _ if !has_body => Body::None,
        None => Body::Other("none".to_owned()),
        Some(ct) => {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence == "application/x-www-form-urlencoded" {
                Body::UrlEncoded
            } else if essence.starts_with("multipart/") {
                Body::Multipart
            } else if essence == "application/json" || essence.ends_with("+json") {
                Body::Json
            } else {
                Body::Other(ct)
            }
        }
    }
}

/// Reads the query string and the body into [`Params`].
async fn read_params(
    req: &HttpRequest,
    payload: Payload,
    spec: &ParamSpec,
    limits: &Limits,
) -> Result<Params, ApiError> {
    let mut params = Params::default();
    let query = Query::<Vec<(String, String)>>::from_query(req.query_string()).map_err(|e| {
        ApiError::BadArgument {
            name: "query string",
            reason: e.to_string(),
        }
    })?;
    for (name, value) in query.into_inner() {
        if spec.text.contains(&name.as_str()) {
            params.push_text(name, value);
        }
    }

    let uploads = !spec.files.is_empty();
    let max_body = limits.max_body(spec.files.len());
    let too_large = ApiError::BodyTooLarge {
        limit: max_body,
        uploads,
    };
    let kind = body_kind(req);
    let params_mut = &mut params;
    read_body(
        req,
        payload,
        max_body,
        too_large,
        limits,
        |body| async move {
            match kind {
                Body::None => Ok(()),
                Body::UrlEncoded => read_urlencoded(body, spec, limits, params_mut).await,
                Body::Multipart => read_multipart(req, body, spec, limits, params_mut).await,
                Body::Json => read_json(body, spec, limits, params_mut).await,
                Body::Other(content_type) => Err(ApiError::Upload {
                    reason: format!(
                        "Content-Type '{content_type}' is not accepted: send multipart/form-data, \
                     application/x-www-form-urlencoded or application/json{}",
                        if uploads { "" } else { ", or query parameters" }
                    ),
                }),
            }
        },
    )
    .await?;
    Ok(params)
}

/// Reads a request body with `read`: refused before a byte is read when its declared length
/// passes `limit`, cut when it streams past it, and held to `limits.body_timeout`. A body
/// past the limit is `too_large`, whatever error `read` saw.
pub(crate) async fn read_body<T, Fut>(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
    too_large: ApiError,
    limits: &Limits,
    read: impl FnOnce(LimitedBody) -> Fut,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Refused before reading a byte; the HTTP layer then reads and discards what the
        // client still sends for a while (actix's linger), so the client sees this answer.
        return Err(too_large);
    }
    let (body, exceeded) = LimitedBody::new(payload, limit);
    let result = actix_web::rt::time::timeout(limits.body_timeout, read(body))
        .await
        .map_err(|_| ApiError::Upload {
            reason: format!(
                "the request body was not received within {} s",
                limits.body_timeout.as_secs()
            ),
        })
        .and_then(|r| r);
    match result {
        // Whatever error the parser saw, a body past the limit is the real cause.
        Err(_) if exceeded.get() => Err(too_large),
        other => other,
    }
}

/// The request body, failing (and saying so) once it passes `limit` bytes: nothing past the
/// limit is ever buffered.
pub(crate) struct LimitedBody {
    inner: Payload,
    seen: usize,
    limit: usize,
    exceeded: Rc<Cell<bool>>,
}

impl LimitedBody {
    /// `payload`, failing past `limit` bytes; the flag tells afterwards whether it did.
    pub(crate) fn new(payload: Payload, limit: usize) -> (Self, Rc<Cell<bool>>) {
        let exceeded = Rc::new(Cell::new(false));
        let body = Self {
            inner: payload,
            seen: 0,
            limit,
            exceeded: Rc::clone(&exceeded),
        };
        (body, exceeded)
    }
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.exceeded.get() {
            return Poll::Ready(Some(Err(PayloadError::Overflow)));
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len();
                if self.seen > self.limit {
                    self.exceeded.set(true);
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                } else {
                    Poll::Ready(Some(Ok(chunk)))
                }
            }
            other => other,
        }
    }
}

/// The name of a text parameter a body may carry for `spec` (text, base64 image or image
/// URL).
fn body_text_name(spec: &ParamSpec, name: &str) -> Option<&'static str> {
    spec.text
        .iter()
        .chain(spec.base64)
        .copied()
        .chain(spec.urls().map(|[_, _, url]| url))
        .find(|n| *n == name)
}

/// A whole urlencoded or JSON body, at most `limits.max_form_bytes` long, or as long as the
/// base64 text of the endpoint's images allows.
async fn read_small_body(
    mut body: LimitedBody,
    spec: &ParamSpec,
    limits: &Limits,
) -> Result<BytesMut, ApiError> {
    let limit = if spec.base64.is_empty() {
        limits.max_form_bytes
    } else {
        limits.max_body(spec.base64.len())
    };
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(upload_error)?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge {
                limit,
                uploads: !spec.base64.is_empty(),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

async fn read_urlencoded(
    body: LimitedBody,
    spec: &ParamSpec,
    limits: &Limits,
    params: &mut Params,
) -> Result<(), ApiError> {
    let buf = read_small_body(body, spec, limits).await?;
    let text = std::str::from_utf8(&buf).map_err(|_| ApiError::Upload {
        reason: "the urlencoded body is not UTF-8".to_owned(),
    })?;
    let fields =
        Query::<Vec<(String, String)>>::from_query(text).map_err(|e| ApiError::Upload {
            reason: format!("the urlencoded body cannot be parsed: {e}"),
        })?;
    for (name, value) in fields.into_inner() {
        if body_text_name(spec, &name).is_some() {
            params.push_text(name, value);
        }
    }
    Ok(())
}

/// A JSON object whose members are the parameters: strings, or numbers for numeric ones;
/// `null` counts as absent.
async fn read_json(
    body: LimitedBody,
    spec: &ParamSpec,
    limits: &Limits,
    params: &mut Params,
) -> Result<(), ApiError> {
    use serde_json::Value;
    let buf = read_small_body(body, spec, limits).await?;
    let value: Value = serde_json::from_slice(&buf).map_err(|e| ApiError::Upload {
        reason: format!("the JSON body cannot be parsed: {e}"),
    })?;
    let Value::Object(members) = value else {
        return Err(ApiError::Upload {
            reason: "the JSON body must be an object of parameters, e.g. {\"face_token\": \"...\"}"
                .to_owned(),
        });
    };
    for (name, value) in members {
        let Some(known) = body_text_name(spec, &name) else {
            continue;
        };
        let text = match value {
            Value::String(text) => text,
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            other => {
                return Err(ApiError::BadArgument {
                    name: known,
                    reason: format!(
                        "a JSON {} where a string is expected",
                        match other {
                            Value::Bool(_) => "boolean",
                            Value::Array(_) => "array",
                            _ => "object",
                        }
                    ),
                });
            }
        };
        params.push_text(name, text);
    }
    Ok(())
}

async fn read_multipart(
    req: &HttpRequest,
    body: LimitedBody,
    spec: &ParamSpec,
    limits: &Limits,
    params: &mut Params,
) -> Result<(), ApiError> {
    let mut multipart = Multipart::new(req.headers(), body);
    let mut fields = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(multipart_error)?;
        fields += 1;
        if fields > limits.max_fields {
            return Err(ApiError::Upload {
                reason: format!("more than {} multipart fields", limits.max_fields),
            });
        }
        let name = field.name().unwrap_or_default().to_owned();
        if params.has(&name) {
            drain(&mut field).await?;
        } else if let Some(&file) = spec.files.iter().find(|f| **f == name) {
            let limit = limits.decode.max_bytes;
            let bytes =
                read_field(&mut field, limit)
                    .await?
                    .ok_or_else(|| ApiError::FileTooLarge {
                        field: file.to_owned(),
                        limit,
                    })?;
            params.files.push((name, bytes));
        } else if let Some(text) = body_text_name(spec, &name) {
            let limit = if spec.base64.contains(&text) {
                limits.max_base64_bytes()
            } else {
                limits.max_text_bytes
            };
            let bytes =
                read_field(&mut field, limit)
                    .await?
                    .ok_or_else(|| ApiError::BadArgument {
                        name: text,
                        reason: format!("longer than {limit} bytes"),
                    })?;
            let value = String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::BadArgument {
                name: text,
                reason: "not UTF-8".to_owned(),
            })?;
            params.push_text(name, value);
        } else {
            drain(&mut field).await?;
        }
    }
    Ok(())
}

/// The field's bytes, or `None` once it passes `limit` (the rest is not read).
pub(crate) async fn read_field(field: &mut Field, limit: usize) -> Result<Option<Bytes>, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(multipart_error)?;
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// Reads a field to its end, keeping nothing (the body limit still applies).
pub(crate) async fn drain(field: &mut Field) -> Result<(), ApiError> {
    while let Some(chunk) = field.next().await {
        chunk.map_err(multipart_error)?;
    }
    Ok(())
}

fn upload_error(e: PayloadError) -> ApiError {
    ApiError::Upload {
        reason: e.to_string(),
    }
}

pub(crate) fn multipart_error(e: actix_multipart::MultipartError) -> ApiError {
    let reason = match &e {
        actix_multipart::MultipartError::Payload(p) => format!("multipart body: {p}"),
        other => format!("multipart body: {other}"),
    };
    ApiError::Upload { reason }
}

/// Base64 as clients send it: the standard or URL-safe alphabet, padded or not.
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The bytes of parameter `name`'s base64 text: line breaks are skipped, a `data:` URL
/// prefix (`data:image/jpeg;base64,`) is taken off, and spaces count as `+` (what a `+` left
/// unescaped in a urlencoded form becomes). More than `max_bytes` decoded is
/// [`ApiError::FileTooLarge`], bad text [`ApiError::BadArgument`].
pub(crate) fn decode_base64(
    name: &'static str,
    text: &str,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    let bad = |reason: String| ApiError::BadArgument { name, reason };
    let mut text = text.trim();
    if let Some(url) = text.strip_prefix("data:") {
        text = match url.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            _ => {
                return Err(bad(
                    "a data: URL must carry base64 (data:image/jpeg;base64,...)".to_owned(),
                ));
            }
        };
    }
    let compact: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n' | b'\t'))
        .map(|b| if b == b' ' { b'+' } else { b })
        .collect();
    let too_large = || ApiError::FileTooLarge {
        field: name.to_owned(),
        limit: max_bytes,
    };
    // checked before decoding, so that nothing much larger than the limit is allocated
    if compact.len() / 4 * 3 > max_bytes + 3 {
        return Err(too_large());
    }
    let engine = if compact.iter().any(|b| matches!(b, b'-' | b'_')) {
        &BASE64_URL_SAFE
    } else {
        &BASE64_STANDARD
    };
    let bytes = engine
        .decode(&compact)
        .map_err(|e| bad(format!("not valid base64: {e}")))?;
    if bytes.len() > max_bytes {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(bad("the base64 text decodes to no bytes".to_owned()));
    }
    Ok(Bytes::from(bytes))
}

// ---- validation -------------------------------------------------------------------------

fn face_set(params: &Params) -> Result<String, ApiError> {
    let set = params.text("face_set").unwrap_or(DEFAULT_FACE_SET);
    facerec_store::validate_set_name(set).map_err(|e| ApiError::BadArgument {
        name: "face_set",
        reason: e.to_string(),
    })?;
    Ok(set.to_owned())
}

fn token(params: &Params, name: &'static str) -> Result<Option<FaceToken>, ApiError> {
    params
        .text(name)
        .map(|text| {
            FaceToken::parse(text).map_err(|e| ApiError::BadArgument {
                name,
                reason: e.to_string(),
            })
        })
        .transpose()
}

fn required_token(params: &Params, name: &'static str) -> Result<FaceToken, ApiError> {
    token(params, name)?.ok_or(ApiError::MissingArgument { name })
}

/// A number parameter in `min..=max`.
fn number(
    params: &Params,
    name: &'static str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ApiError> {
    let Some(text) = params.text(name) else {
        return Ok(None);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::BadArgument {
            name,
            reason: format!(
                "'{}' is not a whole number from {min} to {max}",
                text.escape_default()
            ),
        }),
    }
}

/// A face given by token (`token_name`) or by photo (file, base64 text or URL: `image`),
/// exactly one of them.
fn face_query(
    params: &Params,
    limits: &Limits,
    token_name: &'static str,
    image: ImageNames,
    either: &'static str,
) -> Result<FaceQuery, ApiError> {
    match (token(params, token_name)?, params.image(image, limits)?) {
        (Some(token), None) => Ok(FaceQuery::Token(token)),
        (None, Some((bytes, label))) => Ok(FaceQuery::Image {
            bytes,
            label,
            min_face: min_face(params, limits)?,
        }),
        (Some(_), Some(_)) => Err(ApiError::BadArgument {
            name: token_name,
            reason: format!("give only one of {either}"),
        }),
        (None, None) => Err(ApiError::MissingArgument { name: either }),
    }
}

/// The smallest face a photo's detection looks for (`min_face`), at least
/// [`MIN_FACE`] pixels and at most the image side limit; `None` when not given.
fn min_face(params: &Params, limits: &Limits) -> Result<Option<u32>, ApiError> {
    let most = limits.decode.max_side.max(MIN_FACE) as usize;
    Ok(number(params, "min_face", MIN_FACE as usize, most)?.map(|n| n as u32))
}

/// The smallest `min_face` a request may ask for, and the default: the detector's 30 px.
pub(crate) const MIN_FACE: u32 = 30;

/// `POST /detect`.
#[derive(Debug)]
pub(crate) struct DetectInput {
    pub(crate) image: Bytes,
    /// `min_face`: only faces of at least this many pixels.
    pub(crate) min_face: Option<u32>,
}

impl FromParams for DetectInput {
    const SPEC: ParamSpec = ParamSpec {
        text: &["min_face"],
        files: &["image_file"],
        base64: &["image_base64"],
        required: &[],
    };

    fn from_params(params: Params, limits: &Limits) -> Result<Self, ApiError> {
        let (image, _) = params
            .image(["image_file", "image_base64", "image_url"], limits)?
            .ok_or(ApiError::MissingArgument {
                name: "image_file, image_base64 or image_url",
            })?;
        Ok(Self {
            image,
            min_face: min_face(&params, limits)?,
        })
    }
}

/// `/addface`.
#[derive(Debug)]
pub(crate) struct AddFaceInput {
    pub(crate) token: FaceToken,
    pub(crate) name: String,
    pub(crate) set: String,
}

impl FromParams for AddFaceInput {
    const SPEC: ParamSpec = ParamSpec {
        text: &["face_token", "face_name", "face_set"],
        files: &[],
        base64: &[],
        required: &["face_token"],
    };

    fn from_params(params: Params, _: &Limits) -> Result<Self, ApiError> {
        let token = required_token(&params, "face_token")?;
        let name = params.text("face_name").unwrap_or(DEFAULT_FACE_NAME);
        facerec_store::validate_name(name).map_err(|e| ApiError::BadArgument {
            name: "face_name",
            reason: e.to_string(),
        })?;
        Ok(Self {
            token,
            name: name.to_owned(),
            set: face_set(&params)?,
        })
    }
}

/// `/removeface`.
#[derive(Debug)]
pub(crate) struct RemoveFaceInput {
    pub(crate) token: FaceToken,
    pub(crate) set: String,
}

impl FromParams for RemoveFaceInput {
    const SPEC: ParamSpec = ParamSpec {
        text: &["face_token", "face_set"],
        files: &[],
        base64: &[],
        required: &["face_token"],
    };

    fn from_params(params: Params, _: &Limits) -> Result<Self, ApiError> {
        Ok(Self {
            token: required_token(&params, "face_token")?,
            set: face_set(&params)?,
        })
    }
}

/// `/search`.
#[derive(Debug)]
pub(crate) struct SearchInput {
    pub(crate) query: FaceQuery,
    pub(crate) threshold: Threshold,
    pub(crate) set: String,
    /// `top_k` and `group_by`.
    pub(crate) ranking: Ranking,
}

impl FromParams for SearchInput {
    const SPEC: ParamSpec = ParamSpec {
        text: &[
            "face_token",
            "threshold",
            "top_k",
            "face_set",
            "group_by",
            "min_face",
        ],
        files: &["image_file"],
        base64: &["image_base64"],
        required: &["threshold"],
    };

    fn from_params(params: Params, limits: &Limits) -> Result<Self, ApiError> {
        let query = face_query(
            &params,
            limits,
            "face_token",
            ["image_file", "image_base64", "image_url"],
            "face_token, image_file, image_base64 or image_url",
        )?;
        let threshold = Threshold::parse(params.required("threshold")?, limits.max_threshold)
            .map_err(|reason| ApiError::BadArgument {
                name: "threshold",
                reason,
            })?;
        Ok(Self {
            query,
            threshold,
            set: face_set(&params)?,
            ranking: Ranking {
                top_k: number(&params, "top_k", 1, limits.max_top_k)?,
                best_per_name: match params.text("group_by") {
                    None => false,
                    Some("name") => true,
                    Some(other) => {
                        return Err(ApiError::BadArgument {
                            name: "group_by",
                            reason: format!(
                                "'{}' is not a grouping: the one there is is 'name'",
                                other.escape_default()
                            ),
                        });
                    }
                },
            },
        })
    }
}

/// `/compare`.
#[derive(Debug)]
pub(crate) struct CompareInput {
    pub(crate) a: FaceQuery,
    pub(crate) b: FaceQuery,
    /// Where enrolled tokens are looked up when not in the token cache.
    pub(crate) set: String,
}

impl FromParams for CompareInput {
    const SPEC: ParamSpec = ParamSpec {
        text: &["face_token_a", "face_token_b", "face_set", "min_face"],
        files: &["image_file_a", "image_file_b"],
        base64: &["image_base64_a", "image_base64_b"],
        required: &[],
    };

    fn from_params(params: Params, limits: &Limits) -> Result<Self, ApiError> {
        Ok(Self {
            a: face_query(
                &params,
                limits,
                "face_token_a",
                ["image_file_a", "image_base64_a", "image_url_a"],
                "face_token_a, image_file_a, image_base64_a or image_url_a",
            )?,
            b: face_query(
                &params,
                limits,
                "face_token_b",
                ["image_file_b", "image_base64_b", "image_url_b"],
                "face_token_b, image_file_b, image_base64_b or image_url_b",
            )?,
            set: face_set(&params)?,
        })
    }
}

/// `GET /faceset`.
#[derive(Debug)]
pub(crate) struct FaceSetPageInput {
    pub(crate) set: String,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

impl FromParams for FaceSetPageInput {
    const SPEC: ParamSpec = ParamSpec {
        text: &["face_set", "offset", "limit"],
        files: &[],
        base64: &[],
        required: &[],
    };

    fn from_params(params: Params, limits: &Limits) -> Result<Self, ApiError> {
        Ok(Self {
            set: face_set(&params)?,
            offset: number(&params, "offset", 0, usize::MAX)?.unwrap_or(0),
            limit: number(&params, "limit", 1, limits.max_page)?.unwrap_or(limits.default_page),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in text {
            p.push_text((*k).to_owned(), (*v).to_owned());
        }
        p
    }

    fn search(p: Params) -> Result<SearchInput, ApiError> {
        SearchInput::from_params(p, &Limits::default())
    }

    fn add_face(p: Params) -> Result<AddFaceInput, ApiError> {
        AddFaceInput::from_params(p, &Limits::default())
    }

    #[test]
    fn thresholds_must_be_sane_distances() {
        let threshold = |text: &str| {
            search(params(&[("face_token", "t"), ("threshold", text)])).map(|s| s.threshold)
        };
        assert_eq!(threshold("0.65").unwrap().value(), 0.65);
        assert_eq!(threshold(" 0.6 ").unwrap().value(), 0.6);
        assert_eq!(threshold(" 0.6 ").unwrap().as_str(), "0.6");
        assert_eq!(threshold("1").unwrap().value(), 1.0);
        for bad in ["abc", "-1", "0", "nan", "NaN", "inf", "-inf", "4.5", "0.6x"] {
            let err = threshold(bad).unwrap_err();
            assert_eq!(err.code().code(), 1001, "{bad}: {err}");
        }
        assert!(Threshold::parse("", 4.0).is_err());
        // an empty parameter is a missing one
        assert_eq!(threshold("").unwrap_err().code().code(), 1002);
    }

    #[test]
    fn first_value_wins_and_empty_is_absent() {
        let p = params(&[("face_token", "a"), ("face_token", "b"), ("face_name", "")]);
        assert_eq!(p.text("face_token"), Some("a"));
        assert_eq!(p.text("face_name"), None);
    }

    #[test]
    fn addface_defaults_and_limits() {
        let ok = add_face(params(&[("face_token", "t"), ("face_name", "")])).unwrap();
        assert_eq!((ok.name.as_str(), ok.set.as_str()), ("unknown", "default"));
        let long = "x".repeat(257);
        let err = add_face(params(&[("face_token", "t"), ("face_name", &long)])).unwrap_err();
        assert_eq!(err.code().code(), 1001);
        let err = add_face(params(&[("face_name", "x")])).unwrap_err();
        assert_eq!(err.code().code(), 1002);
        let err = add_face(params(&[("face_token", "t"), ("face_set", "a b")])).unwrap_err();
        assert_eq!(err.code().code(), 1001);
    }

    /// `valid` is enough for `T`; without any one of `T::SPEC.required` it is missing that one.
    fn requires_what_it_documents<T: FromParams + std::fmt::Debug>(valid: &[(&str, &str)]) {
        let without = |skipped: Option<&str>| {
            let mut p = Params::default();
            for &(name, value) in valid.iter().filter(|(name, _)| Some(*name) != skipped) {
                if T::SPEC.files.contains(&name) {
                    p.files
                        .push((name.to_owned(), Bytes::from(value.to_owned())));
                } else {
                    p.push_text(name.to_owned(), value.to_owned());
                }
            }
            T::from_params(p, &Limits::default())
        };
        without(None).unwrap();
        for required in T::SPEC.required {
            match without(Some(required)) {
                Err(ApiError::MissingArgument { name }) => assert_eq!(name, *required),
                other => panic!("without {required}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_documented_required_parameters_are_required() {
        requires_what_it_documents::<DetectInput>(&[("image_file", "jpeg bytes")]);
        requires_what_it_documents::<AddFaceInput>(&[("face_token", "t")]);
        requires_what_it_documents::<RemoveFaceInput>(&[("face_token", "t")]);
        requires_what_it_documents::<SearchInput>(&[("face_token", "t"), ("threshold", "0.6")]);
        requires_what_it_documents::<CompareInput>(&[("face_token_a", "a"), ("face_token_b", "b")]);
        requires_what_it_documents::<FaceSetPageInput>(&[]);
    }

    #[test]
    fn every_image_comes_three_ways_and_one_at_a_time() {
        for spec in [DetectInput::SPEC, SearchInput::SPEC, CompareInput::SPEC] {
            let forms: Vec<ImageNames> = spec.urls().collect();
            assert_eq!(forms.len(), spec.files.len(), "{spec:?}");
            for ([file, base64, _], (f, b)) in forms.iter().zip(spec.files.iter().zip(spec.base64))
            {
                assert_eq!((file, base64), (f, b));
            }
        }
        let mut p = params(&[("image_url", "http://x/"), ("image_base64", "AAAA")]);
        let names = IMAGE_FORMS[0];
        let err = p.image(names, &Limits::default()).unwrap_err().to_string();
        assert!(
            err.contains("give image_base64 or image_url, not both"),
            "{err}"
        );
        p.files
            .push(("image_file".to_owned(), Bytes::from_static(b"x")));
        let err = p.image(names, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("not all three"), "{err}");
        // a URL is only ever taken as fetched bytes
        let p = params(&[("image_url", "http://x/")]);
        let err = p.image(names, &Limits::default()).unwrap_err();
        assert_eq!(err.code().code(), 1003);
    }

    #[test]
    fn search_needs_a_query_and_a_threshold() {
        let err = search(params(&[("threshold", "0.6")])).unwrap_err();
        assert!(matches!(
            err,
            ApiError::MissingArgument {
                name: "face_token, image_file, image_base64 or image_url"
            }
        ));
        let err = search(params(&[("face_token", "t")])).unwrap_err();
        assert!(matches!(
            err,
            ApiError::MissingArgument { name: "threshold" }
        ));
        let err = search(params(&[
            ("face_token", "t"),
            ("threshold", "0.6"),
            ("top_k", "0"),
        ]))
        .unwrap_err();
        assert_eq!(err.code().code(), 1001);
        let ok = search(params(&[
            ("face_token", "t"),
            ("threshold", "0.65"),
            ("top_k", "3"),
        ]))
        .unwrap();
        assert_eq!(
            (
                ok.threshold.as_str(),
                ok.ranking.top_k,
                ok.ranking.best_per_name
            ),
            ("0.65", Some(3), false)
        );
        let grouped = |value: &str| {
            search(params(&[
                ("face_token", "t"),
                ("threshold", "0.6"),
                ("group_by", value),
            ]))
        };
        assert!(grouped("name").unwrap().ranking.best_per_name);
        assert_eq!(grouped("token").unwrap_err().code().code(), 1001);
    }

    #[test]
    fn min_face_is_a_whole_number_from_30_to_the_side_limit() {
        let limits = Limits::default();
        let given = |value: &str| min_face(&params(&[("min_face", value)]), &limits);
        assert_eq!(min_face(&params(&[]), &limits).unwrap(), None);
        assert_eq!(given("30").unwrap(), Some(30));
        assert_eq!(given(" 200 ").unwrap(), Some(200));
        assert_eq!(given("4096").unwrap(), Some(4096));
        for bad in ["29", "0", "-40", "4097", "40.5", "big"] {
            let err = given(bad).unwrap_err();
            assert_eq!(err.code().code(), 1001, "{bad}");
            assert!(err.to_string().contains("min_face"), "{bad}: {err}");
        }
        let err = given("29").unwrap_err();
        assert!(format!("{err:?}").contains("from 30 to 4096"), "{err:?}");
    }
}
