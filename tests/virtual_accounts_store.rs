//! Virtual metering accounts in the store, on SQLite and PostgreSQL alike: accounts and
//! members round-trip, and each interval's allocation is kept with every revision.

mod common;

use common::TestDb;
use switchyard::aggregation::accounts::{
    AccountError, AllocationRule, IntervalReading, Member, MemberRole, VirtualAccount, consolidate,
};
use switchyard::aggregation::accounts_store::{self, AccountStoreError, RecordOutcome};

on_both_backends!(
    accounts_round_trip_and_are_created_once,
    late_data_revises_an_interval_and_keeps_the_earlier_revision,
    audits_that_do_not_match_the_account_are_refused,
);

fn garden() -> VirtualAccount {
    let sub = |id: &str, share: u64| Member {
        id: id.into(),
        role: MemberRole::Subscriber,
        fixed_share: share,
        subscription_w: share * 100,
    };
    VirtualAccount {
        id: "garden".into(),
        interval_s: 900,
        credit_rate_millicents_per_kwh: 12_345,
        rule: AllocationRule::FixedShares,
        members: vec![
            sub("alice", 50),
            Member {
                id: "array".into(),
                role: MemberRole::Facility,
                fixed_share: 0,
                subscription_w: 0,
            },
            sub("bob", 30),
            sub("carol", 20),
        ],
    }
}

fn r(member: &str, start: i64, load_wh: u64, generation_wh: u64) -> IntervalReading {
    IntervalReading {
        member: member.into(),
        start,
        load_wh,
        generation_wh,
    }
}

async fn accounts_round_trip_and_are_created_once(db: TestDb) {
    let s = &db.store;
    accounts_store::create(s, &garden(), 1_700_000_000)
        .await
        .unwrap();
    assert_eq!(
        accounts_store::get(s, "garden").await.unwrap(),
        Some(garden())
    );
    assert!(matches!(
        accounts_store::create(s, &garden(), 1_700_000_001).await,
        Err(AccountStoreError::AlreadyExists(id)) if id == "garden"
    ));
    let invalid = VirtualAccount {
        id: "empty".into(),
        members: vec![],
        ..garden()
    };
    assert!(matches!(
        accounts_store::create(s, &invalid, 0).await,
        Err(AccountStoreError::Invalid(AccountError::NoSubscribers))
    ));
    assert_eq!(accounts_store::get(s, "empty").await.unwrap(), None);
}

async fn late_data_revises_an_interval_and_keeps_the_earlier_revision(db: TestDb) {
    let s = &db.store;
    let acct = garden();
    accounts_store::create(s, &acct, 0).await.unwrap();
    let mut readings = vec![
        r("array", 0, 5, 1001),
        r("alice", 0, 400, 0),
        r("array", 900, 0, 600),
    ];
    let first = consolidate(&acct, &readings).unwrap();
    let out = accounts_store::record(s, "garden", &first, 100)
        .await
        .unwrap();
    assert_eq!(
        out,
        RecordOutcome {
            new: 2,
            revised: 0,
            unchanged: 0
        }
    );
    // Recording the same consolidation again writes nothing.
    let again = accounts_store::record(s, "garden", &first, 200)
        .await
        .unwrap();
    assert_eq!(
        again,
        RecordOutcome {
            new: 0,
            revised: 0,
            unchanged: 2
        }
    );

    // A late reading from the array changes the first interval only.
    readings[0] = r("array", 0, 5, 2001);
    let second = consolidate(&acct, &readings).unwrap();
    let out = accounts_store::record(s, "garden", &second, 300)
        .await
        .unwrap();
    assert_eq!(
        out,
        RecordOutcome {
            new: 0,
            revised: 1,
            unchanged: 1
        }
    );

    let history = accounts_store::history(s, "garden", 0).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| (h.revision, h.computed_at))
            .collect::<Vec<_>>(),
        vec![(1, 100), (2, 300)]
    );
    assert_eq!(history[0].audit, first[0]);
    assert_eq!(history[1].audit, second[0]);

    // Statements use the latest revision, and sum to the interval's credit.
    let mut wh = 0;
    let mut cents = 0;
    for m in ["alice", "array", "bob", "carol"] {
        let credits = accounts_store::member_credits(s, "garden", m, 0, 1800)
            .await
            .unwrap();
        assert_eq!(credits.len(), 2, "{m}");
        assert_eq!(credits[0].revision, 2);
        assert_eq!(credits[1].revision, 1);
        wh += credits[0].credit_wh;
        cents += credits[0].credit_cents;
    }
    assert_eq!((wh, cents), (second[0].credit_wh, second[0].credit_cents));
    assert_eq!(wh, 2001);
    let alice = accounts_store::member_credits(s, "garden", "alice", 0, 900)
        .await
        .unwrap();
    assert_eq!(alice[0].credit_wh, 1001); // 2001 x 50% = 1000.5, the half takes the unit
}

async fn audits_that_do_not_match_the_account_are_refused(db: TestDb) {
    let s = &db.store;
    accounts_store::create(s, &garden(), 0).await.unwrap();
    let other = VirtualAccount {
        rule: AllocationRule::SubscriptionKw,
        ..garden()
    };
    let audits = consolidate(&other, &[r("array", 0, 0, 10)]).unwrap();
    assert!(matches!(
        accounts_store::record(s, "garden", &audits, 0).await,
        Err(AccountStoreError::Mismatch { start: 0, .. })
    ));
    assert!(
        accounts_store::history(s, "garden", 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        accounts_store::record(s, "nowhere", &audits, 0).await,
        Err(AccountStoreError::UnknownAccount(id)) if id == "nowhere"
    ));
}
