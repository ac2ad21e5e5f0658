//! The handlers: each takes validated input, calls one service operation and maps the result.
//! Each carries its operation of the OpenAPI document (see [`crate::openapi`]); a route that
//! takes GET and POST has one handler per method, as it has one operation per method.

use actix_web::http::header::{self, ContentType};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use crate::dto::{
    self, AddFaceReply, CompareReply, DetectReply, FaceSetReply, FaceSetsReply, HealthReply,
    ReadyReply, RemoveFaceReply, SearchReply, wire,
};
use crate::input::{
    AddFaceInput, CompareInput, DetectInput, FaceSetPageInput, RemoveFaceInput, SearchInput, Valid,
};
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
    Valid(DetectInput { image }): Valid<DetectInput>,
) -> Answer {
    let faces = service.detect(image).await?;
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
    Valid(AddFaceInput { token, name, set }): Valid<AddFaceInput>,
) -> Answer {
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
    input: Valid<AddFaceInput>,
) -> Answer {
    add_face(service, input).await
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
    Valid(RemoveFaceInput { token, set }): Valid<RemoveFaceInput>,
) -> Answer {
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
    input: Valid<RemoveFaceInput>,
) -> Answer {
    remove_face(service, input).await
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
    Valid(SearchInput {
        query,
        threshold,
        set,
        ranking,
    }): Valid<SearchInput>,
) -> Answer {
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
pub(crate) async fn search_form(service: Data<FaceService>, input: Valid<SearchInput>) -> Answer {
    search(service, input).await
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
    Valid(CompareInput { a, b, set }): Valid<CompareInput>,
) -> Answer {
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
pub(crate) async fn compare_form(service: Data<FaceService>, input: Valid<CompareInput>) -> Answer {
    compare(service, input).await
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
pub(crate) async fn face_sets(service: Data<FaceService>) -> Answer {
    let sets = service.face_sets().await?;
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
    Valid(FaceSetPageInput { set, offset, limit }): Valid<FaceSetPageInput>,
) -> Answer {
    let page = service.face_set_page(set, offset, limit).await?;
    Ok(dto::ok(FaceSetReply::from(page)))
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

/// Answer of every path no route has.
pub(crate) async fn not_found(req: HttpRequest) -> Answer {
    Err(ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}
