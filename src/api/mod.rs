//! HTTP handlers: they translate HTTP ⇄ domain and nothing else.

pub mod admission;
pub mod auth;
pub mod chat;
pub mod explain;
pub mod extract;
pub mod health;
pub mod models;
pub mod rate_limit;
pub mod replay;
pub mod respond;
mod strict;
pub mod wire;

use axum::extract::Request;

use crate::error::ApiError;

/// Any path tierwise does not serve.
pub async fn unknown_url(request: Request) -> ApiError {
    ApiError::UnknownUrl { method: request.method().to_string(), path: request.uri().path().to_string() }
}

/// A served path with the wrong method.
pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed { method: request.method().to_string(), path: request.uri().path().to_string() }
}
