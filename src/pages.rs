//! The two password pages (spec §5) on their own HTTP listener: `/register`
//! and `/reset`, plain HTML with a little script. The token travels in the
//! URL fragment; the script asks `/api/link` whether it is usable (using
//! nothing up) and posts the form to `/api/register` or `/api/reset`, which
//! call the same domain functions as RegisterPassword and ResetPassword.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceBuilder;

use crate::domain::{
    call::Via,
    password::Password,
    request::RequestId,
    second_factor::qr_svg,
    sign_in::{SecondFactorSetup, SignIn},
    token::TokenKind,
    DomainError,
};

const PAGE: &str = include_str!("../templates/pages/password.html");
const SCRIPT: &str = include_str!("../templates/pages/pages.js");
const STYLE: &str = include_str!("../templates/pages/pages.css");

/// Scripts and styles from this origin only; no framing; no Referer.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(sign_in: Arc<SignIn>) -> Router {
    let headers = ServiceBuilder::new().map_response(|mut response: Response| {
        let headers = response.headers_mut();
        for (name, value) in [
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    });
    Router::new()
        .route("/register", get(page))
        .route("/reset", get(page))
        .route("/assets/pages.js", get(script))
        .route("/assets/pages.css", get(style))
        .route("/api/link", post(link))
        .route("/api/register", post(register))
        .route("/api/reset", post(reset))
        .route("/api/second-factor", post(second_factor))
        .layer(headers)
        .with_state(sign_in)
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

#[derive(Deserialize)]
struct LinkRequest {
    token: String,
    purpose: String,
}

async fn link(State(sign_in): State<Arc<SignIn>>, Json(body): Json<LinkRequest>) -> Response {
    let kind = if body.purpose == "reset" {
        TokenKind::PasswordReset
    } else {
        TokenKind::Invitation
    };
    match sign_in.link_info(&body.token, kind).await {
        Ok(info) => Json(json!({
            "state": info.state.as_str(),
            "locale": info.locale,
            "organization": info.organization,
            "username": info.username,
        }))
        .into_response(),
        Err(error) => error_response(error),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    token: String,
    password: String,
}

async fn register(State(sign_in): State<Arc<SignIn>>, Json(form): Json<PasswordForm>) -> Response {
    redeem(&sign_in, form, TokenKind::Invitation).await
}

async fn reset(State(sign_in): State<Arc<SignIn>>, Json(form): Json<PasswordForm>) -> Response {
    redeem(&sign_in, form, TokenKind::PasswordReset).await
}

async fn redeem(sign_in: &SignIn, form: PasswordForm, kind: TokenKind) -> Response {
    // The pages have no request header to correlate: each submit is its own request.
    let request_id = RequestId::generate();
    match sign_in
        .redeem(
            &form.token,
            kind,
            &Password::new(form.password),
            "password",
            &request_id,
            Via::Pages,
        )
        .await
    {
        Ok(set) => {
            let second_factor = match set.second_factor.map(setup_json).transpose() {
                Ok(second_factor) => second_factor,
                Err(error) => return error_response(error),
            };
            Json(json!({
                "organization": set.organization,
                "username": set.username,
                "second_factor": second_factor,
            }))
            .into_response()
        }
        Err(error) => error_response(error),
    }
}

/// What the page shows to enroll: the QR code (SVG, rendered here), the
/// key to type instead, and the challenge that confirms it.
fn setup_json(setup: SecondFactorSetup) -> Result<serde_json::Value, DomainError> {
    Ok(json!({
        "challenge": setup.challenge.expose(),
        "secret": setup.enrollment.secret_base32,
        "qr_svg": qr_svg(&setup.enrollment.otpauth_uri)?,
    }))
}

#[derive(Deserialize)]
struct SecondFactorForm {
    challenge: String,
    code: String,
}

/// The enrollment's code: the recovery codes, shown once.
async fn second_factor(
    State(sign_in): State<Arc<SignIn>>,
    Json(form): Json<SecondFactorForm>,
) -> Response {
    let request_id = RequestId::generate();
    match sign_in
        .confirm_required_enrollment(&form.challenge, &form.code, &request_id)
        .await
    {
        Ok(codes) => Json(json!({ "recovery_codes": codes })).into_response(),
        Err(error) => error_response(error),
    }
}

/// The page's view of a refusal: which rules are unmet, or what is wrong with the link.
fn error_response(error: DomainError) -> Response {
    let (status, body) = match error {
        DomainError::InvalidArgument(violations)
            if violations.iter().any(|v| v.field == "code") =>
        {
            (
                StatusCode::BAD_REQUEST,
                json!({"error": "WRONG_CODE", "message": violations[0].description}),
            )
        }
        DomainError::InvalidArgument(violations)
            if violations
                .iter()
                .any(|v| v.field == "token" || v.field == "challenge") =>
        {
            (
                StatusCode::BAD_REQUEST,
                json!({"error": "INVALID_TOKEN", "message": violations[0].description}),
            )
        }
        DomainError::InvalidArgument(violations) => (
            StatusCode::BAD_REQUEST,
            json!({
                "error": "PASSWORD_POLICY",
                "unmet": violations.iter().map(|v| v.code.as_ref()).collect::<Vec<_>>(),
                "message": violations.iter().map(|v| v.description.as_str()).collect::<Vec<_>>().join("; "),
            }),
        ),
        DomainError::FailedPrecondition { reason, message } => (
            StatusCode::GONE,
            json!({"error": reason, "message": message}),
        ),
        DomainError::ResourceExhausted(message) | DomainError::Throttled { message, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "BUSY", "message": message}),
        ),
        DomainError::Unavailable(_) => return unavailable(),
        DomainError::Internal(cause) if crate::store::error::is_unavailable_cause(&cause) => {
            return unavailable()
        }
        other => {
            tracing::error!(error = %other, "password page call failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "INTERNAL", "message": "internal error"}),
            )
        }
    };
    (status, Json(body)).into_response()
}

/// The database does not answer: a 503 the browser may retry.
fn unavailable() -> Response {
    let body = json!({"error": "UNAVAILABLE", "message": "the service is briefly unavailable; try again in a moment"});
    let retry_after = [(axum::http::header::RETRY_AFTER, "1")];
    (StatusCode::SERVICE_UNAVAILABLE, retry_after, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_every_rule_of_the_policy() {
        for rule in crate::domain::password::PasswordRule::ALL {
            assert!(SCRIPT.contains(rule.code()), "{}", rule.code());
        }
    }
}
