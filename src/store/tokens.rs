//! API tokens, kept only as their SHA-256, with their scopes.

use super::{Result, Store};
use crate::token::Scopes;

impl Store {
    /// Stores a new token; returns its id. `hint` is what lists show of it (its last
    /// characters).
    pub async fn insert_token(
        &self,
        token_hash: &str,
        label: &str,
        scopes: &Scopes,
        hint: &str,
        now_us: i64,
    ) -> Result<i64> {
        let (id,): (i64,) = on!(&self.write, p => sqlx::query_as(
            "INSERT INTO api_tokens (token_hash, label, scopes, hint, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(token_hash)
        .bind(label)
        .bind(scopes.to_stored())
        .bind(hint)
        .bind(now_us)
        .fetch_one(p)
        .await)?;
        Ok(id)
    }

    /// The token's id and scopes when a token with this hash exists.
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<(i64, Scopes)>> {
        let row: Option<(i64, String)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, scopes FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(|(id, scopes)| (id, Scopes::from_stored(&scopes))))
    }
}
