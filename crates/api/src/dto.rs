//! The JSON bodies of successful answers. Field names are the original API's, typos
//! included (`sucess`, `face_neme`, `distant`), each next to its corrected twin.
//!
//! Every body derives its OpenAPI schema (field docs are the descriptions), so the document
//! cannot lose a field the replies have.

use std::borrow::Cow;

use actix_web::HttpResponse;
use facerec_store::{FaceSetInfo, FaceSummary, Match};
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::enroll::EnrollResult;
use crate::service::{Comparison, DetectedFace, FaceSetPage, Readiness, SearchOutcome, SetFace};

/// `{"sucess": true, "success": true, ...body}`.
#[derive(Debug, Serialize)]
pub(crate) struct Reply<T> {
    sucess: bool,
    success: bool,
    #[serde(flatten)]
    body: T,
}

/// The body's object with both flags in front: the reply as clients see it.
impl<T: ToSchema> PartialSchema for Reply<T> {
    fn schema() -> RefOr<Schema> {
        let flag = || ObjectBuilder::new().schema_type(Type::Boolean);
        let mut reply = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("sucess", flag())
            .property("success", flag())
            .required("sucess")
            .required("success")
            .build();
        if let RefOr::T(Schema::Object(body)) = T::schema() {
            reply.properties.extend(body.properties);
            reply.required.extend(body.required);
            reply.description = body.description;
        }
        Schema::Object(reply).into()
    }
}

/// Named after its body: clients never see the body without the flags.
impl<T: ToSchema> ToSchema for Reply<T> {
    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        T::schemas(schemas);
    }
}

/// The replies as clients see them, for the handlers' OpenAPI attributes (which would name
/// `Reply<DetectReply>` `Reply_DetectReply`).
pub(crate) mod wire {
    use super::Reply;

    pub(crate) type DetectReply = Reply<super::DetectReply>;
    pub(crate) type AddFaceReply = Reply<super::AddFaceReply>;
    pub(crate) type RemoveFaceReply = Reply<super::RemoveFaceReply>;
    pub(crate) type SearchReply = Reply<super::SearchReply>;
    pub(crate) type CompareReply = Reply<super::CompareReply>;
    pub(crate) type FaceSetsReply = Reply<super::FaceSetsReply>;
    pub(crate) type FaceSetReply = Reply<super::FaceSetReply>;
    pub(crate) type HealthReply = Reply<super::HealthReply>;
    pub(crate) type ReadyReply = Reply<super::ReadyReply>;
    pub(crate) type EnrollReply = Reply<super::EnrollReply>;
    pub(crate) type KeyListReply = Reply<crate::keys::KeyList>;
    pub(crate) type RevokedKeyReply = Reply<crate::keys::RevokedKeyReply>;
    pub(crate) type NewKeyReply = Reply<crate::keys::NewKeyReply>;
}

/// 200 with `body` and both success flags.
pub(crate) fn ok<T: Serialize>(body: T) -> HttpResponse {
    HttpResponse::Ok().json(Reply {
        sucess: true,
        success: true,
        body,
    })
}

/// `[x, y]` in pixels of the upright image.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Point([f32; 2]);

impl PartialSchema for Point {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::Number))
            .min_items(Some(2))
            .max_items(Some(2))
            .description(Some("[x, y] in pixels of the upright image."))
            .into()
    }
}

