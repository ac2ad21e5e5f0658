//! The OpenAPI document, generated: operations from the handlers' `#[utoipa::path]`
//! attributes, schemas from the reply types, parameters and form bodies from what each input
//! reads ([`ParamSpec`]), and the error answers the operations share. Built once, served at
//! `GET /openapi.json`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use facerec::DecodeLimits;
use facerec_store::{FaceToken, MAX_NAME_BYTES, MAX_SET_NAME_CHARS, MAX_TOKEN_BYTES};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use crate::Limits;
use crate::error::ErrorBody;
use crate::handlers;
use crate::input::{
    AddFaceInput, CompareInput, DEFAULT_FACE_NAME, DEFAULT_FACE_SET, DetectInput, FaceSetPageInput,
    FromParams, MIN_FACE, ParamSpec, RemoveFaceInput, SearchInput,
};

/// What `info.description` says.
const DESCRIPTION: &str = "Self-hosted face recognition. Compatible with the original Face API: \
    every success carries `sucess` (sic) and `success`; every error is `{sucess, success, \
    error_code, error_message, detail}`. Parameters may be sent as query parameters or as form \
    fields (urlencoded or multipart) on /addface, /removeface, /search and /compare; images are \
    multipart file fields. Every response carries an X-Request-Id header.";

/// Every route's operation, in the route table's order.
#[derive(OpenApi)]
#[openapi(
    info(title = "facerec Face API", description = DESCRIPTION),
    paths(
        handlers::detect,
        handlers::add_face,
        handlers::add_face_form,
        handlers::remove_face,
        handlers::remove_face_form,
        handlers::search,
        handlers::search_form,
        handlers::compare,
        handlers::compare_form,
        handlers::face_sets,
        handlers::face_set,
        handlers::enroll,
        handlers::crop,
        handlers::health,
        handlers::ready,
        handlers::metrics,
        handlers::openapi,
        handlers::list_keys,
        handlers::create_key,
        handlers::revoke_key,
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            NotFound,
            MethodNotAllowed,
            PayloadTooLarge,
            InternalError,
            Overloaded,
            Unauthorized,
            Forbidden,
            RateLimited,
        )
    ),
    modifiers(&OptionalForms, &Untagged, &Secured)
)]
struct ApiDoc;

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
        // Only maps with non-string keys fail to serialise; the document has none.
        tracing::error!(error = %e, "the OpenAPI document cannot be serialised");
        String::from("{}")
    })
});

/// The OpenAPI 3 document describing every route, served at `GET /openapi.json`: generated
/// from the handlers, the reply types and the parameters each route reads, built on first use.
///
/// ```
/// let doc: serde_json::Value = serde_json::from_str(facerec_api::openapi_json())?;
/// assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
/// assert_eq!(doc["paths"]["/detect"]["post"]["operationId"], "detect");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn openapi_json() -> &'static str {
    &DOCUMENT
}

/// The operations are not grouped: utoipa would tag each with its handler's module.
struct Untagged;

impl Modify for Untagged {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                operation.tags = None;
            }
        }
    }
}

// ---- the error answers operations share -------------------------------------------------

/// One of the error answers many operations share under `components/responses`, by status:
/// an operation lists the ones it can give, e.g. `responses(..., BadRequest, InternalError)`.
pub(crate) struct SharedError<const STATUS: u16>;

/// 400 with an error body.
pub(crate) type BadRequest = SharedError<400>;
/// 404 with an error body.
pub(crate) type NotFound = SharedError<404>;
/// 405 with an error body.
pub(crate) type MethodNotAllowed = SharedError<405>;
/// 413 with an error body.
pub(crate) type PayloadTooLarge = SharedError<413>;
/// 500 with an error body.
pub(crate) type InternalError = SharedError<500>;
/// 503 with an error body and `Retry-After`.
pub(crate) type Overloaded = SharedError<503>;
/// 401 with an error body.
pub(crate) type Unauthorized = SharedError<401>;
/// 403 with an error body.
pub(crate) type Forbidden = SharedError<403>;
/// 429 with an error body and `Retry-After`.
pub(crate) type RateLimited = SharedError<429>;

/// How a shared error answer is documented.
struct SharedErrorDoc {
    name: &'static str,
    description: &'static str,
    header: Option<&'static str>,
}

