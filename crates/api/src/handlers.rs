//! The handlers: each takes validated input, calls one service operation and maps the result.
//! Each carries its operation of the OpenAPI document (see [`crate::openapi`]); a route that
//! takes GET and POST has one handler per method, as it has one operation per method.

use actix_web::http::header::{self, ContentType};
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};

use crate::auth::Caller;
use crate::dto::{
    self, AddFaceReply, CompareReply, DetectReply, EnrollReply, FaceSetReply, FaceSetsReply,
    HealthReply, ReadyReply, RemoveFaceReply, SearchReply, wire,
};
use crate::enroll::{BatchInput, read_batch};
use crate::error::ErrorBody;
use crate::input::{
    AddFaceInput, CompareInput, DetectInput, FaceSetPageInput, RemoveFaceInput, SearchInput, Valid,
};
use crate::keys::{CreateKeyInput, KeyList, NewKeyReply, RevokedKeyReply};
use crate::openapi::{
    BadRequest, Get, InternalError, Jpeg, MethodNotAllowed, NotFound, Overloaded, PayloadTooLarge,
};
use crate::{ApiError, FaceService};

type Answer = Result<HttpResponse, ApiError>;

/// How the operations that also take POST say where their parameters go.
const FROM_QUERY: &str = "Parameters as query parameters.";
const FROM_QUERY_TOKENS: &str = "Parameters as query parameters (token queries only).";
const FROM_FORM: &str = "Parameters as form fields (multipart/form-data or \
    application/x-www-form-urlencoded), or query parameters.";

const ADD_FACE: &str = "Saves the token's embedding under face_name in face_set (a token \
    unknown to the token cache but already in the face set is renamed).";
const REMOVE_FACE: &str = "Deletes face_token from face_set.";
const SEARCH: &str = "Every face of face_set nearer than threshold to the query face, nearest \
    first. The query is a face_token (from the token cache, else an enrolled face of face_set) \
    or an image_file, whose largest face is the query and gets a new token.";
const COMPARE: &str = "Distance between face a and face b, each given by token (face_token_a / \
    face_token_b) or image (image_file_a / image_file_b, largest face, which gets a new token).";

