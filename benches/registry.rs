//! Registry benchmarks: bulk import rate, identity lookup at scale, group listing cost.
//!
//! Run with `cargo bench --bench registry`. `SWITCHYARD_BENCH_DEVICES` (default 1,000,000)
//! sets the number of DERs and device identities of parts 2 and 3; part 1 always imports
//! 200,000 DERs. Everything runs against SQLite files in a temporary directory.
//!
//! Absolute figures depend on the machine and on whatever else it is doing; the ratios
//! printed next to them (batched vs row-at-a-time, index vs plain `HashMap` vs SQL) are
//! what to compare between runs.

mod common;
use common::{Table, thousands};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchyard::domain::identity::Lfdi;
use switchyard::domain::{DerClass, GridLocation, IdentityKind};
use switchyard::registry::identity_index::IndexedIdentity;
use switchyard::registry::import::{COLUMNS, ImportReport, import_csv};
use switchyard::registry::model::{Account, Der, Group, Identity, Meter, Site};
use switchyard::registry::{Registry, groups};
use switchyard::store::record::{self, dynamic};
use switchyard::store::{Record, Store};

/// DERs imported in part 1.
const IMPORT_DERS: usize = 200_000;
/// DERs per site: battery, PV inverter, EV charger, thermostat.
const DERS_PER_SITE: usize = 4;
/// Sites per distribution transformer (so a transformer group holds 40 DERs).
const SITES_PER_TRANSFORMER: usize = 10;
/// Feeders; a feeder group holds 1/20 of the portfolio.
const FEEDERS: usize = 20;
/// Lookups timed against the in-memory index and the `HashMap` baseline.
const LOOKUPS: usize = 2_000_000;
/// Lookups timed against the database (each is a query, so fewer).
const STORE_LOOKUPS: usize = 50_000;
/// Page size for group member listing (the API maximum).
const PAGE: u32 = 1000;

/// Set in the child process that measures a cold index load; holds the database URL.
const CHILD_ENV: &str = "SWITCHYARD_BENCH_CHILD_DB";
/// Set in the child process that measures bare maps; holds the number of entries.
const CHILD_MAP_ENV: &str = "SWITCHYARD_BENCH_CHILD_MAP";

// ---------------------------------------------------------------------------------------
// Output

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64())
}

fn ns_per(n: usize, d: Duration) -> String {
    format!("{:.1} ns", d.as_nanos() as f64 / n as f64)
}

fn us_per(n: usize, d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6 / n as f64)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------
// Process memory

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    proc_status_kib("VmRSS")
}

/// Hands freed heap pages back to the kernel so VmRSS shows live data rather than what the
/// allocator keeps cached from earlier, larger work.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and only releases free memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Data

/// One site's CSV rows: four DERs, an account, a meter and a place in a topology of two
/// substations, `FEEDERS` feeders and one transformer per `SITES_PER_TRANSFORMER` sites.
fn push_site_rows(out: &mut String, site: usize) {
    use std::fmt::Write;
    let transformer = site / SITES_PER_TRANSFORMER;
    let feeder = transformer % FEEDERS;
    let substation = feeder * 2 / FEEDERS;
    let section = (transformer / FEEDERS) % 8;
    let territory = if site.is_multiple_of(3) { "T2" } else { "T1" };
    // (class, manufacturer, serial prefix, rated_kw, storage_kwh, reserve_pct)
    let ders = [
        ("battery", "Voltstack", "VB", "5", "13.5", "20"),
        ("pv_inverter", "Sunward", "SW", "6.6", "", ""),
        ("ev_charger", "Plugline", "PL", "7.2", "", ""),
        ("thermostat", "Thermique", "TQ", "3", "", ""),
    ];
    for (class, maker, prefix, kw, kwh, reserve) in ders {
        // The column order of COLUMNS.
        let _ = writeln!(
            out,
            "ACC{site:08},Customer {site},residential,,NMI{site:08},{territory},nem,\
             {site} Example Street,SUB{substation},FDR{feeder:02},FDR{feeder:02}-S{section},\
             TX{transformer:06},MTR{site:08},true,900,{class},{maker},Model 1,\
             {prefix}{site:09},{kw},{kwh},{reserve},,"
        );
    }
}

