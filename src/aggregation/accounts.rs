//! Virtual metering accounts: several member accounts billed as if behind one meter.
//!
//! A [`VirtualAccount`] groups member accounts (community solar subscribers and their
//! shared facility, the buildings of a campus, the depots of a fleet, the sites of a
//! microgrid). For each interval, [`consolidate`] adds up every member's load and
//! generation into the virtual total, values the total generation as a credit, and
//! allocates the credit, in Wh and in cents, back to the subscriber members by the
//! account's [`AllocationRule`]. Each interval yields an [`IntervalAudit`] that shows every
//! input, weight, floor and left-over unit, so an allocation can be checked by hand.
//!
//! Rounding, documented once:
//! - the interval's credit value is `generation Wh x rate (millicents per kWh) / 10^6`
//!   cents, rounded half up to a whole cent;
//! - Wh and cents are each apportioned with the largest remainder method
//!   ([`super::allocate`]), members ordered by id: the members' parts sum exactly to the
//!   virtual total, and no member is more than 1 Wh or 1 cent from its exact share, which
//!   is what keeps costs from shifting between members.
//!
//! Readings are validated before anything is computed: an unknown member, an interval not
//! on the account's grid or two different readings for one member and interval are errors
//! and no audit is produced. The same reading given twice counts once.

use super::allocate::{AllocateError, largest_remainder};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a member is to the virtual account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Receives credits.
    Subscriber,
    /// Contributes load and generation to the total (a shared solar array, a campus
    /// plant) but receives no credit.
    Facility,
}

/// A member account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub role: MemberRole,
    /// Weight under [`AllocationRule::FixedShares`] (any unit: percent, basis points).
    #[serde(default)]
    pub fixed_share: u64,
    /// Subscribed capacity, W, for [`AllocationRule::SubscriptionKw`].
    #[serde(default)]
    pub subscription_w: u64,
}

/// How credits are allocated among subscriber members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationRule {
    /// By each member's `fixed_share`.
    FixedShares,
    /// By each member's `subscription_w`.
    SubscriptionKw,
    /// By each member's load in the interval; in an interval where no subscriber used any
    /// energy, equally (recorded in the audit).
    ProportionalToConsumption,
}

/// A virtual account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAccount {
    pub id: String,
    /// Interval length, seconds; interval starts are multiples of it.
    pub interval_s: i64,
    /// Value of one kWh of credited generation, thousandths of a cent.
    pub credit_rate_millicents_per_kwh: u64,
    pub rule: AllocationRule,
    pub members: Vec<Member>,
}

/// One member's metered energy in one interval.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntervalReading {
    pub member: String,
    /// Interval start, Unix seconds.
    pub start: i64,
    /// Energy imported (consumed), Wh.
    pub load_wh: u64,
    /// Energy exported (generated), Wh.
    pub generation_wh: u64,
}

/// Why a consolidation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("interval length must be > 0 seconds, got {0}")]
    BadInterval(i64),
    #[error("member id must not be empty")]
    EmptyMemberId,
    #[error("member {0:?} is listed twice")]
    DuplicateMember(String),
    #[error("the account has no subscriber member to allocate credits to")]
    NoSubscribers,
    #[error("rule {rule:?} needs a positive {field} on at least one subscriber")]
    NoWeights {
        rule: AllocationRule,
        field: &'static str,
    },
    #[error("reading for unknown member {0:?}")]
    UnknownMember(String),
    #[error("reading for {member:?} starts at {start}, not on the {interval_s} s interval grid")]
    OffGrid {
        member: String,
        start: i64,
        interval_s: i64,
    },
    #[error("two different readings for {member:?} in the interval starting at {start}")]
    ConflictingReadings { member: String, start: i64 },
    #[error("interval starting at {start}: {source}")]
    Apportion { start: i64, source: AllocateError },
    #[error("interval starting at {0}: totals overflow")]
    Overflow(i64),
    #[error("readings CSV line {line}: {message}")]
    Csv { line: u64, message: String },
}

/// The columns of a readings CSV, in this order, with this header.
pub const CSV_HEADER: [&str; 4] = ["member", "start", "load_wh", "generation_wh"];

