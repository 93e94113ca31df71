//! The throwaway PostgreSQL server of `tests/support/postgres.rs`: it starts on a free loopback
//! port, runs SQL, keeps every committed row through a `kill -9` of the postmaster (fsync is
//! on), and its directory goes with it.

use eventbus_suite::postgres::Postgres;

#[test]
fn committed_rows_survive_a_crash_of_the_server() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    assert!(
        pg.url()
            .ends_with(&format!("127.0.0.1:{}/postgres", pg.port()))
    );
    pg.psql("CREATE TABLE orders (id bigint PRIMARY KEY)");
    pg.psql("INSERT INTO orders SELECT generate_series(1, 100)");
    let pid = pg.pid().expect("the postmaster's pid");
    pg.kill();
    assert!(!pg.ready(), "the postmaster {pid} was killed");
    assert!(
        pg.try_psql("SELECT 1").is_err(),
        "nothing answers while it is down"
    );
    pg.restart();
    assert_eq!(pg.psql("SELECT count(*) FROM orders"), "100");
    let err = pg.try_psql("SELECT * FROM missing").unwrap_err();
    assert!(err.contains("missing"), "{err}");
}
