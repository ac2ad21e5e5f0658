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

pub(crate) async fn detect(service: Data<FaceService>, Valid(input): Valid<DetectInput>) -> Answer {
    let faces = service.detect(input.image).await?;
    Ok(dto::ok(DetectReply::from(faces)))
}

pub(crate) async fn add_face(
    service: Data<FaceService>,
    Valid(input): Valid<AddFaceInput>,
) -> Answer {
    let added = service.add_face(input).await?;
    Ok(dto::ok(AddFaceReply {
        face_token: added.token,
        face_neme: added.name.clone(),
        face_name: added.name,
        face_set: added.set,
    }))
}

pub(crate) async fn remove_face(
    service: Data<FaceService>,
    Valid(input): Valid<RemoveFaceInput>,
) -> Answer {
    let face_set = input.set.clone();
    let removed = service.remove_face(input).await?;
    Ok(dto::ok(RemoveFaceReply {
        face_token: removed.token,
        face_name: removed.name,
        face_set,
    }))
}

pub(crate) async fn search(service: Data<FaceService>, Valid(input): Valid<SearchInput>) -> Answer {
    let (face_set, threshold) = (input.set.clone(), input.threshold_text.clone());
    let outcome = service.search(input).await?;
    Ok(dto::ok(SearchReply::new(outcome, face_set, threshold)))
}

pub(crate) async fn compare(
    service: Data<FaceService>,
    Valid(input): Valid<CompareInput>,
) -> Answer {
    let comparison = service.compare(input).await?;
    Ok(dto::ok(CompareReply::from(comparison)))
}

pub(crate) async fn face_sets(service: Data<FaceService>) -> Answer {
    let sets = service.face_sets().await?;
    Ok(dto::ok(FaceSetsReply::from(sets)))
}

pub(crate) async fn face_set(
    service: Data<FaceService>,
    Valid(input): Valid<FaceSetPageInput>,
) -> Answer {
    let (face_set, offset, limit) = (input.set.clone(), input.offset, input.limit);
    let page = service.face_set_page(input).await?;
    Ok(dto::ok(FaceSetReply::new(page, face_set, offset, limit)))
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
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(service.metrics_text()))
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