/// Parse interval readings from CSV with the header `member,start,load_wh,generation_wh`
/// (`start` in Unix seconds, energies in whole Wh). All rows or none: the first bad row is
/// an error naming its line.
pub fn readings_from_csv<R: std::io::Read>(input: R) -> Result<Vec<IntervalReading>, AccountError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let err = |line: u64, message: String| AccountError::Csv { line, message };
    let header = reader.headers().map_err(|e| err(1, e.to_string()))?;
    if header.iter().collect::<Vec<_>>() != CSV_HEADER {
        return Err(err(1, format!("header must be {}", CSV_HEADER.join(","))));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        let number = |i: usize| -> Result<u64, AccountError> {
            field(i).parse::<u64>().map_err(|_| {
                err(
                    line,
                    format!(
                        "{} must be a whole number >= 0, got {:?}",
                        CSV_HEADER[i],
                        field(i)
                    ),
                )
            })
        };
        if field(0).is_empty() {
            return Err(err(line, "member is empty".into()));
        }
        let start = field(1).parse::<i64>().map_err(|_| {
            err(
                line,
                format!("start must be Unix seconds, got {:?}", field(1)),
            )
        })?;
        out.push(IntervalReading {
            member: field(0).to_string(),
            start,
            load_wh: number(2)?,
            generation_wh: number(3)?,
        });
    }
    Ok(out)
}

/// One member's line in an interval's audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLine {
    pub member: String,
    pub role: MemberRole,
    /// False when the member sent no reading for the interval (counted as zero).
    pub reported: bool,
    pub load_wh: u64,
    pub generation_wh: u64,
    /// The member's weight under the rule (0 for facilities).
    pub weight: u64,
    /// Floor of the exact share, whether a left-over unit was added, and the result.
    pub base_wh: i64,
    pub extra_wh: bool,
    pub credit_wh: i64,
    pub base_cents: i64,
    pub extra_cent: bool,
    pub credit_cents: i64,
    /// Load less credited energy: what the member is billed for, Wh (negative: surplus).
    pub net_billed_wh: i64,
}

/// What happened in one interval, with everything needed to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalAudit {
    pub start: i64,
    pub rule: AllocationRule,
    /// Set when the rule could not apply and equal shares were used, with the reason.
    pub fallback: Option<String>,
    pub total_load_wh: u64,
    pub total_generation_wh: u64,
    /// Virtual net: total load minus total generation, Wh.
    pub net_wh: i64,
    /// The credit: total generation, Wh, and its value in cents.
    pub credit_wh: i64,
    pub credit_cents: i64,
    pub rate_millicents_per_kwh: u64,
    /// Members ordered by id, facilities included.
    pub lines: Vec<MemberLine>,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Subscriber => "subscriber",
            MemberRole::Facility => "facility",
        }
    }
}

impl std::str::FromStr for MemberRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "subscriber" => Ok(MemberRole::Subscriber),
            "facility" => Ok(MemberRole::Facility),
            _ => Err(format!("unknown member role {s:?}")),
        }
    }
}

impl AllocationRule {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationRule::FixedShares => "fixed_shares",
            AllocationRule::SubscriptionKw => "subscription_kw",
            AllocationRule::ProportionalToConsumption => "proportional_to_consumption",
        }
    }
}

impl std::str::FromStr for AllocationRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            AllocationRule::FixedShares,
            AllocationRule::SubscriptionKw,
            AllocationRule::ProportionalToConsumption,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("unknown allocation rule {s:?}"))
    }
}

impl VirtualAccount {
    /// Check the account itself (members, rule, interval).
    pub fn validate(&self) -> Result<(), AccountError> {
        if self.interval_s <= 0 {
            return Err(AccountError::BadInterval(self.interval_s));
        }
        let mut seen = BTreeSet::new();
        for m in &self.members {
            if m.id.is_empty() {
                return Err(AccountError::EmptyMemberId);
            }
            if !seen.insert(m.id.as_str()) {
                return Err(AccountError::DuplicateMember(m.id.clone()));
            }
        }
        let subscribers: Vec<&Member> = self.subscribers().collect();
        if subscribers.is_empty() {
            return Err(AccountError::NoSubscribers);
        }
        let (field, positive) = match self.rule {
            AllocationRule::FixedShares => {
                ("fixed_share", subscribers.iter().any(|m| m.fixed_share > 0))
            }
            AllocationRule::SubscriptionKw => (
                "subscription_w",
                subscribers.iter().any(|m| m.subscription_w > 0),
            ),
            AllocationRule::ProportionalToConsumption => ("", true),
        };
        if !positive {
            return Err(AccountError::NoWeights {
                rule: self.rule,
                field,
            });
        }
        Ok(())
    }

