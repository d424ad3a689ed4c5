//! HTTP handlers: they translate HTTP ⇄ domain and nothing else.

pub mod admission;
mod cached;
pub mod caller;
pub mod chat;
pub mod embeddings;
pub mod explain;
pub mod extract;
mod failure;
mod headers;
pub mod health;
mod job;
pub mod models;
pub mod respond;
pub mod responses;

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
