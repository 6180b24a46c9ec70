//! API tokens, kept only as their SHA-256.

use super::{Result, Store};

impl Store {
    pub async fn insert_token(&self, token_hash: &str, label: &str, now_us: i64) -> Result<()> {
        on!(&self.write, p => sqlx::query("INSERT INTO api_tokens (token_hash, label, created_at) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(label)
            .bind(now_us)
            .execute(p)
            .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The token's id when a token with this hash exists.
    pub async fn token_id(&self, token_hash: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> = on!(&self.read, p => sqlx::query_as("SELECT id FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(|r| r.0))
    }
}
