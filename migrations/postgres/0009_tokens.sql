-- API token scopes (PostgreSQL): the same as migrations/sqlite/0009_tokens.sql.
ALTER TABLE api_tokens
    ADD COLUMN scopes TEXT NOT NULL
        DEFAULT 'event:read event:write event:admin project:read project:write project:admin org:read org:write org:admin',
    ADD COLUMN hint TEXT NOT NULL DEFAULT '';
