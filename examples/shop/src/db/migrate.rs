//! Migrations, embedded in the binary and run at start (and by
//! `shop migrate`): each file of `migrations/` once, in order, in one
//! transaction under an advisory lock, so replicas starting together apply
//! them once and a failed migration leaves nothing half done (Postgres DDL
//! is transactional).

use super::{DbError, DbPool};

/// One migration: its version (the file's number), name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order; recorded in `schema_migrations`.
    pub version: i32,
    /// The file name.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_products.sql",
        sql: include_str!("../../migrations/0001_products.sql"),
    },
    Migration {
        version: 2,
        name: "0002_orders.sql",
        sql: include_str!("../../migrations/0002_orders.sql"),
    },
];

/// The advisory lock key replicas take while migrating (any constant
/// shared by them: "shop" in ASCII).
const LOCK_KEY: i64 = 0x73_68_6f_70;

/// Applies the migrations not yet applied; returns their names.
///
/// # Errors
///
/// No connection, or a migration failed (then none of this run is kept).
pub async fn run(pool: &DbPool) -> Result<Vec<&'static str>, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut ran = Vec::new();
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
        ran.push(migration.name);
    }
    tx.commit().await?;
    Ok(ran)
}

/// Inserts `count` products named `product-000001`... (idempotent: names
/// already there are skipped); returns how many were added.
///
/// # Errors
///
/// No connection, or the insert failed.
pub async fn seed(pool: &DbPool, count: i64) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let added = client
        .execute(
            "INSERT INTO products (name, price_cents, stock)
             SELECT format('product-%s', lpad(i::text, 6, '0')), 100 + (i * 37) % 10000, 1000000
             FROM generate_series(1, $1::bigint) AS i
             ON CONFLICT (name) DO NOTHING",
            &[&count],
        )
        .await?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_match_file_names() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in MIGRATIONS {
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
        }
    }
}
