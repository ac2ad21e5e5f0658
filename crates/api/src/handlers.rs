//! The handlers: each takes validated input, calls one service operation and maps the result.

use actix_web::http::header::{self, ContentType};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use crate::dto::{
    self, AddFaceReply, CompareReply, DetectReply, FaceSetReply, FaceSetsReply, HealthReply,
    ReadyReply, RemoveFaceReply, SearchReply,
};
use crate::input::{
    AddFaceInput, CompareInput, DetectInput, FaceSetPageInput, RemoveFaceInput, SearchInput, Valid,
};
use crate::{ApiError, FaceService};

type Answer = Result<HttpResponse, ApiError>;

pub(crate) async fn detect(
    service: Data<FaceService>,
    Valid(DetectInput { image }): Valid<DetectInput>,
) -> Answer {
    let faces = service.detect(image).await?;
    Ok(dto::ok(DetectReply::from(faces)))
}

pub(crate) async fn add_face(
    service: Data<FaceService>,
    Valid(AddFaceInput { token, name, set }): Valid<AddFaceInput>,
) -> Answer {
    let added = service.add_face(token, name, set).await?;
    Ok(dto::ok(AddFaceReply::from(added)))
}

pub(crate) async fn remove_face(
    service: Data<FaceService>,
    Valid(RemoveFaceInput { token, set }): Valid<RemoveFaceInput>,
) -> Answer {
    let removed = service.remove_face(token, set).await?;
    Ok(dto::ok(RemoveFaceReply::from(removed)))
}

pub(crate) async fn search(
    service: Data<FaceService>,
    Valid(SearchInput {
        query,
        threshold,
        top_k,
        set,
    }): Valid<SearchInput>,
) -> Answer {
    let outcome = service.search(query, threshold, top_k, set).await?;
    Ok(dto::ok(SearchReply::from(outcome)))
}

pub(crate) async fn compare(
    service: Data<FaceService>,
    Valid(CompareInput { a, b, set }): Valid<CompareInput>,
) -> Answer {
    let comparison = service.compare(a, b, set).await?;
    Ok(dto::ok(CompareReply::from(comparison)))
}

pub(crate) async fn face_sets(service: Data<FaceService>) -> Answer {
    let sets = service.face_sets().await?;
    Ok(dto::ok(FaceSetsReply::from(sets)))
}

pub(crate) async fn face_set(
    service: Data<FaceService>,
    Valid(FaceSetPageInput { set, offset, limit }): Valid<FaceSetPageInput>,
) -> Answer {
    let page = service.face_set_page(set, offset, limit).await?;
    Ok(dto::ok(FaceSetReply::from(page)))
}

pub(crate) async fn crop(service: Data<FaceService>, name: Path<String>) -> Answer {
    let bytes = service.crop(name.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::jpeg())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes))
}

pub(crate) async fn health() -> Answer {
    Ok(dto::ok(HealthReply { status: "ok" }))
}

pub(crate) async fn ready(service: Data<FaceService>) -> Answer {
    let readiness = service.readiness().await?;
    Ok(dto::ok(ReadyReply::from(readiness)))
}

pub(crate) async fn metrics(service: Data<FaceService>) -> Answer {
    let text = service.metrics_text().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

pub(crate) async fn openapi() -> Answer {
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(crate::OPENAPI_JSON))
}

/// Answer of every path no route has.
pub(crate) async fn not_found(req: HttpRequest) -> Answer {
    Err(ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}