    fn subscribers(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.role == MemberRole::Subscriber)
    }
}

/// Credit value in cents of `wh` at `rate` millicents per kWh, rounded half up.
pub fn credit_cents(wh: u64, rate_millicents_per_kwh: u64) -> i128 {
    (wh as i128 * rate_millicents_per_kwh as i128 + 500_000) / 1_000_000
}

/// Consolidate `readings` into one audit per interval (in time order), allocating each
/// interval's credit to the subscribers. See the module documentation for the rules.
pub fn consolidate(
    account: &VirtualAccount,
    readings: &[IntervalReading],
) -> Result<Vec<IntervalAudit>, AccountError> {
    account.validate()?;
    let mut members: Vec<&Member> = account.members.iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let index: BTreeMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i))
        .collect();
    // interval start -> per member (load, generation)
    let mut grid: BTreeMap<i64, Vec<Option<(u64, u64)>>> = BTreeMap::new();
    for r in readings {
        let Some(&i) = index.get(r.member.as_str()) else {
            return Err(AccountError::UnknownMember(r.member.clone()));
        };
        if r.start.rem_euclid(account.interval_s) != 0 {
            return Err(AccountError::OffGrid {
                member: r.member.clone(),
                start: r.start,
                interval_s: account.interval_s,
            });
        }
        let row = grid
            .entry(r.start)
            .or_insert_with(|| vec![None; members.len()]);
        match row[i] {
            None => row[i] = Some((r.load_wh, r.generation_wh)),
            Some(v) if v == (r.load_wh, r.generation_wh) => {}
            Some(_) => {
                return Err(AccountError::ConflictingReadings {
                    member: r.member.clone(),
                    start: r.start,
                });
            }
        }
    }
    grid.into_iter()
        .map(|(start, row)| interval(account, &members, start, &row))
        .collect()
}

