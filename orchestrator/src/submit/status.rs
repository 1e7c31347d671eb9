//! `GET /v1/sms/{id}`: the message and its status history. Another tenant's
//! message, a malformed id and an unknown id all answer the same `404`.

use axum::Json;
use axum::extract::{Path, State};

use super::SubmitContext;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::MessageView;

pub async fn status(
    State(app): State<AppState>,
    ctx: SubmitContext,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id = crate::domain::MessageId::parse(&id).map_err(|_| ApiError::NotFound)?;
    app.store
        .get_message(&ctx.tenant, ctx.shadow, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}
