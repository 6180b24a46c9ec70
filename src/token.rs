//! API tokens: `sntryu_<64 hex>` (the form sentry-cli recognizes), stored only as SHA-256.

use sha2::{Digest, Sha256};

/// A new random token.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("sntryu_{}", hex::encode(bytes))
}

/// What the database keeps of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new DSN public key: 32 lowercase hex characters, as Sentry issues them.
pub fn generate_public_key() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_have_the_sentry_user_token_form() {
        let t = super::generate();
        assert!(t.starts_with("sntryu_"));
        assert_eq!(t.len(), 7 + 64);
        assert!(t[7..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(super::hash(&t), t);
        assert_eq!(super::hash(&t).len(), 64);
    }
}