impl<const STATUS: u16> SharedError<STATUS> {
    /// A status without a shared answer does not compile.
    const DOC: SharedErrorDoc = match STATUS {
        400 => SharedErrorDoc {
            name: "BadRequest",
            description: "1001 BAD_ARGUMENTS, 1002 MISSING_ARGUMENTS, 1004 FILE_ERROR, \
                1005 UPLOAD_ERROR or 1007 FACE_INFO_ERROR.",
            header: None,
        },
        404 => SharedErrorDoc {
            name: "NotFound",
            description: "1006 FACE_TOKEN_ERROR (unknown or expired token, or missing crop) \
                or 1008 NOT_FOUND (no such route).",
            header: None,
        },
        405 => SharedErrorDoc {
            name: "MethodNotAllowed",
            description: "1009 METHOD_NOT_ALLOWED; the Allow header lists the methods.",
            header: None,
        },
        413 => SharedErrorDoc {
            name: "PayloadTooLarge",
            description: "1004 FILE_ERROR: an image over 2 MiB or a body over its limit \
                (1005 for bodies without uploads).",
            header: None,
        },
        500 => SharedErrorDoc {
            name: "InternalError",
            description: "1003 INTERNAL_ERROR.",
            header: None,
        },
        503 => SharedErrorDoc {
            name: "Overloaded",
            description: "1003 INTERNAL_ERROR: the inference queue is full, or the shared face \
                store (PostgreSQL) cannot be reached now; retry after the Retry-After header \
                (1 s).",
            header: Some("Retry-After"),
        },
        401 => SharedErrorDoc {
            name: "Unauthorized",
            description: "1010 UNAUTHORIZED: no API key while keys exist, or an unknown or \
                revoked one.",
            header: Some("WWW-Authenticate"),
        },
        403 => SharedErrorDoc {
            name: "Forbidden",
            description: "1011 FORBIDDEN: the key's role does not allow this, or the key may \
                not use this face set.",
            header: None,
        },
        429 => SharedErrorDoc {
            name: "RateLimited",
            description: "1012 RATE_LIMITED: the key sent more requests than its rate allows; \
                retry after the Retry-After header (seconds).",
            header: Some("Retry-After"),
        },
        _ => panic!("no shared error answer has this status"),
    };
}

impl<'r, const STATUS: u16> ToResponse<'r> for SharedError<STATUS> {
    fn response() -> (&'r str, RefOr<Response>) {
        let doc = Self::DOC;
        let body = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build();
        let mut response = ResponseBuilder::new()
            .description(doc.description)
            .content("application/json", body);
        if let Some(header) = doc.header {
            let seconds =
                HeaderBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Integer)));
            response = response.header(header, seconds.build());
        }
        (doc.name, response.build().into())
    }
}

impl<const STATUS: u16> IntoResponses for SharedError<STATUS> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let reference = Ref::from_response_name(Self::DOC.name);
        BTreeMap::from([(STATUS.to_string(), reference.into())])
    }
}

// ---- parameters and form bodies -----------------------------------------------------------

/// Each input documents the parameters it reads: as query parameters (`params(AddFaceInput)`)
/// and as a form body (`request_body(content((inline(AddFaceInput) = "multipart/form-data")))`).
macro_rules! document_inputs {
    ($($input:ty),* $(,)?) => {$(
        impl IntoParams for $input {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                query_parameters(&<$input as FromParams>::SPEC, false)
            }
        }

        impl PartialSchema for $input {
            fn schema() -> RefOr<Schema> {
                form(&<$input as FromParams>::SPEC).into()
            }
        }

        impl ToSchema for $input {}
    )*};
}

document_inputs!(
    crate::keys::CreateKeyInput,
    DetectInput,
    AddFaceInput,
    RemoveFaceInput,
    SearchInput,
    CompareInput,
    FaceSetPageInput,
);

/// The parameters of a GET operation (`params(Get<AddFaceInput>)`): the query string is all
/// there is, so the parameters the input cannot do without are required there.
pub(crate) struct Get<T>(std::marker::PhantomData<T>);

impl<T: FromParams> IntoParams for Get<T> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        query_parameters(&T::SPEC, true)
    }
}

/// The text parameters in the query string: each optional where a form body may carry it
/// instead (`in_query_only` false), else required when the input requires it.
fn query_parameters(spec: &ParamSpec, in_query_only: bool) -> Vec<Parameter> {
    spec.text
        .iter()
        .map(|name| {
            let required = in_query_only && spec.required.contains(name);
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(if required {
                    Required::True
                } else {
                    Required::False
                })
                .schema(Some(text_parameter(name).unwrap_or_else(plain_text)))
                .build()
        })
        .collect()
}