fn interval(
    account: &VirtualAccount,
    members: &[&Member],
    start: i64,
    row: &[Option<(u64, u64)>],
) -> Result<IntervalAudit, AccountError> {
    let overflow = || AccountError::Overflow(start);
    let value = |i: usize| row[i].unwrap_or((0, 0));
    let mut total_load: u64 = 0;
    let mut total_gen: u64 = 0;
    for i in 0..members.len() {
        let (l, g) = value(i);
        total_load = total_load.checked_add(l).ok_or_else(overflow)?;
        total_gen = total_gen.checked_add(g).ok_or_else(overflow)?;
    }
    let credit_wh = i64::try_from(total_gen).map_err(|_| overflow())?;
    let cents = i64::try_from(credit_cents(
        total_gen,
        account.credit_rate_millicents_per_kwh,
    ))
    .map_err(|_| overflow())?;
    let net_wh = i64::try_from(total_load as i128 - total_gen as i128).map_err(|_| overflow())?;

    let subs: Vec<usize> = (0..members.len())
        .filter(|i| members[*i].role == MemberRole::Subscriber)
        .collect();
    let mut weights: Vec<u64> = subs
        .iter()
        .map(|i| match account.rule {
            AllocationRule::FixedShares => members[*i].fixed_share,
            AllocationRule::SubscriptionKw => members[*i].subscription_w,
            AllocationRule::ProportionalToConsumption => value(*i).0,
        })
        .collect();
    let mut fallback = None;
    if weights.iter().all(|w| *w == 0) {
        // Only possible for consumption shares (the account's weights were validated).
        fallback = Some("equal shares: no subscriber consumed energy in this interval".to_string());
        weights = vec![1; subs.len()];
    }
    let apportion = |total| {
        largest_remainder(total, &weights)
            .map_err(|source| AccountError::Apportion { start, source })
    };
    let wh_parts = apportion(credit_wh)?;
    let cent_parts = apportion(cents)?;

    let mut lines = Vec::with_capacity(members.len());
    let mut sub_pos = 0;
    for (i, m) in members.iter().enumerate() {
        let (load_wh, generation_wh) = value(i);
        let mut line = MemberLine {
            member: m.id.clone(),
            role: m.role,
            reported: row[i].is_some(),
            load_wh,
            generation_wh,
            weight: 0,
            base_wh: 0,
            extra_wh: false,
            credit_wh: 0,
            base_cents: 0,
            extra_cent: false,
            credit_cents: 0,
            net_billed_wh: 0,
        };
        if m.role == MemberRole::Subscriber {
            let (w, c) = (&wh_parts[sub_pos], &cent_parts[sub_pos]);
            line.weight = weights[sub_pos];
            line.base_wh = w.base;
            line.extra_wh = w.extra;
            line.credit_wh = w.amount;
            line.base_cents = c.base;
            line.extra_cent = c.extra;
            line.credit_cents = c.amount;
            sub_pos += 1;
        }
        line.net_billed_wh =
            i64::try_from(load_wh as i128 - line.credit_wh as i128).map_err(|_| overflow())?;
        lines.push(line);
    }
    Ok(IntervalAudit {
        start,
        rule: account.rule,
        fallback,
        total_load_wh: total_load,
        total_generation_wh: total_gen,
        net_wh,
        credit_wh,
        credit_cents: cents,
        rate_millicents_per_kwh: account.credit_rate_millicents_per_kwh,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, share: u64, sub_w: u64) -> Member {
        Member {
            id: id.into(),
            role: MemberRole::Subscriber,
            fixed_share: share,
            subscription_w: sub_w,
        }
    }

    fn garden(rule: AllocationRule) -> VirtualAccount {
        VirtualAccount {
            id: "garden".into(),
            interval_s: 900,
            credit_rate_millicents_per_kwh: 12_345, // 12.345 c/kWh
            rule,
            members: vec![
                Member {
                    id: "array".into(),
                    role: MemberRole::Facility,
                    fixed_share: 0,
                    subscription_w: 0,
                },
                member("alice", 50, 4_000),
                member("bob", 30, 2_000),
                member("carol", 20, 1_000),
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

    fn credits(a: &IntervalAudit) -> Vec<(&str, i64, i64)> {
        a.lines
            .iter()
            .map(|l| (l.member.as_str(), l.credit_wh, l.credit_cents))
            .collect()
    }

    #[test]
    fn community_solar_by_fixed_shares() {
        let readings = [
            r("array", 0, 10, 1001),
            r("alice", 0, 400, 0),
            r("bob", 0, 300, 0),
            r("carol", 0, 100, 0),
        ];
        let audits = consolidate(&garden(AllocationRule::FixedShares), &readings).unwrap();
        let a = &audits[0];
        assert_eq!(
            (a.total_load_wh, a.total_generation_wh, a.net_wh),
            (810, 1001, -191)
        );
        // 1001 Wh at 12.345 c/kWh = 12.357 c -> 12 c.
        assert_eq!(a.credit_cents, 12);
        // 1001 by 50:30:20 = 500.5, 300.3, 200.2: the .5 takes the left-over Wh.
        // 12 c by 50:30:20 = 6, 3.6, 2.4: bob's .6 takes the left-over cent.
        assert_eq!(
            credits(a),
            vec![
                ("alice", 501, 6),
                ("array", 0, 0),
                ("bob", 300, 4),
                ("carol", 200, 2)
            ]
        );
        let alice = &a.lines[0];
        assert_eq!(
            (alice.base_wh, alice.extra_wh, alice.net_billed_wh),
            (500, true, -101)
        );
        assert_eq!(a.fallback, None);
    }

    #[test]
    fn by_subscription_and_by_consumption() {
        let readings = [
            r("array", 0, 0, 700),
            r("alice", 0, 100, 0),
            r("bob", 0, 0, 0),
            r("carol", 0, 600, 0),
        ];
        let by_kw = consolidate(&garden(AllocationRule::SubscriptionKw), &readings).unwrap();
        assert_eq!(
            by_kw[0]
                .lines
                .iter()
                .map(|l| l.credit_wh)
                .collect::<Vec<_>>(),
            vec![400, 0, 200, 100]
        );
        let by_use = consolidate(
            &garden(AllocationRule::ProportionalToConsumption),
            &readings,
        )
        .unwrap();
        assert_eq!(
            by_use[0]
                .lines
                .iter()
                .map(|l| l.credit_wh)
                .collect::<Vec<_>>(),
            vec![100, 0, 0, 600]
        );
    }

    #[test]
    fn an_interval_without_subscriber_consumption_falls_back_to_equal_shares() {
        let readings = [r("array", 900, 0, 10)];
        let a = consolidate(
            &garden(AllocationRule::ProportionalToConsumption),
            &readings,
        )
        .unwrap();
        assert!(a[0].fallback.is_some());
        assert_eq!(
            a[0].lines.iter().map(|l| l.credit_wh).collect::<Vec<_>>(),
            vec![4, 0, 3, 3]
        );
        assert!(
            a[0].lines
                .iter()
                .filter(|l| l.member != "array")
                .all(|l| !l.reported)
        );
    }

    #[test]
    fn readings_parse_from_csv_all_or_nothing() {
        let ok = "member,start,load_wh,generation_wh\nalice,900,12,0\n array , 900 , 0 , 40\n";
        assert_eq!(
            readings_from_csv(ok.as_bytes()).unwrap(),
            vec![r("alice", 900, 12, 0), r("array", 900, 0, 40)]
        );
        let cases = [
            ("member,start,load\n", 1, "header must be"),
            (
                "member,start,load_wh,generation_wh\nalice,900,-1,0\n",
                2,
                "load_wh must be a whole number",
            ),
            (
                "member,start,load_wh,generation_wh\nalice,900,1,0\nbob,soon,1,0\n",
                3,
                "start must be Unix seconds",
            ),
            (
                "member,start,load_wh,generation_wh\n,900,1,0\n",
                2,
                "member is empty",
            ),
            (
                "member,start,load_wh,generation_wh\nalice,900,1.5,0\n",
                2,
                "load_wh",
            ),
            ("member,start,load_wh,generation_wh\nalice,900,1\n", 2, ""),
        ];
        for (text, line, message) in cases {
            match readings_from_csv(text.as_bytes()) {
                Err(AccountError::Csv {
                    line: l,
                    message: m,
                }) => {
                    assert_eq!(l, line, "{text:?}: {m}");
                    assert!(m.contains(message), "{text:?}: {m}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_same_reading_twice_counts_once() {
        let once = [r("array", 0, 0, 500), r("alice", 0, 10, 0)];
        let twice = [
            r("array", 0, 0, 500),
            r("alice", 0, 10, 0),
            r("array", 0, 0, 500),
        ];
        let acct = garden(AllocationRule::FixedShares);
        assert_eq!(
            consolidate(&acct, &once).unwrap(),
            consolidate(&acct, &twice).unwrap()
        );
    }

    #[test]
    fn bad_accounts_and_readings_are_refused() {
        let ok = garden(AllocationRule::FixedShares);
        let cases: Vec<(VirtualAccount, Vec<IntervalReading>, AccountError)> = vec![
            (
                VirtualAccount {
                    interval_s: 0,
                    ..ok.clone()
                },
                vec![],
                AccountError::BadInterval(0),
            ),
            (
                VirtualAccount {
                    members: vec![member("a", 1, 1), member("a", 1, 1)],
                    ..ok.clone()
                },
                vec![],
                AccountError::DuplicateMember("a".into()),
            ),
            (
                VirtualAccount {
                    members: vec![member("", 1, 1)],
                    ..ok.clone()
                },
                vec![],
                AccountError::EmptyMemberId,
            ),
            (
                VirtualAccount {
                    members: vec![Member {
                        role: MemberRole::Facility,
                        ..member("f", 1, 1)
                    }],
                    ..ok.clone()
                },
                vec![],
                AccountError::NoSubscribers,
            ),
            (
                VirtualAccount {
                    members: vec![member("a", 0, 1)],
                    ..ok.clone()
                },
                vec![],
                AccountError::NoWeights {
                    rule: AllocationRule::FixedShares,
                    field: "fixed_share",
                },
            ),
            (
                ok.clone(),
                vec![r("mallory", 0, 1, 1)],
                AccountError::UnknownMember("mallory".into()),
            ),
            (
                ok.clone(),
                vec![r("bob", 450, 1, 1)],
                AccountError::OffGrid {
                    member: "bob".into(),
                    start: 450,
                    interval_s: 900,
                },
            ),
            (
                ok.clone(),
                vec![r("bob", 0, 1, 1), r("bob", 0, 2, 1)],
                AccountError::ConflictingReadings {
                    member: "bob".into(),
                    start: 0,
                },
            ),
            (
                ok.clone(),
                vec![r("bob", 0, 0, u64::MAX), r("alice", 0, 0, 1)],
                AccountError::Overflow(0),
            ),
        ];
        for (acct, readings, err) in cases {
            assert_eq!(consolidate(&acct, &readings), Err(err));
        }
    }

    fn arb_account() -> impl Strategy<Value = VirtualAccount> {
        (
            prop::collection::vec((0u64..1000, 0u64..20_000, any::<bool>()), 1..12),
            prop_oneof![
                Just(AllocationRule::FixedShares),
                Just(AllocationRule::SubscriptionKw),
                Just(AllocationRule::ProportionalToConsumption)
            ],
            0u64..100_000,
        )
            .prop_map(|(ms, rule, rate)| {
                let mut members: Vec<Member> = ms
                    .into_iter()
                    .enumerate()
                    .map(|(i, (share, sub_w, facility))| Member {
                        id: format!("m{i:02}"),
                        role: if facility {
                            MemberRole::Facility
                        } else {
                            MemberRole::Subscriber
                        },
                        fixed_share: share,
                        subscription_w: sub_w,
                    })
                    .collect();
                // Always one subscriber with a positive weight, so the account is valid.
                members.push(member("zz", 1, 1));
                VirtualAccount {
                    id: "v".into(),
                    interval_s: 300,
                    credit_rate_millicents_per_kwh: rate,
                    rule,
                    members,
                }
            })
    }

    proptest! {
        #[test]
        fn allocations_sum_exactly_to_the_virtual_total(
            acct in arb_account(),
            raw in prop::collection::vec((0usize..13, 0i64..6, 0u64..5_000_000, 0u64..5_000_000), 0..80),
        ) {
            let readings: Vec<IntervalReading> = raw
                .iter()
                .map(|(m, k, l, g)| {
                    let id = acct.members[m % acct.members.len()].id.clone();
                    r(&id, k * 300, *l, *g)
                })
                .collect();
            // Keep one reading per member and interval so none conflict.
            let mut seen = BTreeSet::new();
            let readings: Vec<IntervalReading> = readings.into_iter().filter(|r| seen.insert((r.member.clone(), r.start))).collect();
            let audits = consolidate(&acct, &readings).unwrap();
            let mut total_load = 0u64;
            let mut total_gen = 0u64;
            for a in &audits {
                let wh: i64 = a.lines.iter().map(|l| l.credit_wh).sum();
                let cents: i64 = a.lines.iter().map(|l| l.credit_cents).sum();
                prop_assert_eq!(wh, a.credit_wh);
                prop_assert_eq!(a.credit_wh as u64, a.total_generation_wh);
                prop_assert_eq!(cents, a.credit_cents);
                prop_assert_eq!(a.credit_cents as i128, credit_cents(a.total_generation_wh, acct.credit_rate_millicents_per_kwh));
                prop_assert_eq!(a.lines.iter().map(|l| l.load_wh).sum::<u64>(), a.total_load_wh);
                prop_assert_eq!(a.net_wh, a.total_load_wh as i64 - a.total_generation_wh as i64);
                let weight: i128 = a.lines.iter().map(|l| l.weight as i128).sum();
                for l in &a.lines {
                    if l.role == MemberRole::Facility {
                        prop_assert_eq!((l.credit_wh, l.credit_cents), (0, 0));
                    } else {
                        // Within one unit of the exact share: no cost shifting.
                        prop_assert!((l.credit_wh as i128 * weight - a.credit_wh as i128 * l.weight as i128).abs() < weight);
                        prop_assert!((l.credit_cents as i128 * weight - a.credit_cents as i128 * l.weight as i128).abs() < weight);
                    }
                }
                total_load += a.total_load_wh;
                total_gen += a.total_generation_wh;
            }
            prop_assert_eq!(total_load, readings.iter().map(|r| r.load_wh).sum::<u64>());
            prop_assert_eq!(total_gen, readings.iter().map(|r| r.generation_wh).sum::<u64>());
            // Order of arrival does not matter.
            let mut reversed = readings.clone();
            reversed.reverse();
            prop_assert_eq!(consolidate(&acct, &reversed).unwrap(), audits);
        }
    }
}
