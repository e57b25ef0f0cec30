// TEMPORARY experiment, deleted after use.
use sqlx::AnyConnection;
use std::time::Instant;
use switchyard::domain::*;
use switchyard::registry::model::{Account, Der, Meter, Site};
use switchyard::store::record::{self, Value, dynamic};
use switchyard::store::{Record, Store};

async fn insert_q<R: Record>(conn: &mut AnyConnection, recs: &[R], rows: usize, dollar: bool) {
    let per = R::COLUMNS.len();
    for chunk in recs.chunks(rows) {
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            R::TABLE,
            R::COLUMNS.join(", ")
        );
        let mut n = 0;
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..per {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                if dollar {
                    sql.push_str(&format!("${n}"));
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        let mut q = dynamic(sql);
        for r in chunk {
            for v in r.values() {
                q = Value::bind_to(v, q);
            }
        }
        q.execute(&mut *conn).await.unwrap();
    }
}

fn data(sites: usize, seq: bool) -> (Vec<Account>, Vec<Site>, Vec<Meter>, Vec<Der>) {
    let now = now_epoch();
    let mut a = vec![];
    let mut s = vec![];
    let mut m = vec![];
    let mut d = vec![];
    let mut ctr: u128 = 0;
    let mut id = || -> String {
        ctr += 1;
        if seq {
            uuid::Uuid::from_u128(ctr).to_string()
        } else {
            uuid::Uuid::new_v4().to_string()
        }
    };
    for i in 0..sites {
        let aid = id();
        a.push(Account {
            id: aid.clone(),
            account_number: format!("ACC{i:08}"),
            subscriber_id: None,
            name: format!("C {i}"),
            kind: AccountKind::Residential,
            created_at: now,
            updated_at: now,
        });
        let sid = id();
        let t = i / 10;
        let f = t % 20;
        s.push(Site {
            id: sid.clone(),
            account_id: aid,
            connection_point_id: Some(format!("NMI{i:08}")),
            territory: "T1".into(),
            interconnection_type: InterconnectionType::Nem,
            address: Some(format!("{i} Example Street")),
            grid_location: GridLocation {
                substation: Some(format!("SUB{}", f / 10)),
                feeder: Some(format!("FDR{f:02}")),
                feeder_section: Some("S".into()),
                transformer: Some(format!("TX{t:06}")),
            },
            created_at: now,
            updated_at: now,
        });
        m.push(Meter {
            id: id(),
            site_id: sid.clone(),
            mpid: format!("MTR{i:08}"),
            revenue_grade: true,
            interval_seconds: 900,
            created_at: now,
            updated_at: now,
        });
        for (k, c) in [
            DerClass::Battery,
            DerClass::PvInverter,
            DerClass::EvCharger,
            DerClass::Thermostat,
        ]
        .into_iter()
        .enumerate()
        {
            d.push(Der {
                id: id(),
                site_id: sid.clone(),
                der_class: c,
                manufacturer: format!("M{k}"),
                model: "Model 1".into(),
                serial: format!("S{i:09}"),
                rated_kw: 5.0,
                storage_kwh: Some(13.5),
                reserve_pct: None,
                status: DerStatus::Active,
                aggregator_lfdi: None,
                created_at: now,
                updated_at: now,
            });
        }
    }
    (a, s, m, d)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let seq = std::env::var("SEQ").is_ok();
    let (a, s, m, d) = data(50_000, seq);
    println!("sequential ids: {seq}");
    let mut k = 0;
    let only = std::env::var("ONLY").unwrap_or_default();
    for (label, rows, cache) in [
        ("? x1000, default cache", 1000usize, 0i64),
        ("? x1000, cache 512MB", 1000, -512000),
        ("? x1000, cache 512MB+temp mem", 1000, -512001),
        ("$N x1000 lib, cache 512MB+temp mem", 1000, -512002),
        ("? x1000, default cache + temp mem", 1000, 1),
    ] {
        k += 1;
        if !only.is_empty() && !label.contains(&only) {
            continue;
        }
        let url = format!(
            "sqlite:{}?mode=rwc",
            dir.path().join(format!("{k}.db")).display()
        );
        let store = Store::open(&url, 1).await.unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        if cache < 0 {
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA cache_size=-512000")))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        if cache == 1 || cache < -512000 {
            sqlx::query("PRAGMA temp_store=MEMORY")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        insert_q(&mut tx, &a, 100, false).await;
        insert_q(&mut tx, &s, 100, false).await;
        tx.commit().await.unwrap();
        let t = Instant::now();
        let mut tx = store.pool().begin().await.unwrap();
        if cache == -512002 {
            record::insert_many(&mut tx, &d).await.unwrap();
        } else {
            insert_q(&mut tx, &d, rows, false).await;
        }
        tx.commit().await.unwrap();
        let e = t.elapsed();
        println!(
            "DERs {label}: {:.3} s = {:.0} rows/s",
            e.as_secs_f64(),
            d.len() as f64 / e.as_secs_f64()
        );
        store.close().await;
    }
    if !only.is_empty() {
        return;
    }
    // Full import DB phase with '?' and 100-row statements: accounts, sites, meters, DERs.
    for (rows, cache) in [(1000usize, false), (1000, true)] {
        k += 1;
        let url = format!(
            "sqlite:{}?mode=rwc",
            dir.path().join(format!("{k}.db")).display()
        );
        let store = Store::open(&url, 1).await.unwrap();
        let t = Instant::now();
        let mut tx = store.pool().begin().await.unwrap();
        if cache {
            sqlx::query("PRAGMA cache_size=-512000")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("PRAGMA temp_store=MEMORY")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        insert_q(&mut tx, &a, rows, false).await;
        insert_q(&mut tx, &s, rows, false).await;
        insert_q(&mut tx, &m, rows, false).await;
        insert_q(&mut tx, &d, rows, false).await;
        tx.commit().await.unwrap();
        let e = t.elapsed();
        println!(
            "all 4 tables ? x{rows} cache {cache}: {:.3} s = {:.0} DERs/s",
            e.as_secs_f64(),
            d.len() as f64 / e.as_secs_f64()
        );
        store.close().await;
    }
}