/// The form body: text parameters, then image uploads.
fn form(spec: &ParamSpec) -> Object {
    let mut form = ObjectBuilder::new().schema_type(Type::Object);
    for name in spec.text {
        form = form.property(*name, text_parameter(name).unwrap_or_else(plain_text));
    }
    for name in spec.files {
        form = form.property(*name, image_upload());
    }
    for (name, file) in spec.base64.iter().zip(spec.files) {
        form = form.property(*name, image_base64(file));
    }
    for [file, _, url] in spec.urls() {
        form = form.property(url, image_url(file));
    }
    for name in spec.required {
        form = form.required(*name);
    }
    form.build()
}

/// The schema of a text parameter, by name; `None` for a name not documented here.
fn text_parameter(name: &str) -> Option<Object> {
    let limits = Limits::default();
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let whole_number = || ObjectBuilder::new().schema_type(Type::Integer);
    let schema = match name {
        "face_token" | "face_token_a" | "face_token_b" => text()
            .max_length(Some(MAX_TOKEN_BYTES))
            .description(Some(format!(
                "A face token from /detect ({} letters and digits).",
                FaceToken::GENERATED_LEN
            ))),
        "face_name" => text()
            .max_length(Some(MAX_NAME_BYTES))
            .description(Some(format!(
                "Name of the face (at most {MAX_NAME_BYTES} bytes of UTF-8); empty or absent means \
             '{DEFAULT_FACE_NAME}'."
            ))),
        "face_set" => text()
            .pattern(Some(format!("^[A-Za-z0-9_-]{{1,{MAX_SET_NAME_CHARS}}}$")))
            .default(Some(DEFAULT_FACE_SET.into()))
            .description(Some("Face set name.")),
        "threshold" => text().examples(["0.6"]).description(Some(format!(
            "Distance threshold as a decimal string, 0 < t <= {}, in the model's own Euclidean \
             scale: the model's recommended threshold is in GET /ready (same person below it; \
             0.6 for the default model, where the original API's reference value 0.65 is a \
             little more lenient).",
            limits.max_threshold
        ))),
        "top_k" => text().examples(["10"]).description(Some(format!(
            "Return at most this many matches (1-{}); default all.",
            limits.max_top_k
        ))),
        "group_by" => text().enum_values(Some(["name"])).description(Some(
            "name: answer only the nearest face of each name, so that many photos of one \
                 person do not fill the matches (top_k then counts names).",
        )),
        "min_face" => whole_number()
            .minimum(Some(f64::from(MIN_FACE)))
            .maximum(Some(f64::from(limits.decode.max_side.max(MIN_FACE))))
            .default(Some(MIN_FACE.into()))
            .description(Some(
                "Smallest face to look for in the photo, in pixels: a larger value finds only \
                 larger faces, faster. Tokens are not affected.",
            )),
        "offset" => whole_number().minimum(Some(0)).default(Some(0.into())),
        "limit" => whole_number()
            .minimum(Some(1))
            .maximum(Some(limits.max_page as f64))
            .default(Some(limits.default_page.into())),
        _ => return None,
    };
    Some(schema.build())
}

fn plain_text() -> Object {
    ObjectBuilder::new().schema_type(Type::String).build()
}

/// A JPEG file as a response body (a face crop).
pub(crate) struct Jpeg;

impl PartialSchema for Jpeg {
    fn schema() -> RefOr<Schema> {
        binary().into()
    }
}

impl ToSchema for Jpeg {}

fn binary() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
}

/// An image upload (a multipart file field).
fn image_upload() -> Object {
    let limits = DecodeLimits::default();
    binary()
        .description(Some(format!(
            "JPEG or PNG (by content), {min}x{min} to {max}x{max} px, at most {mib} MiB.",
            min = limits.min_side,
            max = limits.max_side,
            mib = limits.max_bytes / (1024 * 1024)
        )))
        .build()
}

/// An image as base64 text (any body), instead of the file field `file`.
fn image_base64(file: &str) -> Object {
    let limits = Limits::default();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(limits.max_base64_bytes()))
        .description(Some(format!(
            "The {file} image as base64 text (standard or URL-safe alphabet, padding optional, \
             line breaks and a data:image/...;base64, prefix allowed), in a multipart, \
             urlencoded or JSON body; instead of {file}, not with it. The decoded bytes are held \
             to the same {} MiB.",
            limits.decode.max_bytes / (1024 * 1024)
        )))
        .build()
}

