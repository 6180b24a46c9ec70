//! API tokens, kept only as their SHA-256, with their scopes.

use super::{Result, Store};
use crate::token::Scopes;

/// What lists show of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub label: String,
    pub scopes: Scopes,
    /// Its last four characters.
    pub hint: String,
    pub created_at: i64,
}

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

    /// Every token, oldest first (never the token itself: only its hint).
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows: Vec<(i64, String, String, String, i64)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, label, scopes, hint, created_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, label, scopes, hint, created_at)| TokenInfo {
                id,
                label,
                scopes: Scopes::from_stored(&scopes),
                hint,
                created_at,
            })
            .collect())
    }

    /// Revokes a token: it is refused (401) from the next request on. False when there is no
    /// such token.
    pub async fn delete_token(&self, id: i64) -> Result<bool> {
        let n = on!(&self.write, p => sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n > 0)
    }
}
