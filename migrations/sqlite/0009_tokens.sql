-- API token scopes (issue 10): Sentry's scope names, space-separated. Tokens made before
-- scopes existed could do everything, and keep that; `hint` is the token's last four
-- characters, shown in lists so people can tell tokens apart (the token itself is never kept).
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL
    DEFAULT 'event:read event:write event:admin project:read project:write project:admin org:read org:write org:admin';
ALTER TABLE api_tokens ADD COLUMN hint TEXT NOT NULL DEFAULT '';
