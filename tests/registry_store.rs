//! The registry and store suite, run against SQLite and PostgreSQL alike.

mod common;

use common::TestDb;
use switchyard::domain::identity::Lfdi;
use switchyard::domain::{
    AccountKind, DerClass, DerStatus, EnrolmentStatus, GridLocation, IdentityKind,
    InterconnectionType,
};
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest};
use switchyard::registry::import::import_csv;
use switchyard::registry::inventory;
use switchyard::registry::model::{Account, Der, Enrolment, Group, Identity, Meter, Program, Site};
use switchyard::registry::{Registry, RegistryError, groups};

on_both_backends!(
    crud_round_trip_and_keyset_pagination,
    topology_group_follows_site_moves,
    program_group_follows_enrolment,
    eligibility_refusal_names_each_reason_and_writes_nothing,
    identity_from_certificate_and_index,
    references_and_uniqueness_are_enforced,
    import_is_all_or_nothing,
    import_reuses_existing_sites_and_exports_inventory,
    optional_numbers_switch_between_null_and_value,
    deleting_an_enrolment_leaves_the_program_group,
    import_memberships_equal_the_sql_recomputation,
    import_refused_late_writes_nothing_after_batches,
);

fn account(n: u32) -> Account {
    Account {
        id: format!("acct-{n}"),
        account_number: format!("A{n:05}"),
        subscriber_id: None,
        name: format!("Account {n}"),
        kind: AccountKind::Residential,
        created_at: 0,
        updated_at: 0,
    }
}

fn site(n: u32, account_id: &str, feeder: &str) -> Site {
    Site {
        id: format!("site-{n}"),
        account_id: account_id.into(),
        connection_point_id: Some(format!("NMI{n:07}")),
        territory: "NORTH".into(),
        interconnection_type: InterconnectionType::Nem,
        address: None,
        grid_location: GridLocation {
            substation: Some("SUB1".into()),
            feeder: Some(feeder.into()),
            feeder_section: None,
            transformer: None,
        },
        created_at: 0,
        updated_at: 0,
    }
}

