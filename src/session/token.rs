//! Token authentication: a JWT as the WAMP `ticket` or as `Authorization: Bearer` on the upgrade, for services
//! and apps that have no web-app cookie (`[auth]`).
//!
//! HS256 with `auth.jwt_secret`, and/or RS256/ES256 with `auth.jwt_public_key`; the token's header says which
//! (a token signed with an algorithm the router has no key for is refused, `none` never passes). `exp` is
//! required, `nbf` checked when present, `aud`/`iss` when configured, within `auth.leeway`. The identity is
//! `sub` (required, non-empty) with the roles of `auth.roles_claim`, `authmethod` `ticket`; the session ends when
//! the token does (`exp` + leeway). Keys are parsed at start: a bad one stops the node naming its setting.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{AuthMethod, Identity};
use crate::config::{AuthSettings, ConfigError};

/// The shortest HS256 secret accepted (RFC 7518 §3.2: a key of at least the hash's size).
const MIN_SECRET_BYTES: usize = 32;

/// Why a token was refused (the ABORT's or the 401's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// Checks tokens against the configured keys.
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    /// The public key and its algorithm (RS256 or ES256).
    public: Option<(DecodingKey, Algorithm)>,
    settings: AuthSettings,
    default_role: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenVerifier({:?})", self.algorithms())
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message: message.into() }
}

impl TokenVerifier {
    /// The verifier `[auth]` describes; `None` when no key is set (token authentication off).
    pub fn from_settings(auth: &AuthSettings, default_role: &str) -> Result<Option<TokenVerifier>, ConfigError> {
        let hs256 = match auth.jwt_secret.as_str() {
            "" => None,
            secret if secret.len() < MIN_SECRET_BYTES => {
                let message = format!("is {} bytes; HS256 needs at least {MIN_SECRET_BYTES}", secret.len());
                return Err(invalid("auth.jwt_secret (SWITCHBOARD_JWT_SECRET)", message));
            }
            secret => Some(DecodingKey::from_secret(secret.as_bytes())),
        };
        let public = match auth.jwt_public_key.trim() {
            "" => None,
            key => {
                const KEY: &str = "auth.jwt_public_key (SWITCHBOARD_JWT_PUBLIC_KEY)";
                let pem = match key.starts_with("-----BEGIN") {
                    true => key.to_owned(),
                    false => {
                        std::fs::read_to_string(key).map_err(|e| invalid(KEY, format!("cannot read '{key}': {e}")))?
                    }
                };
                let rsa = DecodingKey::from_rsa_pem(pem.as_bytes()).map(|k| (k, Algorithm::RS256));
                let ec = || DecodingKey::from_ec_pem(pem.as_bytes()).map(|k| (k, Algorithm::ES256));
                Some(
                    rsa.or_else(|_| ec())
                        .map_err(|e| invalid(KEY, format!("not an RSA or EC public key in PEM: {e}")))?,
                )
            }
        };
        if hs256.is_none() && public.is_none() {
            return Ok(None);
        }
        if auth.roles_claim.is_empty() {
            return Err(invalid("auth.roles_claim", "must name a claim"));
        }
        Ok(Some(TokenVerifier { hs256, public, settings: auth.clone(), default_role: default_role.to_owned() }))
    }

    /// The algorithms accepted, for messages.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.hs256.is_some() {
            out.push("HS256");
        }
        match self.public {
            Some((_, Algorithm::ES256)) => out.push("ES256"),
            Some(_) => out.push("RS256"),
            None => {}
        }
        out
    }

    /// The identity `token` proves, or why it proves none.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        self.verify_until(token).map(|(identity, _)| identity)
    }

    /// [`verify`](Self::verify), with the moment (Unix seconds) the session must end: the token's `exp`
    /// plus `auth.leeway`.
    pub fn verify_until(&self, token: &str) -> Result<(Identity, u64), TokenError> {
        let refused = |why: String| TokenError(why);
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(format!("not a JWT: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            alg => self.public.as_ref().filter(|(_, expected)| *expected == alg).map(|(key, _)| key),
        };
        let Some(key) = key else {
            let accepted = self.algorithms().join(", ");
            return Err(refused(format!("signed with {:?}; this router accepts {accepted}", header.alg)));
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        match self.settings.audience.as_str() {
            "" => validation.validate_aud = false,
            audience => validation.set_audience(&[audience]),
        }
        if !self.settings.issuer.is_empty() {
            validation.set_issuer(&[self.settings.issuer.as_str()]);
        }
        let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation)
            .map_err(|e| refused(describe(&e)))?
            .claims;
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        if sub.is_empty() {
            return Err(refused("the token's sub is empty".into()));
        }
        let claim = &self.settings.roles_claim;
        let roles = match claims.get(claim) {
            None | Some(Value::Null) => vec![self.default_role.clone()],
            Some(Value::String(role)) => vec![role.clone()],
            Some(Value::Array(items)) => {
                let roles: Option<Vec<String>> = items.iter().map(|v| v.as_str().map(str::to_owned)).collect();
                match roles {
                    Some(roles) if roles.is_empty() => vec![self.default_role.clone()],
                    Some(roles) => roles,
                    None => return Err(refused(format!("claim '{claim}' is not an array of strings"))),
                }
            }
            Some(_) => return Err(refused(format!("claim '{claim}' is not a string or an array of strings"))),
        };
        // Validation required a numeric `exp`; NumericDate may carry a fraction.
        let exp = claims.get("exp").and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))).unwrap_or(0);
        let identity = Identity { authid: sub.to_owned(), authroles: roles, authmethod: AuthMethod::Ticket };
        Ok((identity, exp.saturating_add(self.settings.leeway.as_secs())))
    }
}

