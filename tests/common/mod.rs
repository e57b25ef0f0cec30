//! Shared test fixtures: a store on each real backend, and a running server.
//!
//! SQLite tests use a temporary file. PostgreSQL tests use the server named by
//! `SWITCHYARD_TEST_PG_URL` (default: the local trust-auth server, database `test`), each
//! test in a schema of its own that is dropped afterwards. When PostgreSQL is unreachable
//! the PostgreSQL variants print a loud SKIPPED line, unless `SWITCHYARD_REQUIRE_PG=1`
//! (set by `.ci/run`), in which case they fail.

#![allow(dead_code)]

pub mod api;
pub mod espi;
pub mod openadr2;
pub mod openadr3;
pub mod sep2;
pub mod xsd;

use switchyard::api::auth::{Role, TokenConfig};
use switchyard::app::{self, RunningServer};
use switchyard::config::Config;
use switchyard::registry::Registry;
use switchyard::store::Store;

pub const OPERATOR_TOKEN: &str = "test-operator-token";
pub const READER_TOKEN: &str = "test-reader-token";

/// A store on one backend, cleaned up on drop.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

pub fn pg_base_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::open(&url, 4).await.expect("open sqlite store");
        TestDb {
            store,
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh schema on the test PostgreSQL server, or None (after saying so) when the
    /// server is unreachable and not required.
    pub async fn postgres() -> Option<TestDb> {
        sqlx::any::install_default_drivers();
        let base = pg_base_url();
        let schema = format!("sy_t_{}", uuid::Uuid::new_v4().simple());
        let admin = match sqlx::AnyPool::connect(&base).await {
            Ok(p) => p,
            Err(e) => {
                if std::env::var("SWITCHYARD_REQUIRE_PG").as_deref() == Ok("1") {
                    panic!(
                        "PostgreSQL at {base} is required (SWITCHYARD_REQUIRE_PG=1) but unreachable: {e}"
                    );
                }
                eprintln!(
                    "SKIPPED: PostgreSQL at {base} unreachable ({e}); set SWITCHYARD_TEST_PG_URL or start it"
                );
                return None;
            }
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let store = Store::open(&url, 4).await.expect("open postgres store");
        Some(TestDb {
            store,
            url,
            _dir: None,
            pg: Some((base, schema)),
        })
    }

    pub async fn registry(&self) -> Registry {
        Registry::open(self.store.clone()).await.expect("registry")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg.take() {
            // Drop runs outside async context; use a private runtime on its own thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(p) = sqlx::AnyPool::connect(&base).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA {schema} CASCADE"
                        )))
                        .execute(&p)
                        .await;
                        p.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Declares each listed async test function (taking a `TestDb`) once per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::common::TestDb::sqlite().await;
                    super::$name(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::common::TestDb::postgres().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

/// reqwest (built with `rustls-no-provider`) needs a process-wide rustls provider before
/// any client is built; tests use the server's own. A second install is a harmless no-op.
pub fn install_tls_provider() {
    let _ = switchyard::protocol::sep2::tls::crypto_provider().install_default();
}

/// A server on an ephemeral port over `db`, with one operator and one read-only token.
pub async fn start_server(db: &TestDb, body_limit: usize) -> (RunningServer, String) {
    start_server_with(db, body_limit, |_| {}).await
}

/// As [`start_server`], with further configuration applied by `adjust`.
pub async fn start_server_with(
    db: &TestDb,
    body_limit: usize,
    adjust: impl FnOnce(&mut Config),
) -> (RunningServer, String) {
    install_tls_provider();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.body_limit_bytes = body_limit;
    config.server.import_limit_bytes = 4 * 1024 * 1024;
    config.server.shutdown_grace_seconds = 5;
    config.api.tokens = vec![
        TokenConfig {
            name: "ops".into(),
            token: OPERATOR_TOKEN.into(),
            role: Role::Operator,
        },
        TokenConfig {
            name: "viewer".into(),
            token: READER_TOKEN.into(),
            role: Role::ReadOnly,
        },
    ];
    adjust(&mut config);
    let registry = db.registry().await;
    let server = app::start(&config, registry).await.expect("start server");
    let base = format!("http://{}", server.addr);
    (server, base)
}
