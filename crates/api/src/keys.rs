//! Key management over HTTP (`/keys`): its input and its answers. The keys themselves are
//! [`facerec_store::KeyStore`]'s; the checks at the door are in [`crate::auth`].

use facerec_store::{KeyRecord, NewKey, Role};
use serde::Serialize;
use utoipa::ToSchema;

use crate::input::{FromParams, ParamSpec, Params};
use crate::{ApiError, Limits};

/// `POST /keys`.
#[derive(Debug)]
pub(crate) struct CreateKeyInput {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) sets: Option<Vec<String>>,
}

impl FromParams for CreateKeyInput {
    const SPEC: ParamSpec = ParamSpec {
        text: &["name", "role", "face_sets"],
        files: &[],
        base64: &[],
        required: &["name", "role"],
    };

    fn from_params(params: Params, _: &Limits) -> Result<Self, ApiError> {
        let name = params.required("name")?.to_owned();
        facerec_store::validate_key_name(&name).map_err(|e| ApiError::BadArgument {
            name: "name",
            reason: e.to_string(),
        })?;
        let role = params
            .required("role")?
            .parse()
            .map_err(|e: facerec_store::Error| ApiError::BadArgument {
                name: "role",
                reason: e.to_string(),
            })?;
        let sets = params.text("face_sets").map(|text| {
            text.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        });
        if let Some(sets) = &sets {
            if sets.is_empty() {
                return Err(ApiError::BadArgument {
                    name: "face_sets",
                    reason: "name at least one face set, or leave it out for every set".to_owned(),
                });
            }
            for set in sets {
                facerec_store::validate_set_name(set).map_err(|e| ApiError::BadArgument {
                    name: "face_sets",
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(Self { name, role, sets })
    }
}

/// A key as listed: everything but the secret, which the server does not have.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub(crate) struct KeyReply {
    /// The key's name.
    name: String,
    /// read, write or admin.
    #[schema(value_type = String, pattern = "^(read|write|admin)$")]
    role: &'static str,
    /// The face sets it may use; null: every set.
    face_sets: Option<Vec<String>>,
    /// When it was made, Unix milliseconds.
    created_unix_ms: u64,
}

impl From<KeyRecord> for KeyReply {
    fn from(k: KeyRecord) -> Self {
        Self {
            name: k.name,
            role: k.role.as_str(),
            face_sets: k.sets,
            created_unix_ms: k.created_unix_ms,
        }
    }
}

/// `GET /keys`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyList {
    /// By name.
    keys: Vec<KeyReply>,
}

impl From<Vec<KeyRecord>> for KeyList {
    fn from(keys: Vec<KeyRecord>) -> Self {
        Self {
            keys: keys.into_iter().map(KeyReply::from).collect(),
        }
    }
}

/// `POST /keys`: the new key, once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewKeyReply {
    /// The key to send as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Shown only
    /// now: the server keeps its SHA-256.
    key: String,
    name: String,
    /// read, write or admin.
    #[schema(value_type = String, pattern = "^(read|write|admin)$")]
    role: &'static str,
    /// The face sets it may use; null: every set.
    face_sets: Option<Vec<String>>,
    /// When it was made, Unix milliseconds.
    created_unix_ms: u64,
}

impl From<NewKey> for NewKeyReply {
    fn from(k: NewKey) -> Self {
        let r = KeyReply::from(k.record);
        Self {
            key: k.secret,
            name: r.name,
            role: r.role,
            face_sets: r.face_sets,
            created_unix_ms: r.created_unix_ms,
        }
    }
}

/// `DELETE /keys/{name}`: the key that was revoked.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevokedKeyReply {
    name: String,
    /// read, write or admin.
    #[schema(value_type = String, pattern = "^(read|write|admin)$")]
    role: &'static str,
    /// The face sets it could use; null: every set.
    face_sets: Option<Vec<String>>,
    /// When it was made, Unix milliseconds.
    created_unix_ms: u64,
}

impl From<KeyRecord> for RevokedKeyReply {
    fn from(k: KeyRecord) -> Self {
        let r = KeyReply::from(k);
        Self {
            name: r.name,
            role: r.role,
            face_sets: r.face_sets,
            created_unix_ms: r.created_unix_ms,
        }
    }
}