/// An asset CSV with `sites` sites (4 DERs each), optionally ending in one invalid row.
fn asset_csv(sites: usize, bad_last_row: bool) -> String {
    let mut out = String::with_capacity(sites * DERS_PER_SITE * 220);
    out.push_str(&COLUMNS.join(","));
    out.push('\n');
    for s in 0..sites {
        push_site_rows(&mut out, s);
    }
    if bad_last_row {
        // rated_kw is not a number: the whole file is validated, then nothing is written.
        out.push_str(
            "ACCBAD,Bad,residential,,NMIBAD,T1,nem,,,,,,,,,battery,Voltstack,Model 1,\
             BAD1,lots,13.5,,,\n",
        );
    }
    out
}

fn transformer_name(t: usize) -> String {
    format!("TX{t:06}")
}

fn feeder_name(f: usize) -> String {
    format!("FDR{f:02}")
}

fn group(name: &str, class: Option<DerClass>, location: GridLocation) -> Group {
    Group {
        id: String::new(),
        name: name.to_string(),
        der_class: class,
        program_id: None,
        grid_location: location,
        created_at: 0,
        updated_at: 0,
    }
}

fn feeder_location(f: usize) -> GridLocation {
    GridLocation {
        feeder: Some(feeder_name(f)),
        ..GridLocation::default()
    }
}

/// The groups that exist before an import, so that its group recomputation has work to do.
async fn create_import_groups(registry: &Registry) -> Result<()> {
    registry
        .create(group(
            "all batteries",
            Some(DerClass::Battery),
            GridLocation::default(),
        ))
        .await?;
    registry
        .create(group("feeder 0", None, feeder_location(0)))
        .await?;
    Ok(())
}

fn lfdi_of(domain: &str, i: u64) -> Lfdi {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update(i.to_le_bytes());
    let digest: [u8; 32] = h.finalize().into();
    Lfdi::from_sha256_digest(&digest)
}

/// A small deterministic generator (splitmix64) so runs pick the same keys.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------
// Store helpers

async fn open_store(dir: &std::path::Path, name: &str) -> Result<(Store, String)> {
    let url = format!("sqlite:{}?mode=rwc", dir.join(name).display());
    let store = Store::open(&url, 4).await?;
    Ok((store, url))
}

async fn read_all<R: Record>(store: &Store) -> Result<Vec<R>> {
    let sql = format!("SELECT {} FROM {}", R::COLUMNS.join(", "), R::TABLE);
    let rows = dynamic(sql).fetch_all(store.pool()).await?;
    Ok(rows.iter().map(R::from_row).collect::<Result<_, _>>()?)
}

async fn count(store: &Store, table: &str) -> Result<i64> {
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.pool())
        .await?;
    Ok(row.0)
}

/// How the part 1 baselines insert DER rows.
#[derive(Clone, Copy)]
enum Insert {
    PerRow,
    Many,
    Sliced,
}

/// Records per `insert_many` call where the bench only needs rows in place. Small calls
/// keep each statement's parameter count low; see the bind-cost note in docs/benchmarks.md.
const SLICE: usize = 64;

/// `record::insert_many` called on `SLICE`-record slices.
async fn insert_sliced<R: Record>(conn: &mut sqlx::AnyConnection, recs: &[R]) -> Result<()> {
    for chunk in recs.chunks(SLICE) {
        record::insert_many(&mut *conn, chunk).await?;
    }
    Ok(())
}

async fn import(registry: &Registry, csv: &str) -> Result<(ImportReport, Duration)> {
    let t = Instant::now();
    let report = import_csv(registry, csv.as_bytes(), None).await?;
    Ok((report, t.elapsed()))
}

// ---------------------------------------------------------------------------------------
// Part 1: bulk import rate