impl ToSchema for Point {}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Face)]
pub(crate) struct FaceDto {
    /// 24 random letters and digits.
    face_token: String,
    /// File name of the crop: <face_token>.jpg, served at /crops/{face_name}.
    face_name: String,
    top_left: Point,
    bottom_right: Point,
    /// Detector confidence, 0-1.
    score: f32,
    /// Left eye, right eye, nose tip, left and right mouth corners (as seen in the image).
    #[schema(min_items = 5, max_items = 5)]
    landmarks: [Point; 5],
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DetectReply {
    face_num: usize,
    faces: Vec<FaceDto>,
}

impl From<Vec<DetectedFace>> for DetectReply {
    fn from(faces: Vec<DetectedFace>) -> Self {
        let faces: Vec<FaceDto> = faces
            .into_iter()
            .map(|f| FaceDto {
                face_token: f.token.into(),
                face_name: f.crop,
                top_left: Point([f.bbox.x1, f.bbox.y1]),
                bottom_right: Point([f.bbox.x2, f.bbox.y2]),
                score: f.score,
                landmarks: f.landmarks.map(Point),
            })
            .collect();
        Self {
            face_num: faces.len(),
            faces,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AddFaceReply {
    face_token: String,
    /// Same as face_name (the original API's spelling).
    face_neme: String,
    face_name: String,
    face_set: String,
}

impl From<SetFace> for AddFaceReply {
    fn from(f: SetFace) -> Self {
        Self {
            face_token: f.token.into(),
            face_neme: f.name.clone(),
            face_name: f.name,
            face_set: f.set,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RemoveFaceReply {
    face_token: String,
    face_name: String,
    face_set: String,
}

impl From<SetFace> for RemoveFaceReply {
    fn from(f: SetFace) -> Self {
        Self {
            face_token: f.token.into(),
            face_name: f.name,
            face_set: f.set,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Match)]
pub(crate) struct MatchDto {
    face_token: String,
    /// Same as distance (the original API's spelling).
    distant: f32,
    distance: f32,
    face_name: String,
}

impl From<Match> for MatchDto {
    fn from(m: Match) -> Self {
        Self {
            face_token: m.token.into(),
            distant: m.distance,
            distance: m.distance,
            face_name: m.name,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchReply {
    /// The query face's token; for an image query, the new token of its largest face.
    face_token: String,
    face_set: String,
    /// The threshold as sent.
    threshold: String,
    /// Faces nearer than the threshold, nearest first; empty when none.
    cmp_result: Vec<MatchDto>,
}

impl From<SearchOutcome> for SearchReply {
    fn from(outcome: SearchOutcome) -> Self {
        Self {
            face_token: outcome.token.into(),
            face_set: outcome.set,
            threshold: outcome.threshold.as_str().to_owned(),
            cmp_result: outcome.matches.into_iter().map(MatchDto::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CompareReply {
    face_token_a: String,
    face_token_b: String,
    distance: f32,
    /// The model's recommended threshold (0.6).
    threshold: f32,
    /// distance < threshold
    same_person: bool,
}

impl From<Comparison> for CompareReply {
    fn from(c: Comparison) -> Self {
        Self {
            same_person: c.distance < c.threshold,
            face_token_a: c.token_a.into(),
            face_token_b: c.token_b.into(),
            distance: c.distance,
            threshold: c.threshold,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FaceSetDto {
    face_set: String,
    face_num: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FaceSetsReply {
    #[schema(inline)]
    face_sets: Vec<FaceSetDto>,
}

impl From<Vec<FaceSetInfo>> for FaceSetsReply {
    fn from(sets: Vec<FaceSetInfo>) -> Self {
        Self {
            face_sets: sets
                .into_iter()
                .map(|s| FaceSetDto {
                    face_set: s.name,
                    face_num: s.count,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FaceSummaryDto {
    face_token: String,
    face_name: String,
    #[schema(format = DateTime)]
    created_at: String,
    created_unix_ms: u64,
}

impl From<FaceSummary> for FaceSummaryDto {
    fn from(f: FaceSummary) -> Self {
        Self {
            created_at: rfc3339_utc(f.created_unix_ms),
            face_token: f.token.into(),
            face_name: f.name,
            created_unix_ms: f.created_unix_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FaceSetReply {
    face_set: String,
    /// Faces in the whole set.
    face_num: usize,
    offset: usize,
    limit: usize,
    #[schema(inline)]
    faces: Vec<FaceSummaryDto>,
}

impl From<FaceSetPage> for FaceSetReply {
    fn from(page: FaceSetPage) -> Self {
        Self {
            face_set: page.set,
            face_num: page.total,
            offset: page.offset,
            limit: page.limit,
            faces: page.faces.into_iter().map(FaceSummaryDto::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthReply {
    #[schema(schema_with = status_ok)]
    pub(crate) status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyReply {
    #[schema(schema_with = status_ready)]
    status: &'static str,
    model: String,
    dims: usize,
    threshold: f32,
    face_sets: usize,
    face_tokens: usize,
    /// Whether requests (other than `/health`, `/ready` and the console's files) need an API
    /// key.
    keys_required: bool,
    /// Seconds since the server started.
    uptime_s: u64,
}

impl From<Readiness> for ReadyReply {
    fn from(r: Readiness) -> Self {
        Self {
            status: "ready",
            dims: r.model.dims(),
            threshold: r.model.threshold,
            model: r.model.id,
            face_sets: r.face_sets,
            face_tokens: r.tokens,
            keys_required: r.keys_required,
            uptime_s: r.uptime.as_secs(),
        }
    }
}

fn status_ok() -> Object {
    one_string("ok")
}

fn status_ready() -> Object {
    one_string("ready")
}

/// A string that is always `value`.
fn one_string(value: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .build()
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds, e.g.
/// `2023-11-14T22:13:20.000Z` (civil-from-days, H. Hinnant).
pub(crate) fn rfc3339_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(4_102_444_799_000), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn replies_carry_both_success_flags() {
        let r = serde_json::to_value(Reply {
            sucess: true,
            success: true,
            body: HealthReply { status: "ok" },
        })
        .unwrap();
        assert_eq!(
            r,
            serde_json::json!({"sucess": true, "success": true, "status": "ok"})
        );
    }
}

/// The answer of a batch enrolment.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnrollReply {
    face_set: String,
    /// Photos whose face was enrolled.
    enrolled: usize,
    /// Photos that were not enrolled (each result says why).
    failed: usize,
    /// One per photo, in the order they were sent.
    results: Vec<EnrollResultDto>,
}

/// What became of one photo: its face's token and how many faces it had, or an error.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EnrollResult)]
pub(crate) struct EnrollResultDto {
    /// Place of the photo in the request, from 0.
    index: usize,
    /// The photo's file name as sent (`photo N` when it had none).
    file_name: String,
    /// The face name it was sent with.
    name: String,
    /// The enrolled face's token: the same photo enrolled in the same set again gets the
    /// same token (and replaces the record).
    #[serde(skip_serializing_if = "Option::is_none")]
    face_token: Option<String>,
    /// Faces found in the photo; when more than 1, the largest was enrolled.
    #[serde(skip_serializing_if = "Option::is_none")]
    face_count: Option<usize>,
    /// Why the photo was not enrolled: 1004 (not a readable image), 1007 (no face).
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl EnrollReply {
    pub(crate) fn new(face_set: String, results: Vec<EnrollResult>) -> Self {
        let enrolled = results.iter().filter(|r| r.outcome.is_ok()).count();
        let results: Vec<EnrollResultDto> = results
            .into_iter()
            .map(|r| {
                let mut dto = EnrollResultDto {
                    index: r.index,
                    file_name: r.file_name,
                    name: r.name,
                    face_token: None,
                    face_count: None,
                    error_code: None,
                    error_message: None,
                    detail: None,
                };
                match r.outcome {
                    Ok(face) => {
                        dto.face_token = Some(face.token.into());
                        dto.face_count = Some(face.face_count);
                    }
                    Err(e) => {
                        dto.error_code = Some(e.code.code());
                        dto.error_message = Some(e.code.name());
                        dto.detail = Some(e.detail);
                    }
                }
                dto
            })
            .collect();
        Self {
            face_set,
            enrolled,
            failed: results.len() - enrolled,
            results,
        }
    }
}
