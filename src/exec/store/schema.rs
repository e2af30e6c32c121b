//! The `SQLite` store's schema and its migrations, one per version.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lock (
    id INTEGER PRIMARY KEY CHECK (id = 1), host TEXT NOT NULL, pid INTEGER NOT NULL,
    since TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    key TEXT PRIMARY KEY, account TEXT, kind TEXT NOT NULL, fingerprint TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started_at INTEGER,
    finished_at INTEGER, duration_ms INTEGER, output TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS folders (
    account TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL DEFAULT 0, last_uid INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0, failed_now INTEGER NOT NULL DEFAULT 0,
    copied INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0, updated_at INTEGER,
    PRIMARY KEY (account, source));
CREATE TABLE IF NOT EXISTS issues (
    account TEXT NOT NULL, folder TEXT NOT NULL, uid INTEGER NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (account, folder, uid));
";

/// `PRAGMA application_id` of a mailplan store: `mlpn` in ASCII.
pub const APPLICATION_ID: i64 = 0x6d6c_706e;
/// `PRAGMA user_version` of the schema this mailplan writes: one per entry of `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 4;
/// `MIGRATIONS[v]` takes a store from version `v` to `v + 1`. Version 0 is an empty file or a
/// store from before versions were kept (the same tables, no `application_id`).
/// Version 2: a folder's record belongs to a route (see the module doc); the records of a
/// version-1 store get the empty route, which matches none, so each folder is compared whole
/// once (safe: nothing is sent twice), then recorded.
/// Version 3: what names a message left out or refused (date, subject, Message-ID, size), for
/// the report; the issues of an older store have none.
/// Version 4: the source counts of a historical account ([`SOURCE_COUNTS`]) get their own
/// tables, moved out of `meta` (where they were `source-counts <address>` = a JSON object).
pub(super) const MIGRATIONS: &[&str] = &[
    SCHEMA,
    "ALTER TABLE folders ADD COLUMN route TEXT NOT NULL DEFAULT '';",
    "ALTER TABLE issues ADD COLUMN date TEXT; ALTER TABLE issues ADD COLUMN subject TEXT;
     ALTER TABLE issues ADD COLUMN message_id TEXT; ALTER TABLE issues ADD COLUMN size INTEGER;",
    SOURCE_COUNTS,
];

/// Messages per folder of a historical MX Plan source, counted before OVH migrates it (the
/// source is gone afterwards) for its `verify`: `source_counts` says an account was counted
/// (an account counted with no folder has a row there and none in `source_folder_counts`).
/// Counts a version-3 store kept in `meta` move here; text there that is not a JSON object was
/// never read back, and is dropped.
const SOURCE_COUNTS: &str = "
CREATE TABLE source_counts (account TEXT PRIMARY KEY, counted_at INTEGER);
CREATE TABLE source_folder_counts (
    account TEXT NOT NULL REFERENCES source_counts (account), folder TEXT NOT NULL,
    messages INTEGER NOT NULL, PRIMARY KEY (account, folder));
INSERT INTO source_counts (account)
    SELECT substr(key, 15) FROM meta
    WHERE substr(key, 1, 14) = 'source-counts ' AND json_valid(value)
      AND json_type(value) = 'object';
INSERT INTO source_folder_counts (account, folder, messages)
    SELECT substr(m.key, 15), j.key, j.value FROM meta m, json_each(m.value) j
    WHERE substr(m.key, 1, 14) = 'source-counts ' AND json_valid(m.value)
      AND json_type(m.value) = 'object' AND j.type = 'integer';
DELETE FROM meta WHERE substr(key, 1, 14) = 'source-counts ';
";
/// The tables of a version-0 store: a file with any other is not one.
pub(super) const TABLES_V0: [&str; 5] = ["meta", "lock", "steps", "folders", "issues"];
