/// The SQL both engines run: the dialect words where SQLite and PostgreSQL differ, and the versioned
/// schema every store of the gateway shares (migrations are appended, never edited).
module WeChatFs.SqlSchema

open WeChatFs.Settings

type Dialect =
    {
        /// Which engine: where the SQL of the two differs beyond a word (the inbox's batch insert
        /// and counts, migration settings, row locks).
        Engine: StorageProvider
        /// An auto-numbered primary key column.
        Identity: string
        /// Row locks that concurrent claimers skip instead of waiting on (PostgreSQL only).
        SkipLocked: string
    }

let sqlite =
    {
        Engine = Sqlite
        Identity = "INTEGER PRIMARY KEY AUTOINCREMENT"
        SkipLocked = ""
    }

let postgres =
    {
        Engine = Postgres
        Identity = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        SkipLocked = " FOR UPDATE SKIP LOCKED"
    }

/// Versioned schema: append a migration, never edit one that has shipped.
let migrations (d: Dialect) =
    [
        1,
        [
            "CREATE TABLE tickets (component_appid TEXT PRIMARY KEY, ticket TEXT NOT NULL, received_at BIGINT NOT NULL)"
            "CREATE TABLE component_tokens (component_appid TEXT PRIMARY KEY, token TEXT NOT NULL, token_hash TEXT NOT NULL, expires_at BIGINT NOT NULL)"
            "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)"
            "CREATE TABLE authorizers (appid TEXT PRIMARY KEY, tenant TEXT, status TEXT NOT NULL, status_reason TEXT, func_ids TEXT NOT NULL, profile TEXT, refresh_token TEXT, access_token TEXT, access_token_hash TEXT, access_expires_at BIGINT, authorized_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE INDEX authorizers_tenant ON authorizers (tenant)"
            "CREATE INDEX authorizers_due ON authorizers (status, access_expires_at)"
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, secret INTEGER NOT NULL)"
            $"CREATE TABLE events (id {d.Identity}, kind TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL, at BIGINT NOT NULL)"
            "CREATE INDEX events_kind ON events (kind)"
            "CREATE TABLE inbox (id TEXT PRIMARY KEY, authorizer_appid TEXT NOT NULL, dedupe_key TEXT NOT NULL, tenant TEXT, kind TEXT NOT NULL, received_at BIGINT NOT NULL, payload TEXT NOT NULL, raw_xml TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at BIGINT, last_error TEXT, delivered_at BIGINT, claimed_by TEXT, claimed_until BIGINT)"
            "CREATE UNIQUE INDEX inbox_dedupe ON inbox (authorizer_appid, dedupe_key)"
            "CREATE INDEX inbox_due ON inbox (status, next_attempt_at)"
        ]
        // The webhook payload already carries the raw XML; storing it twice only doubled the bytes
        // written per push.
        2, [ "ALTER TABLE inbox DROP COLUMN raw_xml" ]
        // The event log is purged by age; without this the purge would read the whole log.
        3, [ "CREATE INDEX events_at ON events (at)" ]
        // Web pages on behalf of accounts (OAuthStore.fs): funcKey routes, followers, wxTkId hashes,
        // used OAuth codes, jsapi_tickets and domain verification files.
        5,
        [
            "CREATE TABLE oauth_func_keys (func_key TEXT PRIMARY KEY, target_url TEXT NOT NULL, scope TEXT NOT NULL, description TEXT, tenant TEXT, source TEXT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE TABLE oauth_followers (authorizer_appid TEXT NOT NULL, openid TEXT NOT NULL, unionid TEXT, scope TEXT NOT NULL, profile TEXT, refresh_token TEXT, refresh_expires_at BIGINT, first_seen_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (authorizer_appid, openid))"
            "CREATE TABLE oauth_tracking_tokens (token_hash TEXT PRIMARY KEY, authorizer_appid TEXT NOT NULL, openid TEXT NOT NULL, unionid TEXT, tenant TEXT, func_key TEXT NOT NULL, scope TEXT NOT NULL, nickname TEXT, headimgurl TEXT, expires_at BIGINT NOT NULL)"
            "CREATE INDEX oauth_tracking_tokens_expiry ON oauth_tracking_tokens (expires_at)"
            "CREATE TABLE oauth_codes (code_hash TEXT PRIMARY KEY, used_at BIGINT NOT NULL)"
            "CREATE INDEX oauth_codes_used ON oauth_codes (used_at)"
            "CREATE TABLE jsapi_tickets (authorizer_appid TEXT PRIMARY KEY, ticket TEXT NOT NULL, expires_at BIGINT NOT NULL)"
            "CREATE TABLE verification_files (name TEXT PRIMARY KEY, content TEXT NOT NULL, updated_at BIGINT NOT NULL)"
        ]
        // Mini-program deployments (DeploymentStore.fs): a deployment, and one row per target that
        // the workers claim; next_at is NULL while a target waits for an event or an operator.
        6,
        [
            "CREATE TABLE deployments (id TEXT PRIMARY KEY, template_id BIGINT NOT NULL, user_version TEXT NOT NULL, user_desc TEXT NOT NULL, ext_json TEXT NOT NULL, audit TEXT, release_mode TEXT NOT NULL, release_requested INTEGER NOT NULL, max_concurrency INTEGER NOT NULL, targets TEXT NOT NULL, status TEXT NOT NULL, note TEXT, quota_rest INTEGER, quota_limit INTEGER, quota_checked_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE INDEX deployments_status ON deployments (status)"
            "CREATE TABLE deployment_targets (deployment_id TEXT NOT NULL, appid TEXT NOT NULL, tenant TEXT, state TEXT NOT NULL, step TEXT, errcode INTEGER, reason TEXT, screenshots TEXT, attempts INTEGER NOT NULL, last_errcode INTEGER, audit_id BIGINT, next_at BIGINT, claimed_by TEXT, claimed_until BIGINT, version INTEGER NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (deployment_id, appid))"
            "CREATE INDEX deployment_targets_due ON deployment_targets (deployment_id, next_at)"
            "CREATE INDEX deployment_targets_appid ON deployment_targets (appid, state)"
            // Live claims are counted on every claim: without this, a scan of the whole deployment.
            "CREATE INDEX deployment_targets_claims ON deployment_targets (deployment_id, claimed_until)"
        ]
        // Cash red packets: merchants (API key and private key sealed) and every packet, stored
        // before WeChat Pay is asked; one row per Idempotency-Key and per mch_billno.
        7,
        [
            "CREATE TABLE merchants (mch_id TEXT PRIMARY KEY, tenant TEXT, send_name TEXT NOT NULL, bound_appids TEXT NOT NULL, api_key TEXT NOT NULL, certificate_pem TEXT NOT NULL, private_key TEXT NOT NULL, cert_subject TEXT NOT NULL, cert_not_after BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE TABLE redpacks (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL, request_hash TEXT NOT NULL, mch_id TEXT NOT NULL, mch_billno TEXT NOT NULL, authorizer_appid TEXT NOT NULL, tenant TEXT, openid TEXT NOT NULL, amount_fen BIGINT NOT NULL, request TEXT NOT NULL, status TEXT NOT NULL, send_listid TEXT, err_code TEXT, err_code_des TEXT, hb_status TEXT, attempts INTEGER NOT NULL, version INTEGER NOT NULL, next_check_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE UNIQUE INDEX redpacks_key ON redpacks (idempotency_key)"
            "CREATE UNIQUE INDEX redpacks_billno ON redpacks (mch_billno)"
            "CREATE INDEX redpacks_due ON redpacks (status, next_check_at)"
            "CREATE INDEX redpacks_stale ON redpacks (status, updated_at)"
            "CREATE INDEX redpacks_mch ON redpacks (mch_id, created_at)"
        ]
        // The deliveries list, newest first, with and without a status: without these, every page
        // sorted the whole inbox (a third of a second at 10,000 messages).
        8,
        [
            "CREATE INDEX inbox_received ON inbox (received_at, id)"
            "CREATE INDEX inbox_status_received ON inbox (status, received_at, id)"
        ]
        // PostgreSQL counts the deliveries list and skips a deep page's offset from its index alone
        // only where the table's visibility map says the rows are visible to all; by default
        // autovacuum marks an inbox that is only appended to after a fifth of the table is new (at a
        // million messages, a page counted the whole table for a second). Every 10,000 new rows.
        9,
        [
            if d.Engine = Postgres then
                "ALTER TABLE inbox SET (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0)"
        ]
        // PostgreSQL counts the deliveries list from here instead of from the inbox's index (at a
        // million messages the count alone read every index entry: a third of a second vacuumed,
        // a second after a bulk load). Every change is appended as a row of its own, so concurrent
        // transactions never wait for one another on a counter row; the delivery worker folds the
        // rows into one per status now and then (InboxRows.foldCounts), and the list sums what is
        // there. Inserts and deletes are counted once per statement (a group-commit batch, a purge
        // chunk), a status change once per row, and a claim, which changes no status, not at all.
        // SQLite counts its index: in the process, a million entries take a few tens of milliseconds.
        10,
        [
            if d.Engine = Postgres then
                "CREATE TABLE inbox_counts (status TEXT NOT NULL, n BIGINT NOT NULL)"
                "CREATE FUNCTION inbox_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO inbox_counts (status, n) SELECT status, COUNT(*) FROM inserted GROUP BY status; RETURN NULL; END$$"
                "CREATE FUNCTION inbox_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO inbox_counts (status, n) SELECT status, -COUNT(*) FROM deleted GROUP BY status; RETURN NULL; END$$"
                "CREATE FUNCTION inbox_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO inbox_counts (status, n) VALUES (OLD.status, -1), (NEW.status, 1); RETURN NULL; END$$"
                // Creating a trigger locks the inbox against writers until this migration commits:
                // the count below sees every row written before, and the triggers every row after.
                "CREATE TRIGGER inbox_counted_insert AFTER INSERT ON inbox REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION inbox_counts_inserted()"
                "CREATE TRIGGER inbox_counted_delete AFTER DELETE ON inbox REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION inbox_counts_deleted()"
                "CREATE TRIGGER inbox_counted_move AFTER UPDATE OF status ON inbox FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION inbox_counts_moved()"
                "INSERT INTO inbox_counts (status, n) SELECT status, COUNT(*) FROM inbox GROUP BY status"
        ]
    ]