#[utoipa::path(
    post,
    path = "/detect",
    operation_id = "detect",
    summary = "Find every face in an image",
    description = "Each face gets a new face_token (kept in memory until evicted, expired or \
        restart) and a crop saved as face_name in the crops folder.",
    request_body(content(
        (inline(DetectInput) = "multipart/form-data"),
        (inline(DetectInput) = "application/x-www-form-urlencoded"),
        (inline(DetectInput) = "application/json"),
    )),
    responses(
        (status = 200, description = "Success.", body = wire::DetectReply),
        BadRequest, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn detect(
    service: Data<FaceService>,
    Valid(DetectInput { image, min_face }): Valid<DetectInput>,
) -> Answer {
    let faces = service.detect(image, min_face).await?;
    Ok(dto::ok(DetectReply::from(faces)))
}

#[utoipa::path(
    get,
    path = "/addface",
    operation_id = "addFaceGet",
    summary = "Enrol a detected face in a face set",
    description = format!("{ADD_FACE} {FROM_QUERY}"),
    params(Get<AddFaceInput>),
    responses(
        (status = 200, description = "Success.", body = wire::AddFaceReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn add_face(
    service: Data<FaceService>,
    caller: Caller,
    Valid(AddFaceInput { token, name, set }): Valid<AddFaceInput>,
) -> Answer {
    caller.allow_set(&set)?;
    let added = service.add_face(token, name, set).await?;
    Ok(dto::ok(AddFaceReply::from(added)))
}

#[utoipa::path(
    post,
    path = "/addface",
    operation_id = "addFacePost",
    summary = "Enrol a detected face in a face set",
    description = format!("{ADD_FACE} {FROM_FORM}"),
    params(AddFaceInput),
    request_body(content(
        (inline(AddFaceInput) = "multipart/form-data"),
        (inline(AddFaceInput) = "application/x-www-form-urlencoded"),
        (inline(AddFaceInput) = "application/json"),
    )),
    responses(
        (status = 200, description = "Success.", body = wire::AddFaceReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn add_face_form(
    service: Data<FaceService>,
    caller: Caller,
    input: Valid<AddFaceInput>,
) -> Answer {
    add_face(service, caller, input).await
}

#[utoipa::path(
    get,
    path = "/removeface",
    operation_id = "removeFaceGet",
    summary = "Remove a face from a face set",
    description = format!("{REMOVE_FACE} {FROM_QUERY}"),
    params(Get<RemoveFaceInput>),
    responses(
        (status = 200, description = "Success.", body = wire::RemoveFaceReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn remove_face(
    service: Data<FaceService>,
    caller: Caller,
    Valid(RemoveFaceInput { token, set }): Valid<RemoveFaceInput>,
) -> Answer {
    caller.allow_set(&set)?;
    let removed = service.remove_face(token, set).await?;
    Ok(dto::ok(RemoveFaceReply::from(removed)))
}

#[utoipa::path(
    post,
    path = "/removeface",
    operation_id = "removeFacePost",
    summary = "Remove a face from a face set",
    description = format!("{REMOVE_FACE} {FROM_FORM}"),
    params(RemoveFaceInput),
    request_body(content(
        (inline(RemoveFaceInput) = "multipart/form-data"),
        (inline(RemoveFaceInput) = "application/x-www-form-urlencoded"),
        (inline(RemoveFaceInput) = "application/json"),
    )),
    responses(
        (status = 200, description = "Success.", body = wire::RemoveFaceReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn remove_face_form(
    service: Data<FaceService>,
    caller: Caller,
    input: Valid<RemoveFaceInput>,
) -> Answer {
    remove_face(service, caller, input).await
}

#[utoipa::path(
    get,
    path = "/search",
    operation_id = "searchGet",
    summary = "Search a face set",
    description = format!("{SEARCH} {FROM_QUERY_TOKENS}"),
    params(Get<SearchInput>),
    responses(
        (status = 200, description = "Success.", body = wire::SearchReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn search(
    service: Data<FaceService>,
    caller: Caller,
    Valid(SearchInput {
        query,
        threshold,
        set,
        ranking,
    }): Valid<SearchInput>,
) -> Answer {
    caller.allow_set(&set)?;
    let outcome = service.search(query, threshold, ranking, set).await?;
    Ok(dto::ok(SearchReply::from(outcome)))
}

#[utoipa::path(
    post,
    path = "/search",
    operation_id = "searchPost",
    summary = "Search a face set",
    description = format!("{SEARCH} {FROM_FORM}"),
    params(SearchInput),
    request_body(content(
        (inline(SearchInput) = "multipart/form-data"),
        (inline(SearchInput) = "application/x-www-form-urlencoded"),
        (inline(SearchInput) = "application/json"),
    )),
    responses(
        (status = 200, description = "Success.", body = wire::SearchReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn search_form(
    service: Data<FaceService>,
    caller: Caller,
    input: Valid<SearchInput>,
) -> Answer {
    search(service, caller, input).await
}

#[utoipa::path(
    get,
    path = "/compare",
    operation_id = "compareGet",
    summary = "Compare two faces",
    description = format!("{COMPARE} {FROM_QUERY_TOKENS}"),
    params(Get<CompareInput>),
    responses(
        (status = 200, description = "Success.", body = wire::CompareReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn compare(
    service: Data<FaceService>,
    caller: Caller,
    Valid(CompareInput { a, b, set }): Valid<CompareInput>,
) -> Answer {
    // tokens are also looked up in the face set
    caller.allow_set(&set)?;
    let comparison = service.compare(a, b, set).await?;
    Ok(dto::ok(CompareReply::from(comparison)))
}

#[utoipa::path(
    post,
    path = "/compare",
    operation_id = "comparePost",
    summary = "Compare two faces",
    description = format!("{COMPARE} {FROM_FORM}"),
    params(CompareInput),
    request_body(content(
        (inline(CompareInput) = "multipart/form-data"),
        (inline(CompareInput) = "application/x-www-form-urlencoded"),
        (inline(CompareInput) = "application/json"),
    )),
    responses(
        (status = 200, description = "Success.", body = wire::CompareReply),
        BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn compare_form(
    service: Data<FaceService>,
    caller: Caller,
    input: Valid<CompareInput>,
) -> Answer {
    compare(service, caller, input).await
}

#[utoipa::path(
    get,
    path = "/facesets",
    operation_id = "faceSets",
    summary = "List face sets",
    responses(
        (status = 200, description = "Success.", body = wire::FaceSetsReply),
        InternalError,
    )
)]
pub(crate) async fn face_sets(service: Data<FaceService>, caller: Caller) -> Answer {
    let mut sets = service.face_sets().await?;
    sets.retain(|set| caller.sees_set(&set.name));
    Ok(dto::ok(FaceSetsReply::from(sets)))
}

#[utoipa::path(
    get,
    path = "/faceset",
    operation_id = "faceSet",
    summary = "Page through the faces of a face set",
    description = "Faces in token order.",
    params(Get<FaceSetPageInput>),
    responses(
        (status = 200, description = "Success.", body = wire::FaceSetReply),
        BadRequest, InternalError, Overloaded,
    )
)]
pub(crate) async fn face_set(
    service: Data<FaceService>,
    caller: Caller,
    Valid(FaceSetPageInput { set, offset, limit }): Valid<FaceSetPageInput>,
) -> Answer {
    caller.allow_set(&set)?;
    let page = service.face_set_page(set, offset, limit).await?;
    Ok(dto::ok(FaceSetReply::from(page)))
}

#[utoipa::path(
    post,
    path = "/faceset/{face_set}/faces",
    operation_id = "enrollBatch",
    summary = "Enrol many photos in a face set",
    description = "A multipart/form-data body: for each photo, a text part `name` (its face \
        name), then the photo as a file part `image_file` (or as base64 text, `image_base64`); \
        at most 16 photos (the server's limit) of at most 2 MiB each. Each photo's largest face \
        is enrolled; a photo that cannot be read or has no face gets its own error and the \
        others are still enrolled. All faces are written at once after the whole body has \
        been read: a request cut short writes nothing. A face's token is derived from the face \
        set and the photo's bytes, so sending the same photo again replaces its record.",
    params(("face_set" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,64}$",
        description = "The face set (made if needed).")),
    request_body(content((Object = "multipart/form-data"))),
    responses(
        (status = 200, description = "Success; each photo's result in `results`.",
            body = wire::EnrollReply),
        BadRequest, MethodNotAllowed, PayloadTooLarge, InternalError, Overloaded,
    )
)]
pub(crate) async fn enroll(
    service: Data<FaceService>,
    caller: Caller,
    set: Path<String>,
    req: HttpRequest,
    payload: Payload,
) -> Answer {
    let set = set.into_inner();
    // the set is checked before a byte of the body is read
    facerec_store::validate_set_name(&set).map_err(|e| ApiError::BadArgument {
        name: "face_set",
        reason: e.to_string(),
    })?;
    caller.allow_set(&set)?;
    let BatchInput { images } = read_batch(&req, payload.into_inner(), service.limits()).await?;
    let results = service.enroll(set.clone(), images).await?;
    Ok(dto::ok(EnrollReply::new(set, results)))
}

#[utoipa::path(
    get,
    path = "/crops/{face_name}",
    operation_id = "crop",
    summary = "A face crop saved by /detect",
    description = "Crops live as long as their tokens.",
    params(("face_name" = String, Path, pattern = r"^[A-Za-z0-9]{24}\.jpg$")),
    responses(
        (status = 200, description = "The crop.", body = inline(Jpeg), content_type = "image/jpeg"),
        BadRequest, NotFound, InternalError, Overloaded,
    )
)]
pub(crate) async fn crop(service: Data<FaceService>, name: Path<String>) -> Answer {
    let bytes = service.crop(name.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::jpeg())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes))
}

#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    summary = "Liveness",
    responses((status = 200, description = "Success.", body = wire::HealthReply))
)]
pub(crate) async fn health() -> Answer {
    Ok(dto::ok(HealthReply { status: "ok" }))
}

#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    summary = "Readiness: models loaded and face store answering",
    responses(
        (status = 200, description = "Success.", body = wire::ReadyReply),
        InternalError, Overloaded,
    )
)]
pub(crate) async fn ready(service: Data<FaceService>) -> Answer {
    let readiness = service.readiness().await?;
    Ok(dto::ok(ReadyReply::from(readiness)))
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.",
            body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn metrics(service: Data<FaceService>) -> Answer {
    let text = service.metrics_text().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    responses(
        (status = 200, description = "OpenAPI 3 document.",
            body = Object, content_type = "application/json"),
    )
)]
pub(crate) async fn openapi() -> Answer {
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(crate::openapi_json()))
}