async fn bench_import(dir: &std::path::Path, table: &mut Table) -> Result<()> {
    let sites = IMPORT_DERS / DERS_PER_SITE;
    eprintln!("part 1: import {IMPORT_DERS} DERs at {sites} sites");
    table.section(&format!(
        "1. Bulk import: {} DERs, {} sites/accounts/meters, 2 groups",
        thousands(IMPORT_DERS),
        thousands(sites)
    ));

    // A refused file: the same rows plus one bad final row. The import writes while it
    // reads, so this reads, checks and writes everything, then rolls it all back.
    let (store, _) = open_store(dir, "refused.db").await?;
    let registry = Registry::open(store.clone()).await?;
    create_import_groups(&registry).await?;
    let bad = asset_csv(sites, true);
    let (report, refused) = import(&registry, &bad).await?;
    drop(bad);
    if report.rejected.len() != 1 || count(&store, "ders").await? != 0 {
        bail!(
            "the refused run should reject exactly the last row and keep nothing: {:?}",
            report.rejected
        );
    }
    store.close().await;

    // End to end.
    let (store, _) = open_store(dir, "import.db").await?;
    let registry = Registry::open(store.clone()).await?;
    create_import_groups(&registry).await?;
    let csv = asset_csv(sites, false);
    let csv_mib = csv.len() as f64 / (1024.0 * 1024.0);
    let (report, total) = import(&registry, &csv).await?;
    drop(csv);
    if !report.rejected.is_empty() || report.ders_created as usize != IMPORT_DERS {
        bail!(
            "import failed: {:?}",
            &report.rejected[..report.rejected.len().min(5)]
        );
    }
    let members = count(&store, "group_members").await?;

    // What the import did before it computed memberships as it read: recompute every
    // group in SQL, on the same data, rolled back.
    let mut tx = store.pool().begin().await?;
    let t = Instant::now();
    groups::refresh_all(&mut tx).await?;
    let refresh = t.elapsed();
    tx.rollback().await?;

    table.add(
        "import_csv end to end",
        rate(IMPORT_DERS, total),
        &format!(
            "DERs/s; {} total, {csv_mib:.0} MiB CSV, {} memberships; target >= 100,000/s",
            secs(total),
            thousands(members as usize)
        ),
    );
    table.add(
        "  refusing the same file with a bad last row",
        secs(refused),
        "reads, writes and rolls back everything",
    );
    table.add(
        "  groups::refresh_all on the imported data",
        secs(refresh),
        "not part of the import any more; for comparison",
    );

    // The floor: the same records (already built, no CSV) written to a fresh database
    // with insert_many into the four tables, in one transaction.
    let accounts: Vec<Account> = read_all(&store).await?;
    let site_rows: Vec<Site> = read_all(&store).await?;
    let meters: Vec<Meter> = read_all(&store).await?;
    let ders: Vec<Der> = read_all(&store).await?;
    store.close().await;
    let (floor_store, _) = open_store(dir, "floor.db").await?;
    let t = Instant::now();
    let mut tx = floor_store.pool().begin().await?;
    record::insert_many(&mut tx, &accounts).await?;
    record::insert_many(&mut tx, &site_rows).await?;
    record::insert_many(&mut tx, &meters).await?;
    record::insert_many(&mut tx, &ders).await?;
    tx.commit().await?;
    let floor = t.elapsed();
    floor_store.close().await;
    drop(meters);
    table.add(
        "baseline: insert_many of the same records, 4 tables",
        rate(IMPORT_DERS, floor),
        &format!(
            "DERs/s; {}; {} rows, no parsing, no groups",
            secs(floor),
            thousands(3 * sites + IMPORT_DERS)
        ),
    );
    table.add(
        "ratio import_csv / 4-table insert_many",
        format!("{:.2}x", floor.as_secs_f64() / total.as_secs_f64()),
        "1.00x would mean parsing and checking cost nothing",
    );

    // Baselines on fresh databases holding the same accounts and sites: the same DER rows,
    // once one INSERT per row and once with insert_many, each in one transaction.

    let mut timed = Vec::new();
    for (name, how) in [
        ("per_row.db", Insert::PerRow),
        ("many.db", Insert::Many),
        ("sliced.db", Insert::Sliced),
    ] {
        let (store, _) = open_store(dir, name).await?;
        let mut tx = store.pool().begin().await?;
        insert_sliced(&mut tx, &accounts).await?;
        insert_sliced(&mut tx, &site_rows).await?;
        tx.commit().await?;
        let t = Instant::now();
        let mut tx = store.pool().begin().await?;
        match how {
            Insert::PerRow => {
                for d in &ders {
                    record::insert(&mut tx, d).await?;
                }
            }
            Insert::Many => record::insert_many(&mut tx, &ders).await?,
            Insert::Sliced => insert_sliced(&mut tx, &ders).await?,
        }
        tx.commit().await?;
        timed.push(t.elapsed());
        if count(&store, "ders").await? as usize != IMPORT_DERS {
            bail!("baseline {name} did not insert every DER");
        }
        store.close().await;
    }
    let (per_row, many, sliced) = (timed[0], timed[1], timed[2]);
    table.add(
        "baseline: record::insert per DER row",
        rate(IMPORT_DERS, per_row),
        &format!("DER rows/s, one transaction; {}", secs(per_row)),
    );
    table.add(
        "record::insert_many, DERs only",
        rate(IMPORT_DERS, many),
        &format!(
            "DER rows/s, one transaction, 1000-row statements as import_csv uses; {}",
            secs(many)
        ),
    );
    table.add(
        &format!("record::insert_many in {SLICE}-record calls"),
        rate(IMPORT_DERS, sliced),
        &format!(
            "DER rows/s; {}; diagnostic, see docs/benchmarks.md",
            secs(sliced)
        ),
    );
    table.add(
        "ratio import_csv / per-row inserts",
        format!("{:.2}x", per_row.as_secs_f64() / total.as_secs_f64()),
        "import does validation, 4 tables and groups on top",
    );
    table.add(
        "ratio insert_many / per-row inserts",
        format!("{:.2}x", per_row.as_secs_f64() / many.as_secs_f64()),
        "what multi-row batching buys on the DER table (> 1 is faster)",
    );
    table.add(
        &format!("ratio insert_many in {SLICE}-record calls / per-row"),
        format!("{:.2}x", per_row.as_secs_f64() / sliced.as_secs_f64()),
        "",
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part 2: identity lookup at scale

/// Child process: open the store, load the index, report memory. Prints one line.
fn child_main(url: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Store::open(url, 4).await?;
        trim_heap();
        let before = rss_kib();
        let t = Instant::now();
        let registry = Registry::open(store).await?;
        let load = t.elapsed();
        let after = rss_kib();
        let peak = proc_status_kib("VmHWM");
        trim_heap();
        let trimmed = rss_kib();
        println!(
            "CHILD {} {} {} {} {} {}",
            registry.identities().len(),
            load.as_nanos(),
            before,
            after,
            trimmed,
            peak
        );
        anyhow::Ok(())
    })
}

