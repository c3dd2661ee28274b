//! Service authentication: `Authorization: Bearer <token>` against the configured tokens.
//!
//! Several tokens are accepted at once so that one can be rotated without downtime (add the
//! new one, move the callers, remove the old one). The comparison is constant-time in two
//! ways: each configured token is kept as its SHA-256, so the presented token is compared as
//! a fixed-length digest (no length leak), and every configured token is compared, without
//! stopping at the first match (no position leak).
//!
//! A request must carry exactly one `Authorization` header: with two, which one a proxy or a
//! framework would judge is anyone's guess, so ambiguous credentials are refused like wrong
//! ones.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, ResponseError as _, web};
use secrecy::{ExposeSecret as _, SecretString};
use secrets_adapters::audit::TokenId;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};

use crate::audit::Caller;
use crate::error::ApiError;

/// The accepted service tokens, as digests, each with its public id (for the audit trail).
pub struct ServiceTokens(Vec<([u8; 32], TokenId)>);

impl std::fmt::Debug for ServiceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceTokens({} configured)", self.0.len())
    }
}

impl ServiceTokens {
    /// Digests the configured tokens.
    #[must_use]
    pub fn new(tokens: &[SecretString]) -> Self {
        Self(
            tokens
                .iter()
                .map(|token| {
                    let token = token.expose_secret().as_bytes();
                    (Sha256::digest(token).into(), TokenId::of(token))
                })
                .collect(),
        )
    }

    /// Whether `presented` is one of the configured tokens.
    #[must_use]
    pub fn accepts(&self, presented: &[u8]) -> bool {
        self.accepted(presented).is_some()
    }

    /// The id of the configured token `presented` is, if it is one. Every token is compared,
    /// in constant time; only the index of the match is chosen by it, without a branch.
    #[must_use]
    pub fn accepted(&self, presented: &[u8]) -> Option<&TokenId> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut matched = Choice::from(0);
        let mut index = 0u32;
        for (position, (token, _)) in self.0.iter().enumerate() {
            let equal = token.ct_eq(&digest);
            index.conditional_assign(&(position as u32), equal);
            matched |= equal;
        }
        bool::from(matched).then(|| &self.0[index as usize].1)
    }
}

/// Middleware: lets a request through only with one `Authorization` header holding an
/// accepted bearer token; otherwise 401.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let mut headers = req.headers().get_all(AUTHORIZATION);
    let presented = match (headers.next(), headers.next()) {
        (Some(only), None) => only.as_bytes().strip_prefix(b"Bearer "),
        _ => None,
    };
    let accepted = match (presented, req.app_data::<web::Data<ServiceTokens>>()) {
        (Some(token), Some(tokens)) => tokens.accepted(token).copied(),
        _ => None,
    };
    if let Some(caller) = accepted {
        req.extensions_mut().insert(Caller(caller));
        Ok(next.call(req).await?.map_into_left_body())
    } else {
        Ok(req
            .into_response(ApiError::unauthorized().error_response())
            .map_into_right_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_token_is_accepted_and_nothing_else() {
        let tokens = ServiceTokens::new(&[
            SecretString::from("old-token"),
            SecretString::from("new-token"),
        ]);
        assert!(tokens.accepts(b"old-token"));
        assert!(tokens.accepts(b"new-token"));
        for wrong in [
            &b""[..],
            b"old-toke",
            b"old-token ",
            b"NEW-TOKEN",
            b"old-tokennew-token",
        ] {
            assert!(!tokens.accepts(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn the_accepted_token_is_named_by_its_own_id() {
        let tokens = ServiceTokens::new(&[
            SecretString::from("old-token"),
            SecretString::from("new-token"),
        ]);
        assert_eq!(
            tokens.accepted(b"new-token"),
            Some(&TokenId::of(b"new-token"))
        );
        assert_eq!(
            tokens.accepted(b"old-token"),
            Some(&TokenId::of(b"old-token"))
        );
        assert_eq!(tokens.accepted(b"other"), None);
    }

    #[test]
    fn no_configured_token_accepts_nothing() {
        assert!(!ServiceTokens::new(&[]).accepts(b""));
    }
}