/// jsonwebtoken's error in words for the client.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
        ErrorKind::InvalidAudience => "the token's aud is not this router's (auth.audience)".into(),
        ErrorKind::InvalidIssuer => "the token's iss is not the expected issuer (auth.issuer)".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no '{claim}' claim"),
        _ => format!("invalid token: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

    fn verifier(edit: impl FnOnce(&mut AuthSettings)) -> TokenVerifier {
        let mut auth = AuthSettings { jwt_secret: SECRET.into(), ..AuthSettings::default() };
        edit(&mut auth);
        TokenVerifier::from_settings(&auth, "user").unwrap().unwrap()
    }

    fn token(claims: Value) -> String {
        encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn now() -> u64 {
        crate::model::now_millis() / 1000
    }

    #[test]
    fn a_good_token_gives_sub_roles_and_the_ticket_method() {
        let v = verifier(|_| {});
        let id = v.verify(&token(json!({"sub": "svc-billing", "exp": now() + 60, "roles": ["service", "billing"]})));
        assert_eq!(
            id.unwrap(),
            Identity {
                authid: "svc-billing".into(),
                authroles: vec!["service".into(), "billing".into()],
                authmethod: AuthMethod::Ticket
            }
        );
        let id = v.verify(&token(json!({"sub": "bob", "exp": now() + 60}))).unwrap();
        assert_eq!(id.authroles, vec!["user"]);
        let id = verifier(|a| a.roles_claim = "scope".into());
        assert_eq!(
            id.verify(&token(json!({"sub": "x", "exp": now() + 60, "scope": "admin"}))).unwrap().authroles,
            ["admin"]
        );
    }

    #[test]
    fn every_bad_token_is_refused_with_a_reason() {
        let v = verifier(|a| {
            a.audience = "switchboard".into();
            a.issuer = "https://app.example".into();
            a.leeway = std::time::Duration::ZERO;
        });
        let good = json!({"sub": "bob", "exp": now() + 60, "aud": "switchboard", "iss": "https://app.example"});
        assert!(v.verify(&token(good.clone())).is_ok());
        let with = |key: &str, value: Value| {
            let mut claims = good.clone();
            claims[key] = value;
            v.verify(&token(claims)).unwrap_err().0
        };
        assert!(with("exp", json!(now() - 10)).contains("expired"));
        assert!(with("nbf", json!(now() + 600)).contains("not valid yet"));
        assert!(with("aud", json!("other")).contains("aud"));
        assert!(with("iss", json!("https://evil.example")).contains("iss"));
        assert!(with("sub", json!("")).contains("sub is empty"));
        assert!(with("roles", json!([1, 2])).contains("not an array of strings"));
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(v.verify(&token(no_exp)).unwrap_err().0.contains("'exp'"));
        let forged =
            encode(&Header::default(), &good, &EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!!"))
                .unwrap();
        assert!(v.verify(&forged).unwrap_err().0.contains("signature"));
        assert!(v.verify("not.a.jwt").unwrap_err().0.contains("not a JWT"));
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&good.to_string()));
        assert!(v.verify(&unsigned).is_err(), "alg none never passes");
    }

    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn bad_keys_stop_the_node_naming_the_setting() {
        let short = AuthSettings { jwt_secret: "short".into(), ..AuthSettings::default() };
        assert!(TokenVerifier::from_settings(&short, "user")
            .unwrap_err()
            .to_string()
            .contains("SWITCHBOARD_JWT_SECRET"));
        let bad = AuthSettings {
            jwt_public_key: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into(),
            ..AuthSettings::default()
        };
        assert!(TokenVerifier::from_settings(&bad, "user")
            .unwrap_err()
            .to_string()
            .contains("SWITCHBOARD_JWT_PUBLIC_KEY"));
        let missing = AuthSettings { jwt_public_key: "/nonexistent/key.pem".into(), ..AuthSettings::default() };
        assert!(TokenVerifier::from_settings(&missing, "user").unwrap_err().to_string().contains("cannot read"));
        assert!(TokenVerifier::from_settings(&AuthSettings::default(), "user").unwrap().is_none());
    }
}