/// Child process: memory of the index's map type and of the baseline map with `n` entries,
/// built directly from memory (no database rows), so that the load's own overhead shows.
fn child_map_main(n: usize) -> Result<()> {
    trim_heap();
    let before = rss_kib();
    let mut map: HashMap<[u8; 20], IndexedIdentity> = HashMap::with_capacity(n);
    for i in 0..n {
        // A 36-character DER id, as the registry's UUIDs are.
        let der_id = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
        let entry = IndexedIdentity {
            kind: IdentityKind::Device,
            der_id: Some(der_id.into_boxed_str()),
        };
        map.insert(*lfdi_of("device", i as u64).as_bytes(), entry);
    }
    trim_heap();
    let index_like = rss_kib().saturating_sub(before);
    black_box(&map);
    drop(map);
    trim_heap();
    let before = rss_kib();
    let map: HashMap<[u8; 20], u32> = (0..n)
        .map(|i| (*lfdi_of("device", i as u64).as_bytes(), i as u32))
        .collect();
    trim_heap();
    let plain = rss_kib().saturating_sub(before);
    black_box(&map);
    println!("CHILD {index_like} {plain}");
    Ok(())
}

/// Runs this executable again with `env` set and returns the numbers of its CHILD line.
fn run_child_with(env: &str, value: &str) -> Result<Vec<u64>> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .env(env, value)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD "))
        .with_context(|| format!("child failed: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok(line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?)
}

struct ChildReport {
    len: usize,
    load: Duration,
    before: u64,
    after: u64,
    trimmed: u64,
    peak: u64,
}

fn run_child(url: &str) -> Result<ChildReport> {
    let f = run_child_with(CHILD_ENV, url)?;
    Ok(ChildReport {
        len: f[0] as usize,
        load: Duration::from_nanos(f[1]),
        before: f[2],
        after: f[3],
        trimmed: f[4],
        peak: f[5],
    })
}

async fn bench_identities(
    dir: &std::path::Path,
    devices: usize,
    table: &mut Table,
) -> Result<Registry> {
    let sites = devices / DERS_PER_SITE;
    let devices = sites * DERS_PER_SITE;
    eprintln!("part 2: {devices} DERs and device identities");
    table.section(&format!(
        "2. Identity lookup: {} DERs, {} device identities",
        thousands(devices),
        thousands(devices)
    ));

    let (store, url) = open_store(dir, "portfolio.db").await?;
    let registry = Registry::open(store.clone()).await?;
    create_import_groups(&registry).await?;
    let csv = asset_csv(sites, false);
    let (report, import_time) = import(&registry, &csv).await?;
    drop(csv);
    if !report.rejected.is_empty() || report.ders_created as usize != devices {
        bail!(
            "import failed: {:?}",
            &report.rejected[..report.rejected.len().min(5)]
        );
    }
    table.add(
        &format!("import_csv of {} DERs", thousands(devices)),
        rate(devices, import_time),
        &format!("DERs/s; {}", secs(import_time)),
    );

    // One device identity per DER. SFDIs are 36-bit hash prefixes, so a million random
    // LFDIs hold a few SFDI collisions; those candidates are skipped (SFDI is unique).
    let der_ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM ders")
        .fetch_all(store.pool())
        .await?;
    let now = switchyard::domain::now_epoch();
    let mut sfdis = HashSet::with_capacity(devices);
    let mut lfdis = Vec::with_capacity(devices);
    let mut identities = Vec::with_capacity(devices);
    let mut candidate = 0u64;
    for (der_id,) in der_ids {
        let (lfdi, sfdi) = loop {
            let l = lfdi_of("device", candidate);
            candidate += 1;
            let s = l.sfdi().value();
            if sfdis.insert(s) {
                break (l, s);
            }
        };
        lfdis.push(lfdi);
        identities.push(Identity {
            lfdi: lfdi.to_hex(),
            sfdi,
            kind: IdentityKind::Device,
            der_id: Some(der_id),
            description: None,
            certificate_pem: None,
            created_at: now,
            updated_at: now,
        });
    }
    drop(sfdis);
    let t = Instant::now();
    let mut tx = store.pool().begin().await?;
    insert_sliced(&mut tx, &identities).await?;
    tx.commit().await?;
    let ident_insert = t.elapsed();
    drop(identities);
    table.add(
        &format!("identity insert_many in {SLICE}-record calls"),
        rate(devices, ident_insert),
        &format!(
            "identities/s; {}; {} SFDI collisions skipped",
            secs(ident_insert),
            candidate as usize - devices
        ),
    );

    // Cold load in a fresh process: what a server starting on this database pays.
    let child = run_child(&url)?;
    if child.len != devices {
        bail!(
            "the index holds {} identities, expected {devices}",
            child.len
        );
    }
    table.add(
        "Registry::open (index load), fresh process",
        secs(child.load),
        &format!("{} identities/s", rate(devices, child.load)),
    );
    table.add(
        "RSS before index load",
        mib(child.before),
        "fresh process, store open",
    );
    table.add(
        "RSS after index load",
        mib(child.after),
        &format!("peak during load {}", mib(child.peak)),
    );
    table.add(
        &format!("RSS at {} devices (heap trimmed)", thousands(devices)),
        mib(child.trimmed),
        "total process resident memory",
    );
    table.add(
        "index cost per device",
        format!(
            "{:.0} B",
            child.trimmed.saturating_sub(child.before) as f64 * 1024.0 / devices as f64
        ),
        "(trimmed RSS - RSS before) / devices",
    );
    let maps = run_child_with(CHILD_MAP_ENV, &devices.to_string())?;
    table.add(
        "  same map type built directly",
        format!("{:.0} B", maps[0] as f64 * 1024.0 / devices as f64),
        "per device; HashMap<[u8; 20], IndexedIdentity>, no SQL rows",
    );
    table.add(
        "  baseline HashMap<[u8; 20], u32>",
        format!("{:.0} B", maps[1] as f64 * 1024.0 / devices as f64),
        "per device",
    );

    // The in-process registry used for lookups and part 3.
    let t = Instant::now();
    let registry = Registry::open(store.clone()).await?;
    let reload = t.elapsed();
    table.add(
        "Registry::open (index load), this process",
        secs(reload),
        "warm allocator",
    );

    // Keys: half registered LFDIs picked at random, half unknown ones.
    let mut mix = Mix(0x5EED);
    let keys: Vec<Lfdi> = (0..LOOKUPS)
        .map(|i| {
            if i % 2 == 0 {
                lfdis[mix.below(lfdis.len())]
            } else {
                lfdi_of("unknown", i as u64)
            }
        })
        .collect();

    let index = registry.identities();
    let mut best = Duration::MAX;
    let mut hits = 0;
    for _ in 0..3 {
        let t = Instant::now();
        hits = 0;
        for k in &keys {
            if black_box(index.lookup(black_box(k))).is_some() {
                hits += 1;
            }
        }
        best = best.min(t.elapsed());
    }
    if hits != LOOKUPS / 2 {
        bail!("expected {} hits, got {hits}", LOOKUPS / 2);
    }
    let index_ns = best.as_nanos() as f64 / LOOKUPS as f64;
    table.add(
        "IdentityIndex::lookup",
        ns_per(LOOKUPS, best),
        &format!(
            "per op, {} lookups, 50% hits; best of 3",
            thousands(LOOKUPS)
        ),
    );

    let baseline: HashMap<[u8; 20], u32> = lfdis
        .iter()
        .enumerate()
        .map(|(i, l)| (*l.as_bytes(), i as u32))
        .collect();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut found = 0;
        for k in &keys {
            if black_box(baseline.get(black_box(k.as_bytes()))).is_some() {
                found += 1;
            }
        }
        best = best.min(t.elapsed());
        if found != hits {
            bail!("baseline disagrees with the index");
        }
    }
    drop(baseline);
    let map_ns = best.as_nanos() as f64 / LOOKUPS as f64;
    table.add(
        "baseline: HashMap<[u8; 20], u32>::get",
        ns_per(LOOKUPS, best),
        "same keys; best of 3",
    );

    let mut conn = store.pool().acquire().await?;
    let hex: Vec<String> = keys[..STORE_LOOKUPS].iter().map(Lfdi::to_hex).collect();
    let t = Instant::now();
    let mut found = 0;
    for k in &hex {
        if record::get::<Identity>(&mut conn, k).await?.is_some() {
            found += 1;
        }
    }
    let sql = t.elapsed();
    drop(conn);
    if found != STORE_LOOKUPS / 2 {
        bail!(
            "store lookups found {found}, expected {}",
            STORE_LOOKUPS / 2
        );
    }
    let sql_ns = sql.as_nanos() as f64 / STORE_LOOKUPS as f64;
    table.add(
        "store: SELECT identity by primary key",
        ns_per(STORE_LOOKUPS, sql),
        &format!(
            "{} of the same keys, one connection",
            thousands(STORE_LOOKUPS)
        ),
    );
    table.add(
        "ratio index / HashMap baseline",
        format!("{:.2}x", index_ns / map_ns),
        "cost of the lock and the cloned binding",
    );
    table.add(
        "ratio store SELECT / index",
        format!("{:.0}x", sql_ns / index_ns),
        "",
    );
    Ok(registry)
}