#[utoipa::path(
    get,
    path = "/keys",
    operation_id = "listKeys",
    summary = "List the API keys",
    description = "Names, roles and face sets; never the keys. Needs an admin key for every set.",
    responses(
        (status = 200, description = "Success.", body = wire::KeyListReply),
        InternalError,
    )
)]
pub(crate) async fn list_keys(service: Data<FaceService>) -> Answer {
    let keys = service.list_keys().await?;
    Ok(dto::ok(KeyList::from(keys)))
}

#[utoipa::path(
    post,
    path = "/keys",
    operation_id = "createKey",
    summary = "Make an API key",
    description = "The key is in this answer and nowhere else: the server keeps its SHA-256 \
        only. Needs an admin key for every set.",
    request_body(content(
        (inline(CreateKeyInput) = "application/x-www-form-urlencoded"),
        (inline(CreateKeyInput) = "application/json"),
        (inline(CreateKeyInput) = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "Success.", body = wire::NewKeyReply),
        BadRequest, InternalError,
        (status = 409, description = "A key of this name exists (error 1001).", body = ErrorBody),
    )
)]
pub(crate) async fn create_key(
    service: Data<FaceService>,
    Valid(CreateKeyInput { name, role, sets }): Valid<CreateKeyInput>,
) -> Answer {
    let key = service.create_key(name, role, sets).await?;
    Ok(dto::ok(NewKeyReply::from(key)))
}

#[utoipa::path(
    delete,
    path = "/keys/{name}",
    operation_id = "revokeKey",
    summary = "Revoke an API key",
    description = "Refused from the next request on, on every server of the store. Needs an \
        admin key for every set.",
    params(("name" = String, Path, description = "The key's name.")),
    responses(
        (status = 200, description = "Success: the revoked key.", body = wire::RevokedKeyReply),
        NotFound, InternalError,
    )
)]
pub(crate) async fn revoke_key(service: Data<FaceService>, name: Path<String>) -> Answer {
    let revoked = service.revoke_key(name.into_inner()).await?;
    Ok(dto::ok(RevokedKeyReply::from(revoked)))
}

/// Answer of every path no route has.
pub(crate) async fn not_found(req: HttpRequest) -> Answer {
    Err(ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}