/// An image as a URL the server fetches (any body), instead of the file field `file`.
fn image_url(file: &str) -> Object {
    let limits = Limits::default();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uri".to_owned())))
        .max_length(Some(limits.max_text_bytes))
        .description(Some(format!(
            "The {file} image as an http or https URL that the server fetches, in a multipart, \
             urlencoded or JSON body; instead of {file}, not with it. Only on a server started \
             with --allow-image-urls (else error 1001), and only from public addresses unless \
             the host is listed with --image-url-allow; at most {} redirects, {} s for the whole \
             fetch, and the same {} MiB.",
            limits.image_urls.max_redirects,
            limits.image_urls.timeout.as_secs(),
            limits.decode.max_bytes / (1024 * 1024)
        )))
        .build()
}

/// The key schemes, and on every operation that needs a key, its schemes and its 401, 403
/// and 429 answers (from the route table: the one list of what each route needs).
struct Secured;

impl Modify for Secured {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Authorization: Bearer <API key>"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        for (path, method, access) in crate::routes::route_access() {
            if access == crate::auth::Access::Open {
                continue;
            }
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let operation = match method {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                "DELETE" => item.delete.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else { continue };
            operation.security = Some(vec![
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("apiKey", Vec::<String>::new()),
            ]);
            for (status, name) in [
                ("401", Unauthorized::DOC.name),
                ("403", Forbidden::DOC.name),
                ("429", RateLimited::DOC.name),
            ] {
                operation
                    .responses
                    .responses
                    .insert(status.to_owned(), Ref::from_response_name(name).into());
            }
        }
    }
}

/// A form body is optional where its parameters may come in the query string instead: every
/// operation with query parameters (only /detect needs its body).
struct OptionalForms;

