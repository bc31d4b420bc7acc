//! `/v1/groups/{group}`: `GET` lists members in join order (`?watch` streams changes);
//! `PUT|DELETE .../members/{id}` joins or leaves for the pod.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::request::{value_body, Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::recipes::group::{self, Joined, MembersWatch};
use crate::watch_stream;

/// Members of `group`, or with `?watch` a stream of joins and leaves.
pub async fn get(State(state): State<AppState>, params: Params, flags: Flags) -> Result<Response> {
    flags.allow(&["watch"])?;
    let name = params.name("group", "group name")?;
    let (client, _) = state.session.client()?;
    if flags.flag("watch")? {
        return Ok(watch_stream::respond(&state.holds, &state.session, client, MembersWatch::new(name)).await);
    }
    let members = group::members(&client, &name).await.map_err(|e| Error::from_zk(e, &name))?;
    let members: Vec<_> = members.into_iter().map(|(_, _, member)| member).collect();
    Ok(Json(json!({"group": name, "members": members})).into_response())
}

/// Joins `group` as member `id` (201), or updates the pod's existing membership (200).
pub async fn join(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    RawBody(body): RawBody,
) -> Result<Response> {
    flags.allow(&[])?;
    let name = params.name("group", "group name")?;
    let id = params.name("id", "member id")?;
    let value = value_body(&body)?;
    let (joined, member) = state.members.join(&name, &id, value).await?;
    let status = match joined {
        Joined::Created => StatusCode::CREATED,
        Joined::Updated => StatusCode::OK,
    };
    Ok((status, Json(member)).into_response())
}

/// Leaves `group` as member `id`.
pub async fn leave(State(state): State<AppState>, params: Params, flags: Flags) -> Result<StatusCode> {
    flags.allow(&[])?;
    let name = params.name("group", "group name")?;
    let id = params.name("id", "member id")?;
    state.members.leave(&name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
