//! Who is calling: the organisation API key in `Authorization: Bearer …`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use hookline_core::apikey::Scope;
use hookline_core::ids::{ApiKeyId, OrganizationId};
use hookline_store::repo::api_keys::ApiKeyRecord;

use crate::{ApiError, AppState};

/// An authenticated caller. Every handler scopes its queries to `organization_id`, so
/// nothing crosses organisations.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key used.
    pub key_id: ApiKeyId,
    /// The only organisation this caller may see or change.
    pub organization_id: OrganizationId,
    /// The key's label, recorded as `created_by`.
    pub label: String,
    scopes: Vec<Scope>,
}

impl Caller {
    /// Refuses (403) unless the key's scopes include `needed`: `admin` includes every
    /// scope and `webhooks:write` includes `webhooks:read`.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.may(needed) { Ok(()) } else { Err(ApiError::forbidden(needed.as_str())) }
    }

    /// Whether the key's scopes include `needed` (as [`Self::require`] decides).
    pub fn may(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|scope| {
            matches!(
                (scope, needed),
                (Scope::Admin, _)
                    | (Scope::WebhooksWrite, Scope::WebhooksWrite | Scope::WebhooksRead)
                    | (Scope::WebhooksRead, Scope::WebhooksRead)
            )
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        state.rate.admit_address(address)?;
        let Some(key) = key_of(parts, state).await? else {
            state.rate.failed_sign_in(address);
            return Err(ApiError::unauthorized());
        };
        // The event door's throughput is the point of it (ingest's own back-pressure
        // applies there); the per-key rate guards the management routes.
        if parts.uri.path() != "/v1/events" {
            state.rate.admit_key(&key.id)?;
        }
        Ok(Caller { key_id: key.id, organization_id: key.organization_id, label: key.label, scopes: key.scopes })
    }
}

/// The host platform's backend, calling with an operator token
/// (`api.operator_token_hashes`): it manages organisations. An organisation key is
/// refused (403); so is a missing or unknown token (401), counted as a failed sign-in.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        state.rate.admit_address(address)?;
        match bearer(parts) {
            Some(token) if hookline_core::apikey::is_operator_token(token, &state.limits.operator_token_hashes) => {
                Ok(Operator)
            }
            Some(token)
                if !token.starts_with(hookline_core::apikey::OPERATOR_PREFIX)
                    && key_of(parts, state).await?.is_some() =>
            {
                Err(ApiError {
                    status: axum::http::StatusCode::FORBIDDEN,
                    code: "forbidden",
                    field: None,
                    message:
                        "this route is the platform operator's: it needs the operator token, not an organisation key"
                            .into(),
                    retry_after: None,
                })
            }
            _ => {
                state.rate.failed_sign_in(address);
                Err(ApiError::unauthorized())
            }
        }
    }
}

/// The token in `Authorization: Bearer …` (the scheme is case-insensitive, RFC 9110
/// §11.1), if there is one.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|v| !v.is_empty())
}

/// The active key presented in `Authorization: Bearer …`, if one is.
async fn key_of(parts: &Parts, state: &AppState) -> Result<Option<ApiKeyRecord>, ApiError> {
    let Some(presented) = bearer(parts) else { return Ok(None) };
    hookline_store::repo::api_keys::authenticate(&state.pool, presented)
        .await
        .map_err(|err| ApiError::unavailable(&err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &[Scope]) -> Caller {
        Caller {
            key_id: ApiKeyId::generate(),
            organization_id: OrganizationId::generate(),
            label: "k".into(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn scopes_nest_admin_over_write_over_read() {
        let all = [Scope::Admin, Scope::WebhooksWrite, Scope::WebhooksRead];
        assert!(all.iter().all(|s| caller(&[Scope::Admin]).require(*s).is_ok()));
        assert!(caller(&[Scope::WebhooksWrite]).require(Scope::WebhooksRead).is_ok());
        assert!(caller(&[Scope::WebhooksWrite]).require(Scope::Admin).is_err());
        assert!(caller(&[Scope::WebhooksRead]).require(Scope::WebhooksWrite).is_err());
        assert!(caller(&[]).require(Scope::WebhooksRead).is_err());
    }
}

macro_rules! scoped_caller {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        /// As an extractor it runs before any body is read, so a caller without the scope
        /// gets 403 and learns nothing from validation.
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($scope)?;
                Ok(Self(caller))
            }
        }
    };
}

scoped_caller!(
    /// A caller allowed to read webhooks, logs and the catalog.
    Reader,
    Scope::WebhooksRead
);
scoped_caller!(
    /// A caller allowed to change webhooks and publish events.
    Writer,
    Scope::WebhooksWrite
);
scoped_caller!(
    /// A caller allowed everything in its organisation, keys and credentials included.
    Admin,
    Scope::Admin
);