impl Modify for OptionalForms {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let Some(post) = &mut item.post else { continue };
            let has_query = post.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if let (true, Some(RefOr::T(body))) = (has_query, &mut post.request_body) {
                body.required = Some(Required::False);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use actix_web::{HttpResponse, ResponseError};
    use facerec::{BoundingBox, ModelSpec};
    use facerec_store::{FaceSetInfo, FaceSummary, Match};
    use serde_json::Value;

    use super::*;
    use crate::ApiError;
    use crate::dto::{
        self, AddFaceReply, CompareReply, DetectReply, FaceSetReply, FaceSetsReply, HealthReply,
        ReadyReply, RemoveFaceReply, SearchReply,
    };
    use crate::service::{
        Comparison, DetectedFace, FaceSetPage, Readiness, SearchOutcome, SetFace, Threshold,
    };

    fn document() -> Value {
        serde_json::from_str(openapi_json()).unwrap()
    }

    /// The JSON body of an answer, as the server sends it.
    fn body(response: HttpResponse) -> Value {
        let bytes = actix_web::rt::System::new()
            .block_on(actix_web::body::to_bytes(response.into_body()))
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The schema a `$ref` points to, or the schema itself.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(target) => doc
                .pointer(target.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => schema,
        }
    }

    /// Every way `value` departs from `schema`: a key the schema lacks, a required key the value
    /// lacks, a wrong JSON type, a value outside an `enum`, an array of the wrong length.
    fn misfits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
        let schema = resolve(doc, schema);
        let mut found = Vec::new();
        let type_ok = match schema["type"].as_str() {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some(other) => panic!("{at}: unexpected schema type {other}"),
        };
        if !type_ok {
            return vec![format!("{at}: {value} is not of type {}", schema["type"])];
        }
        if let Some(options) = schema["enum"].as_array()
            && !options.contains(value)
        {
            found.push(format!("{at}: {value} is not one of {options:?}"));
        }
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match schema["properties"].get(key) {
                        Some(property) => {
                            found.extend(misfits(doc, property, field, &format!("{at}.{key}")));
                        }
                        None => found.push(format!("{at}.{key} is not in the schema")),
                    }
                }
                for key in schema["required"].as_array().into_iter().flatten() {
                    if !fields.contains_key(key.as_str().unwrap()) {
                        found.push(format!("{at}.{key} is required but not sent"));
                    }
                }
            }
            Value::Array(items) => {
                let len = items.len() as u64;
                if schema["minItems"].as_u64().is_some_and(|min| len < min)
                    || schema["maxItems"].as_u64().is_some_and(|max| len > max)
                {
                    found.push(format!("{at}: {len} items"));
                }
                for (i, item) in items.iter().enumerate() {
                    found.extend(misfits(doc, &schema["items"], item, &format!("{at}[{i}]")));
                }
            }
            _ => {}
        }
        found
    }

    /// One real answer of each reply type, every list non-empty so nested schemas are checked.
    fn replies() -> Vec<(&'static str, HttpResponse)> {
        let token = FaceToken::generate();
        let crop = token.crop_file_name().unwrap();
        let set = |token: &FaceToken| SetFace {
            token: token.clone(),
            name: "Ada".to_owned(),
            set: "team".to_owned(),
        };
        let detected = DetectedFace {
            token: token.clone(),
            crop,
            bbox: BoundingBox::new(10.0, 20.0, 110.0, 140.0),
            score: 0.99,
            landmarks: [
                [40.0, 60.0],
                [80.0, 60.0],
                [60.0, 85.0],
                [45.0, 110.0],
                [75.0, 110.0],
            ],
        };
        let found = Match {
            token: token.clone(),
            name: "Ada".to_owned(),
            distance: 0.31,
        };
        let search = SearchOutcome {
            token: token.clone(),
            set: "team".to_owned(),
            threshold: Threshold::parse("0.6", 4.0).unwrap(),
            matches: vec![found],
        };
        let comparison = Comparison {
            token_a: token.clone(),
            token_b: FaceToken::generate(),
            distance: 0.42,
            threshold: 0.6,
        };
        let sets = vec![FaceSetInfo {
            name: "team".to_owned(),
            count: 1,
        }];
        let page = FaceSetPage {
            set: "team".to_owned(),
            offset: 0,
            limit: 100,
            total: 1,
            faces: vec![FaceSummary {
                token: token.clone(),
                name: "Ada".to_owned(),
                created_unix_ms: 1_700_000_000_123,
            }],
        };
        let key = facerec_store::NewKey::generate(
            "ci",
            facerec_store::Role::Write,
            Some(vec!["team".to_owned()]),
        )
        .unwrap();
        let readiness = Readiness {
            model: ModelSpec::default(),
            face_sets: 1,
            tokens: 2,
            keys_required: false,
            uptime: std::time::Duration::from_secs(5012),
        };
        vec![
            ("DetectReply", dto::ok(DetectReply::from(vec![detected]))),
            ("AddFaceReply", dto::ok(AddFaceReply::from(set(&token)))),
            (
                "RemoveFaceReply",
                dto::ok(RemoveFaceReply::from(set(&token))),
            ),
            ("SearchReply", dto::ok(SearchReply::from(search))),
            ("CompareReply", dto::ok(CompareReply::from(comparison))),
            ("FaceSetsReply", dto::ok(FaceSetsReply::from(sets))),
            ("FaceSetReply", dto::ok(FaceSetReply::from(page))),
            ("HealthReply", dto::ok(HealthReply { status: "ok" })),
            (
                "EnrollReply",
                dto::ok(dto::EnrollReply::new(
                    "team".to_owned(),
                    vec![
                        crate::EnrollResult {
                            index: 0,
                            file_name: "ada.jpg".to_owned(),
                            name: "Ada".to_owned(),
                            outcome: Ok(crate::EnrolledFace {
                                token: token.clone(),
                                face_count: 2,
                            }),
                        },
                        crate::EnrollResult {
                            index: 1,
                            file_name: "blank.png".to_owned(),
                            name: "Bob".to_owned(),
                            outcome: Err(crate::EnrollError {
                                code: crate::ErrorCode::FaceInfoError,
                                detail: "no face found in blank.png".to_owned(),
                            }),
                        },
                    ],
                )),
            ),
            (
                "KeyList",
                dto::ok(crate::keys::KeyList::from(vec![
                    key.record.clone(),
                    facerec_store::KeyRecord {
                        name: "all".to_owned(),
                        sets: None,
                        ..key.record.clone()
                    },
                ])),
            ),
            (
                "RevokedKeyReply",
                dto::ok(crate::keys::RevokedKeyReply::from(key.record.clone())),
            ),
            ("NewKeyReply", dto::ok(crate::keys::NewKeyReply::from(key))),
            ("ReadyReply", dto::ok(ReadyReply::from(readiness))),
            (
                "Error",
                ApiError::Overloaded { capacity: 1 }.error_response(),
            ),
        ]
    }

    #[test]
    fn every_reply_fits_its_schema() {
        let doc = document();
        let mut checked = BTreeSet::new();
        for (name, response) in replies() {
            let value = body(response);
            let schema = &doc["components"]["schemas"][name];
            assert!(schema.is_object(), "no schema {name}");
            let misfits = misfits(&doc, schema, &value, name);
            assert!(misfits.is_empty(), "{misfits:#?}\n{value:#}");
            checked.insert(name.to_owned());
        }
        // These are checked inside the replies that hold them.
        let replies: BTreeSet<String> = doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|name| {
                !["Point", "Face", "Match", "EnrollResult", "ApiKey"].contains(&name.as_str())
            })
            .cloned()
            .collect();
        assert_eq!(
            replies, checked,
            "a reply schema without a reply to check it"
        );
    }

    #[test]
    fn the_check_sees_a_missing_an_extra_and_a_wrong_field() {
        let doc = document();
        let schema = &doc["components"]["schemas"]["HealthReply"];
        let sent = serde_json::json!({"sucess": true, "success": true, "status": "ok"});
        assert!(misfits(&doc, schema, &sent, "").is_empty());
        let mut extra = sent.clone();
        extra["uptime"] = 3.into();
        let mut missing = sent.clone();
        missing.as_object_mut().unwrap().remove("sucess");
        let mut wrong = sent.clone();
        wrong["status"] = "fine".into();
        for bad in [extra, missing, wrong] {
            assert_eq!(misfits(&doc, schema, &bad, "").len(), 1, "{bad}");
        }
    }

    /// Every `$ref` in `value`, with where it is.
    fn references(value: &Value, at: String, found: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner.as_str()) {
                        ("$ref", Some(target)) => found.push((at.clone(), target.to_owned())),
                        _ => references(inner, format!("{at}/{key}"), found),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    references(item, format!("{at}[{i}]"), found);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_document_is_well_formed() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        // utoipa's own model of OpenAPI reads it back unchanged
        let model: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(serde_json::to_value(&model).unwrap(), doc);

        let mut refs = Vec::new();
        references(&doc, String::new(), &mut refs);
        assert!(refs.len() > 50, "{refs:?}");
        for (at, target) in &refs {
            let resolved = target
                .strip_prefix('#')
                .and_then(|pointer| doc.pointer(pointer));
            assert!(resolved.is_some(), "{at}: $ref {target} does not resolve");
        }
        // every shared response and schema is used
        for kind in ["responses", "schemas"] {
            for name in doc["components"][kind].as_object().unwrap().keys() {
                let target = format!("#/components/{kind}/{name}");
                assert!(refs.iter().any(|(_, t)| *t == target), "{target} is unused");
            }
        }

        let mut operation_ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(operation_ids.insert(id), "{id} twice");
                assert!(operation["responses"]["200"].is_object(), "{method} {path}");
                let in_path: Vec<&str> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path" && p["required"] == true)
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                let templated: Vec<&str> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .collect();
                assert_eq!(in_path, templated, "{method} {path}");
            }
        }
    }

    #[test]
    fn every_parameter_an_input_reads_is_documented() {
        for spec in [
            DetectInput::SPEC,
            AddFaceInput::SPEC,
            RemoveFaceInput::SPEC,
            SearchInput::SPEC,
            CompareInput::SPEC,
            FaceSetPageInput::SPEC,
        ] {
            for name in spec.text {
                assert!(text_parameter(name).is_some(), "{name} is not documented");
            }
            for name in spec.required {
                assert!(
                    spec.text.contains(name) || spec.files.contains(name),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn get_operations_require_what_their_input_requires() {
        let doc = document();
        let required = |path: &str, method: &str, name: &str| {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["required"].clone())
                .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
        };
        assert_eq!(required("/addface", "get", "face_token"), true);
        assert_eq!(required("/removeface", "get", "face_token"), true);
        assert_eq!(required("/search", "get", "threshold"), true);
        assert_eq!(required("/search", "get", "top_k"), false);
        // a POST may carry them in its body instead
        assert_eq!(required("/addface", "post", "face_token"), false);
        assert_eq!(required("/search", "post", "threshold"), false);
    }

    #[test]
    fn forms_are_optional_where_the_query_string_can_carry_them() {
        let doc = document();
        let required = |path: &str| doc["paths"][path]["post"]["requestBody"]["required"].clone();
        assert_eq!(required("/detect"), true);
        for path in ["/addface", "/removeface", "/search", "/compare"] {
            assert_eq!(required(path), false, "{path}");
        }
    }
}