// ---------------------------------------------------------------------------------------
// Part 3: group listing

async fn bench_groups(registry: &Registry, devices: usize, table: &mut Table) -> Result<()> {
    let sites = devices / DERS_PER_SITE;
    eprintln!("part 3: groups over {} DERs", sites * DERS_PER_SITE);
    table.section(&format!(
        "3. Group listing over {} DERs (page size {PAGE})",
        thousands(sites * DERS_PER_SITE)
    ));
    let transformers = sites.div_ceil(SITES_PER_TRANSFORMER);
    let cases = [
        (
            "transformer",
            group(
                "transformer bench",
                None,
                GridLocation {
                    transformer: Some(transformer_name(transformers / 2)),
                    ..GridLocation::default()
                },
            ),
        ),
        ("feeder", group("feeder bench", None, feeder_location(7))),
        (
            "class",
            group(
                "ev chargers bench",
                Some(DerClass::EvCharger),
                GridLocation::default(),
            ),
        ),
    ];
    for (label, g) in cases {
        let t = Instant::now();
        let created = registry.create(g).await?;
        let create = t.elapsed();

        let mut best = Duration::MAX;
        let mut members = 0;
        for _ in 0..2 {
            let t = Instant::now();
            members = 0;
            let mut after: Option<String> = None;
            loop {
                let page = registry
                    .group_members(&created.id, after.as_deref(), PAGE)
                    .await?;
                members += page.items.len();
                black_box(&page.items);
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            best = best.min(t.elapsed());
        }

        let mut agg_best = Duration::MAX;
        let mut agg = None;
        for _ in 0..3 {
            let t = Instant::now();
            agg = Some(registry.group_aggregate(&created.id).await?);
            agg_best = agg_best.min(t.elapsed());
        }
        let agg = agg.context("no aggregate")?;
        if agg.der_count as usize != members {
            bail!(
                "aggregate counts {} members, listing {members}",
                agg.der_count
            );
        }

        let name = format!("{label} group ({} DERs)", thousands(members));
        table.add(
            &format!("{name}: create"),
            secs(create),
            "Registry::create incl. membership recomputation",
        );
        table.add(
            &format!("{name}: list all members"),
            us_per(members, best),
            &format!(
                "per member; {} for {} pages; best of 2",
                secs(best),
                members.div_ceil(PAGE as usize)
            ),
        );
        table.add(
            &format!("{name}: group_aggregate"),
            format!("{:.2} ms", agg_best.as_secs_f64() * 1e3),
            &format!("{:.0} kW; best of 3", agg.rated_kw),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn main() -> Result<()> {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        return child_main(&url);
    }
    if let Ok(n) = std::env::var(CHILD_MAP_ENV) {
        return child_map_main(n.parse()?);
    }
    // `cargo bench` passes `--bench`; there are no options to parse.
    let devices = match std::env::var("SWITCHYARD_BENCH_DEVICES") {
        Ok(v) => v
            .replace('_', "")
            .parse::<usize>()
            .context("SWITCHYARD_BENCH_DEVICES must be a number")?,
        Err(_) => 1_000_000,
    };
    if devices < 4 * SITES_PER_TRANSFORMER * FEEDERS {
        bail!(
            "SWITCHYARD_BENCH_DEVICES must be at least {}",
            4 * SITES_PER_TRANSFORMER * FEEDERS
        );
    }
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut table = Table::new();
    rt.block_on(async {
        bench_import(dir.path(), &mut table).await?;
        // `SWITCHYARD_BENCH_ONLY=import` stops after part 1, for iterating on the import.
        if std::env::var("SWITCHYARD_BENCH_ONLY").as_deref() != Ok("import") {
            let registry = bench_identities(dir.path(), devices, &mut table).await?;
            bench_groups(&registry, devices, &mut table).await?;
            registry.store().close().await;
        }
        anyhow::Ok(())
    })?;
    println!();
    println!(
        "switchyard registry benchmark ({} devices, SQLite in {}, {} s wall)",
        thousands(devices),
        std::env::temp_dir().display(),
        started.elapsed().as_secs()
    );
    println!();
    table.print();
    Ok(())
}