fn battery(n: u32, site_id: &str, kw: f64) -> Der {
    Der {
        id: format!("der-{n}"),
        site_id: site_id.into(),
        der_class: DerClass::Battery,
        manufacturer: "Acme".into(),
        model: "B10".into(),
        serial: format!("SN{n}"),
        rated_kw: kw,
        storage_kwh: Some(kw * 2.0),
        reserve_pct: Some(10.0),
        status: DerStatus::Active,
        aggregator_lfdi: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn program() -> Program {
    Program {
        id: "prog".into(),
        name: "Peak".into(),
        description: None,
        eligible_territories: vec!["NORTH".into()],
        eligible_classes: vec![DerClass::Battery],
        eligible_interconnections: vec![],
        min_rated_kw: Some(3.0),
        created_at: 0,
        updated_at: 0,
    }
}

fn group(id: &str, feeder: Option<&str>, program_id: Option<&str>) -> Group {
    Group {
        id: id.into(),
        name: id.into(),
        der_class: None,
        program_id: program_id.map(str::to_string),
        grid_location: GridLocation {
            feeder: feeder.map(str::to_string),
            ..GridLocation::default()
        },
        created_at: 0,
        updated_at: 0,
    }
}

async fn portfolio(reg: &Registry) {
    reg.create(account(1)).await.unwrap();
    reg.create(site(1, "acct-1", "F1")).await.unwrap();
    reg.create(site(2, "acct-1", "F2")).await.unwrap();
    reg.create(battery(1, "site-1", 5.0)).await.unwrap();
    reg.create(battery(2, "site-1", 7.0)).await.unwrap();
    reg.create(battery(3, "site-2", 2.0)).await.unwrap();
}

async fn member_ids(reg: &Registry, group: &str) -> Vec<String> {
    reg.group_members(group, None, 1000)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.id)
        .collect()
}

async fn crud_round_trip_and_keyset_pagination(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    let d: Der = reg.get("der-2").await.unwrap();
    assert_eq!((d.rated_kw, d.storage_kwh), (7.0, Some(14.0)));
    assert!(d.created_at > 0 && d.updated_at >= d.created_at);

    let updated = reg
        .update::<Der, _>("der-2", |d| {
            Ok(Der {
                rated_kw: 8.5,
                ..d.clone()
            })
        })
        .await
        .unwrap();
    assert_eq!(
        updated.created_at, d.created_at,
        "created_at is kept on update"
    );
    assert_eq!(reg.get::<Der>("der-2").await.unwrap().rated_kw, 8.5);

    let p1 = reg.list::<Der>(&[], None, 2).await.unwrap();
    assert_eq!(p1.items.len(), 2);
    let after = p1.next_after.clone().expect("more pages");
    let p2 = reg.list::<Der>(&[], Some(&after), 2).await.unwrap();
    assert_eq!(p2.items.len(), 1);
    assert!(p2.next_after.is_none());
    let filtered = reg
        .list::<Der>(&[("site_id", "site-2".into())], None, 10)
        .await
        .unwrap();
    assert_eq!(filtered.items.len(), 1);

    reg.delete::<Der>("der-3").await.unwrap();
    assert!(matches!(
        reg.get::<Der>("der-3").await,
        Err(RegistryError::NotFound { .. })
    ));
    assert!(matches!(
        reg.delete::<Der>("der-3").await,
        Err(RegistryError::NotFound { .. })
    ));
}

async fn topology_group_follows_site_moves(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    reg.create(group("f1", Some("F1"), None)).await.unwrap();
    reg.create(group("f2", Some("F2"), None)).await.unwrap();
    assert_eq!(member_ids(&reg, "f1").await, ["der-1", "der-2"]);
    assert_eq!(member_ids(&reg, "f2").await, ["der-3"]);
    let agg = reg.group_aggregate("f1").await.unwrap();
    assert_eq!(
        (agg.der_count, agg.rated_kw, agg.storage_kwh),
        (2, 12.0, 24.0)
    );

    // The utility re-parents site-1 onto feeder F2: both groups are recomputed.
    reg.update::<Site, _>("site-1", |s| {
        let mut s = s.clone();
        s.grid_location.feeder = Some("F2".into());
        Ok(s)
    })
    .await
    .unwrap();
    assert!(member_ids(&reg, "f1").await.is_empty());
    assert_eq!(member_ids(&reg, "f2").await, ["der-1", "der-2", "der-3"]);
    assert_eq!(reg.group_aggregate("f2").await.unwrap().rated_kw, 14.0);

    // Decommissioned DERs leave every group.
    reg.update::<Der, _>("der-3", |d| {
        Ok(Der {
            status: DerStatus::Decommissioned,
            ..d.clone()
        })
    })
    .await
    .unwrap();
    assert_eq!(member_ids(&reg, "f2").await, ["der-1", "der-2"]);
}

async fn program_group_follows_enrolment(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    reg.create(program()).await.unwrap();
    reg.create(group("members", None, Some("prog")))
        .await
        .unwrap();
    assert!(member_ids(&reg, "members").await.is_empty());
    let e = reg
        .create(Enrolment {
            id: String::new(),
            program_id: "prog".into(),
            der_id: "der-1".into(),
            status: EnrolmentStatus::Enrolled,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    assert!(!e.id.is_empty(), "an id is generated");
    assert_eq!(member_ids(&reg, "members").await, ["der-1"]);
    reg.update::<Enrolment, _>(&e.id, |e| {
        Ok(Enrolment {
            status: EnrolmentStatus::Withdrawn,
            ..e.clone()
        })
    })
    .await
    .unwrap();
    assert!(member_ids(&reg, "members").await.is_empty());
    // A program still referenced by enrolments and groups cannot be deleted.
    assert!(matches!(
        reg.delete::<Program>("prog").await,
        Err(RegistryError::InUse { .. })
    ));
}

async fn eligibility_refusal_names_each_reason_and_writes_nothing(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    reg.create(program()).await.unwrap();
    reg.create(group("members", None, Some("prog")))
        .await
        .unwrap();
    // der-3 is rated 2 kW; the program asks for 3 kW.
    let err = reg
        .create(Enrolment {
            id: "e3".into(),
            program_id: "prog".into(),
            der_id: "der-3".into(),
            status: EnrolmentStatus::Enrolled,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap_err();
    match err {
        RegistryError::Ineligible { reasons, .. } => {
            assert_eq!(reasons.len(), 1);
            assert!(
                reasons[0].contains("below the program minimum of 3 kW"),
                "{reasons:?}"
            );
        }
        other => panic!("expected Ineligible, got {other:?}"),
    }
    assert!(matches!(
        reg.get::<Enrolment>("e3").await,
        Err(RegistryError::NotFound { .. })
    ));
    assert!(member_ids(&reg, "members").await.is_empty());
}

async fn identity_from_certificate_and_index(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    let ca = CertificateAuthority::generate("Test CA").unwrap();
    let cert = ca
        .issue(&IssueRequest::new(CertKind::Device, "dev-1"))
        .unwrap();
    let created = reg
        .create(Identity {
            lfdi: String::new(),
            sfdi: 0,
            kind: IdentityKind::Device,
            der_id: Some("der-1".into()),
            description: None,
            certificate_pem: Some(cert.cert_pem.clone()),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    assert_eq!(created.lfdi, cert.lfdi.to_hex());
    assert_eq!(created.sfdi, cert.sfdi.value());
    let hit = reg.identities().lookup(&cert.lfdi).expect("indexed");
    assert_eq!(hit.der_id.as_deref(), Some("der-1"));

    // A body that claims another LFDI than its certificate's is refused.
    let other = ca
        .issue(&IssueRequest::new(CertKind::Device, "dev-2"))
        .unwrap();
    let err = reg
        .create(Identity {
            lfdi: other.lfdi.to_hex(),
            sfdi: 0,
            kind: IdentityKind::Device,
            der_id: Some("der-2".into()),
            description: None,
            certificate_pem: Some(cert.cert_pem.clone()),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Invalid(v) if v[0].field == "lfdi"),
        "{err:?}"
    );

    // A fresh registry over the same store rebuilds the index from the database.
    let reopened = Registry::open(db.store.clone()).await.unwrap();
    assert_eq!(reopened.identities().len(), 1);

    reg.delete::<Identity>(&created.lfdi).await.unwrap();
    assert!(reg.identities().lookup(&cert.lfdi).is_none());
    let unknown: Lfdi = "00".repeat(20).parse().unwrap();
    assert!(reg.identities().lookup(&unknown).is_none());
}

async fn references_and_uniqueness_are_enforced(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    let err = reg
        .create(battery(9, "no-such-site", 5.0))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::MissingReference { field, .. } if field == "site_id"),
        "{err:?}"
    );
    let mut dup = battery(9, "site-1", 5.0);
    dup.serial = "SN1".into();
    let err = reg.create(dup).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Conflict { field, .. } if field == "serial"),
        "{err:?}"
    );
    let err = reg.create(battery(1, "site-1", 5.0)).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Conflict { field, .. } if field == "id"),
        "{err:?}"
    );
    let err = reg.delete::<Site>("site-1").await.unwrap_err();
    assert!(matches!(err, RegistryError::InUse { .. }), "{err:?}");
    reg.create(Meter {
        id: "m1".into(),
        site_id: "site-2".into(),
        mpid: "MP1".into(),
        revenue_grade: true,
        interval_seconds: 7,
        created_at: 0,
        updated_at: 0,
    })
    .await
    .map(|_| panic!("7 s intervals do not divide a day"))
    .unwrap_or_else(|e| assert!(matches!(e, RegistryError::Invalid(_))));
    // A failed update leaves the stored record untouched.
    let before: Der = reg.get("der-1").await.unwrap();
    let err = reg
        .update::<Der, _>("der-1", |d| {
            Ok(Der {
                rated_kw: 1e9,
                ..d.clone()
            })
        })
        .await
        .unwrap_err();
    assert!(matches!(&err, RegistryError::Invalid(v) if v[0].field == "rated_kw"));
    assert_eq!(reg.get::<Der>("der-1").await.unwrap(), before);
}

const HEADER: &str = "account_number,account_name,connection_point_id,territory,interconnection_type,feeder,meter_mpid,der_class,manufacturer,model,serial,rated_kw,storage_kwh";

async fn import_is_all_or_nothing(db: TestDb) {
    let reg = db.registry().await;
    let csv = format!(
        "{HEADER}\n\
         A1,One,NMI1,NORTH,nem,F1,MP1,battery,Acme,B1,S1,5,10\n\
         A1,One,NMI1,NORTH,nem,F1,,pv_inverter,Acme,P1,S2,-4,\n\
         A2,Two,NMI2,NORTH,fusion,F1,,battery,Acme,B1,S3,5,10\n\
         A3,Three,NMI3,NORTH,nem,F2,,battery,Acme,B1,S1,5,10\n"
    );
    let report = import_csv(&reg, csv.as_bytes(), None).await.unwrap();
    let lines: Vec<(u64, &str)> = report
        .rejected
        .iter()
        .map(|r| (r.line, r.column.as_str()))
        .collect();
    assert_eq!(
        lines,
        [(3, "rated_kw"), (4, "interconnection_type"), (5, "serial")]
    );
    assert!(
        reg.list::<Account>(&[], None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        reg.list::<Der>(&[], None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn import_reuses_existing_sites_and_exports_inventory(db: TestDb) {
    let reg = db.registry().await;
    reg.create(group("f1", Some("F1"), None)).await.unwrap();
    let first = format!(
        "{HEADER}\nA1,One,NMI1,NORTH,nem,F1,MP1,battery,Acme,B1,S1,5,10\n\
         A1,One,NMI1,NORTH,nem,F1,MP1,pv_inverter,Acme,P1,S2,4,\n"
    );
    let r = import_csv(&reg, first.as_bytes(), None).await.unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(
        (
            r.accounts_created,
            r.sites_created,
            r.meters_created,
            r.ders_created
        ),
        (1, 1, 1, 2)
    );
    let second = format!("{HEADER}\nA1,One,NMI1,NORTH,nem,F1,MP1,ev_charger,Acme,E1,S3,7.2,\n");
    let r = import_csv(&reg, second.as_bytes(), None).await.unwrap();
    assert_eq!(
        (r.accounts_created, r.sites_created, r.ders_created),
        (0, 0, 1)
    );
    assert_eq!(reg.group_aggregate("f1").await.unwrap().der_count, 3);

    let rows = inventory::collect(reg.store(), None).await.unwrap();
    assert_eq!(rows.len(), 3);
    let bat = rows.iter().find(|r| r.der_class == "battery").unwrap();
    assert_eq!(bat.account_number, "A1");
    assert_eq!(bat.meter_point_id.as_deref(), Some("MP1"));
    assert_eq!((bat.rated_kw, bat.storage_kwh), (5.0, Some(10.0)));
    assert_eq!(bat.inverter_make, "Acme");
    let csv = inventory::to_csv(&rows).unwrap();
    assert!(
        csv.starts_with(
            "account_number,subscriber_id,territory,interconnection_type,meter_point_id"
        )
    );
    assert_eq!(csv.lines().count(), 4);
}

/// Regression: on PostgreSQL a NULL float used to leave a float4-typed prepared statement
/// behind, so the next non-NULL value for the same column failed to bind.
async fn optional_numbers_switch_between_null_and_value(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    for round in 0..6 {
        let reserve = if round % 2 == 0 {
            None
        } else {
            Some(30.0 + round as f64)
        };
        let d = reg
            .update::<Der, _>("der-1", |d| {
                Ok(Der {
                    reserve_pct: reserve,
                    ..d.clone()
                })
            })
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(d.reserve_pct, reserve);
        assert_eq!(reg.get::<Der>("der-1").await.unwrap().reserve_pct, reserve);
    }
}

/// Deleting an enrolment takes the DER out of the program's groups.
async fn deleting_an_enrolment_leaves_the_program_group(db: TestDb) {
    let reg = db.registry().await;
    portfolio(&reg).await;
    reg.create(program()).await.unwrap();
    reg.create(group("members", None, Some("prog")))
        .await
        .unwrap();
    let e = reg
        .create(Enrolment {
            id: "e1".into(),
            program_id: "prog".into(),
            der_id: "der-1".into(),
            status: EnrolmentStatus::Enrolled,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    assert_eq!(member_ids(&reg, "members").await, ["der-1"]);
    reg.delete::<Enrolment>(&e.id).await.unwrap();
    assert!(member_ids(&reg, "members").await.is_empty());
}

/// Rows for `sites` sites of four DERs each, spread over two substations, four feeders and
/// transformers of five sites; every seventh site's PV is decommissioned.
fn bulk_csv(first_site: u32, sites: u32) -> String {
    let mut csv = String::from(
        "account_number,account_name,connection_point_id,territory,interconnection_type,\
         substation,feeder,transformer,der_class,manufacturer,model,serial,rated_kw,\
         storage_kwh,status\n",
    );
    for n in first_site..first_site + sites {
        let (sub, feeder, tx) = (n % 2, n % 4, n / 5);
        for (class, kwh) in [
            ("battery", "13.5"),
            ("pv_inverter", ""),
            ("ev_charger", ""),
            ("thermostat", ""),
        ] {
            let status = if class == "pv_inverter" && n % 7 == 0 {
                "decommissioned"
            } else {
                "active"
            };
            csv.push_str(&format!(
                "A{n},Account {n},NMI{n},NORTH,nem,SUB{sub},F{feeder},T{tx},{class},Acme,M,\
                 {class}-{n},5,{kwh},{status}\n"
            ));
        }
    }
    csv
}

async fn all_memberships(store: &switchyard::store::Store) -> Vec<(String, String)> {
    use sqlx::Row;
    sqlx::query("SELECT group_id, der_id FROM group_members ORDER BY group_id, der_id")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The import computes new DERs' memberships in Rust, as rows are read; they must be
/// exactly what the SQL membership rule computes, for every kind of group criterion, over
/// several write batches, and for DERs added to sites that already exist.
async fn import_memberships_equal_the_sql_recomputation(db: TestDb) {
    let reg = db.registry().await;
    reg.create(program()).await.unwrap();
    let mut by_class = group("batteries", None, None);
    by_class.der_class = Some(DerClass::Battery);
    reg.create(by_class).await.unwrap();
    reg.create(group("feeder-1", Some("F1"), None))
        .await
        .unwrap();
    let mut sub_feeder = group("sub1-f3", Some("F3"), None);
    sub_feeder.grid_location.substation = Some("SUB1".into());
    reg.create(sub_feeder).await.unwrap();
    let mut transformer = group("t7-pv", None, None);
    transformer.grid_location.transformer = Some("T7".into());
    transformer.der_class = Some(DerClass::PvInverter);
    reg.create(transformer).await.unwrap();
    reg.create(group("program", None, Some("prog")))
        .await
        .unwrap();
    let mut sub0 = group("sub0", None, None);
    sub0.grid_location.substation = Some("SUB0".into());
    reg.create(sub0).await.unwrap();

    // 1,500 sites = 6,000 DERs: more than one write batch.
    let r = import_csv(&reg, bulk_csv(0, 1500).as_bytes(), None)
        .await
        .unwrap();
    assert!(r.rejected.is_empty(), "{:?}", &r.rejected[..1]);
    assert_eq!(r.ders_created, 6000);
    // New DERs at sites the first import created.
    let mut more = String::from(
        "account_number,account_name,connection_point_id,territory,interconnection_type,\
         substation,feeder,transformer,der_class,manufacturer,model,serial,rated_kw\n",
    );
    for n in [3u32, 35, 36] {
        let (sub, feeder, tx) = (n % 2, n % 4, n / 5);
        more.push_str(&format!(
            "A{n},Account {n},NMI{n},NORTH,nem,SUB{sub},F{feeder},T{tx},pv_inverter,Other,M,x{n},3\n"
        ));
    }
    let r = import_csv(&reg, more.as_bytes(), None).await.unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!((r.sites_created, r.ders_created), (0, 3));

    let imported = all_memberships(&db.store).await;
    let mut tx = db.store.pool().begin().await.unwrap();
    groups::refresh_all(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let recomputed = all_memberships(&db.store).await;
    assert_eq!(imported.len(), recomputed.len());
    assert!(imported == recomputed, "import memberships differ from SQL");
    // Spot checks a user would see: every battery; no decommissioned DER in SUB0 (even
    // sites), which also holds the DER added later at site 36; the transformer group holds
    // T7's live PV (sites 35-39, less 35's decommissioned one) and the two added later.
    assert_eq!(
        reg.group_aggregate("batteries").await.unwrap().der_count,
        1500
    );
    let decommissioned = (0..1500).filter(|n| n % 14 == 0).count() as i64;
    assert_eq!(
        reg.group_aggregate("sub0").await.unwrap().der_count,
        3000 + 1 - decommissioned
    );
    assert_eq!(reg.group_aggregate("t7-pv").await.unwrap().der_count, 4 + 2);
    assert_eq!(reg.group_aggregate("program").await.unwrap().der_count, 0);
}

/// A bad row after several batches were already written still leaves the store as it was.
async fn import_refused_late_writes_nothing_after_batches(db: TestDb) {
    let reg = db.registry().await;
    reg.create(group("feeder-1", Some("F1"), None))
        .await
        .unwrap();
    let mut csv = bulk_csv(0, 3000);
    csv.push_str("A9999,Late,NMI9999,NORTH,nem,SUB0,F0,T0,battery,Acme,M,late,not-a-number,,\n");
    let r = import_csv(&reg, csv.as_bytes(), None).await.unwrap();
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(
        (r.rejected[0].line, r.rejected[0].column.as_str()),
        (12_002, "rated_kw")
    );
    assert_eq!(r.ders_created, 0);
    assert!(all_memberships(&db.store).await.is_empty());
    for table in ["accounts", "sites", "ders"] {
        use sqlx::Row;
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(db.store.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} after a refused import");
    }
}
