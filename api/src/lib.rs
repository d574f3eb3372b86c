//! The HTTP API (axum): routes, auth, problem+json errors
