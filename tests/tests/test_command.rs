//! The test command on a stock Debian Postgres (issue #16, defect 3): no
//! `test` database, no password-less TCP login. `scripts/pg-test-role.sh`
//! (run by `scripts/test.sh`) makes the tests' role and database over the
//! local socket, and the tests then log in over TCP with a password.

use std::path::PathBuf;

use integration_tests::PrivatePostgres;
use sqlx::Connection;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

#[tokio::test]
async fn the_test_role_script_makes_a_stock_cluster_usable_by_the_tests() {
    let pg = PrivatePostgres::start_stock().await;
    // What the harness used before: the postgres role over TCP without a
    // password, on a `test` database. A stock cluster refuses it.
    let old = format!("postgres://postgres@127.0.0.1:{}/test", pg.port);
    assert!(sqlx::PgConnection::connect(&old).await.is_err());

    let run = || {
        std::process::Command::new(repo().join("scripts/pg-test-role.sh"))
            .env("PGHOST", pg.socket_dir())
            .env("PGPORT", pg.port.to_string())
            .output()
            .expect("run scripts/pg-test-role.sh")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        url,
        format!(
            "postgres://orch_test:orch_test@127.0.0.1:{}/orch_test",
            pg.port
        )
    );
    // Idempotent: the test command runs it every time.
    assert!(run().status.success());

    // What the harness does with it: log in over TCP (scram), create and
    // drop a database of its own.
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("TCP login with the password");
    sqlx::raw_sql("CREATE DATABASE orch_test_stock_check")
        .execute(&mut conn)
        .await
        .expect("CREATEDB");
    sqlx::raw_sql("DROP DATABASE orch_test_stock_check")
        .execute(&mut conn)
        .await
        .expect("drop its own database");
}
