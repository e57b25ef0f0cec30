//! The demo portfolio that `switchyard demo` loads: one substation, two feeders, eight
//! sites with batteries, PV inverters and EV chargers, a program with eligibility rules,
//! groups by class, feeder and program, and development certificates bound to two devices
//! and one aggregator. Everything goes through the registry, so the demo obeys the same
//! rules as operator input.

use crate::domain::now_epoch;
use crate::domain::{
    AccountKind, DerClass, DerStatus, EnrolmentStatus, GridLocation, IdentityKind,
    InterconnectionType,
};
use crate::envelope::ControlModes;
use crate::envelope::records::{ControlProgram, ControlRecord, DefaultControlRecord, TargetKind};
use crate::pki::{BundleReport, BundleSpec, PkiError, write_bundle};
use crate::protocol::sep2::records::EndDeviceRecord;
use crate::registry::model::{Account, Der, Enrolment, Group, Identity, Meter, Program, Site};
use crate::registry::{Registry, RegistryError};
use std::path::Path;

/// Account number of the first demo account; its presence means the demo is loaded.
pub const MARKER_ACCOUNT: &str = "DEMO-0001";

/// Why loading the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// What `load` did.
#[derive(Debug)]
pub struct DemoSummary {
    /// False when the demo portfolio was already in the store.
    pub loaded: bool,
    /// The development PKI written on first load.
    pub pki: Option<BundleReport>,
}

/// Loads the demo portfolio unless it is already there; certificates go to `pki_dir`.
pub async fn load(registry: &Registry, pki_dir: &Path) -> Result<DemoSummary, DemoError> {
    let existing = registry
        .list::<Account>(&[("account_number", MARKER_ACCOUNT.into())], None, 1)
        .await?;
    if !existing.items.is_empty() {
        return Ok(DemoSummary {
            loaded: false,
            pki: None,
        });
    }

    let program = registry
        .create(Program {
            id: "summer-peak".into(),
            name: "Summer Peak Battery Program".into(),
            description: Some("Battery discharge during summer afternoon peaks".into()),
            eligible_territories: vec!["NORTH".into()],
            eligible_classes: vec![DerClass::Battery],
            eligible_interconnections: vec![],
            min_rated_kw: Some(3.0),
            created_at: 0,
            updated_at: 0,
        })
        .await?;

    let mut batteries = Vec::new();
    let mut devices = Vec::new();
    for i in 1..=8u32 {
        let feeder = if i <= 4 { "F1" } else { "F2" };
        let account = registry
            .create(Account {
                id: format!("acct-{i:04}"),
                account_number: format!("DEMO-{i:04}"),
                subscriber_id: Some(format!("SUB-{i:04}")),
                name: format!("Demo household {i}"),
                kind: if i == 8 {
                    AccountKind::Commercial
                } else {
                    AccountKind::Residential
                },
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        let site = registry
            .create(Site {
                id: format!("site-{i:04}"),
                account_id: account.id.clone(),
                connection_point_id: Some(format!("NMI{:08}", 41_000_000 + i)),
                territory: "NORTH".into(),
                interconnection_type: if i % 3 == 0 {
                    InterconnectionType::NonNem
                } else {
                    InterconnectionType::Nem
                },
                address: Some(format!("{i} Demo Street")),
                grid_location: GridLocation {
                    substation: Some("SUB-NORTH".into()),
                    feeder: Some(feeder.into()),
                    feeder_section: Some(format!("{feeder}-S{}", (i - 1) % 2 + 1)),
                    transformer: Some(format!("TX-{i:03}")),
                },
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        registry
            .create(Meter {
                id: format!("meter-{i:04}"),
                site_id: site.id.clone(),
                mpid: format!("MP{:08}", 51_000_000 + i),
                revenue_grade: true,
                interval_seconds: 300,
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        let battery = registry
            .create(Der {
                id: format!("der-bat-{i:04}"),
                site_id: site.id.clone(),
                der_class: DerClass::Battery,
                manufacturer: "Tesla".into(),
                model: "Powerwall 3".into(),
                serial: format!("PW3-{i:06}"),
                rated_kw: if i == 8 { 11.5 } else { 5.0 },
                storage_kwh: Some(if i == 8 { 27.0 } else { 13.5 }),
                reserve_pct: Some(20.0),
                status: DerStatus::Active,
                aggregator_lfdi: None,
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        batteries.push(battery.id.clone());
        registry
            .create(Der {
                id: format!("der-pv-{i:04}"),
                site_id: site.id.clone(),
                der_class: DerClass::PvInverter,
                manufacturer: "SMA".into(),
                model: "Sunny Boy 6.0".into(),
                serial: format!("SB6-{i:06}"),
                rated_kw: 6.0,
                storage_kwh: None,
                reserve_pct: None,
                status: DerStatus::Active,
                aggregator_lfdi: None,
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        if i % 2 == 0 {
            devices.push(
                registry
                    .create(Der {
                        id: format!("der-ev-{i:04}"),
                        site_id: site.id.clone(),
                        der_class: DerClass::EvCharger,
                        manufacturer: "Wallbox".into(),
                        model: "Quasar 2".into(),
                        serial: format!("WBQ2-{i:06}"),
                        rated_kw: 11.0,
                        storage_kwh: None,
                        reserve_pct: None,
                        status: DerStatus::Active,
                        aggregator_lfdi: None,
                        created_at: 0,
                        updated_at: 0,
                    })
                    .await?
                    .id,
            );
        }
    }
    for der_id in &batteries {
        registry
            .create(Enrolment {
                id: String::new(),
                program_id: program.id.clone(),
                der_id: der_id.clone(),
                status: EnrolmentStatus::Enrolled,
                created_at: 0,
                updated_at: 0,
            })
            .await?;
    }
    let groups = [
        (
            "grp-batteries",
            "All batteries",
            Some(DerClass::Battery),
            None,
            None,
        ),
        ("grp-feeder-f1", "Feeder F1", None, None, Some("F1")),
        ("grp-feeder-f2", "Feeder F2", None, None, Some("F2")),
        (
            "grp-summer-peak",
            "Summer Peak members",
            None,
            Some(program.id.clone()),
            None,
        ),
    ];
    for (id, name, der_class, program_id, feeder) in groups {
        registry
            .create(Group {
                id: id.into(),
                name: name.into(),
                der_class,
                program_id,
                grid_location: GridLocation {
                    substation: Some("SUB-NORTH".into()),
                    feeder: feeder.map(str::to_string),
                    feeder_section: None,
                    transformer: None,
                },
                created_at: 0,
                updated_at: 0,
            })
            .await?;
    }

    let report = write_bundle(&BundleSpec {
        out_dir: pki_dir.to_path_buf(),
        server_names: vec![],
        devices: vec!["demo-battery-1".into(), "demo-battery-2".into()],
        aggregators: vec!["demo-aggregator".into()],
    })?;
    for (client, der) in report
        .clients
        .iter()
        .zip([Some(&batteries[0]), Some(&batteries[1]), None])
    {
        registry
            .create(Identity {
                lfdi: String::new(),
                sfdi: 0,
                kind: if der.is_some() {
                    IdentityKind::Device
                } else {
                    IdentityKind::Aggregator
                },
                der_id: der.cloned(),
                description: Some(format!("demo certificate {}", client.name)),
                certificate_pem: std::fs::read_to_string(&client.cert_path).ok(),
                created_at: 0,
                updated_at: 0,
            })
            .await?;
    }
    // Battery 1 speaks IEEE 2030.5 with its own certificate, under a dynamic operating
    // envelope for its site: a 5 kW export default and a 1.5 kW limit for the next day.
    registry
        .create(EndDeviceRecord {
            id: String::new(),
            lfdi: report.clients[0].lfdi.to_hex(),
            sfdi: 0,
            certificate_pem: None,
            owner_lfdi: None,
            der_id: Some(batteries[0].clone()),
            site_id: None,
            enabled: true,
            pin: Some(111_115),
            device_category: None,
            changed_time: 0,
            created_at: 0,
            updated_at: 0,
        })
        .await?;
    registry
        .create(ControlProgram {
            id: "doe-site-0001".into(),
            name: "Dynamic operating envelope, site 0001".into(),
            description: None,
            primacy: 1,
            target_kind: TargetKind::Site,
            target_id: "site-0001".into(),
            created_at: 0,
            updated_at: 0,
        })
        .await?;
    registry
        .create(DefaultControlRecord {
            program_id: "doe-site-0001".into(),
            modes: ControlModes {
                exp_lim_w: Some(5000.0),
                imp_lim_w: Some(10_000.0),
                ..ControlModes::default()
            },
            created_at: 0,
            updated_at: 0,
        })
        .await?;
    registry
        .create(ControlRecord {
            id: String::new(),
            program_id: "doe-site-0001".into(),
            description: Some("Evening export limit".into()),
            start: now_epoch(),
            duration_s: 24 * 3600,
            randomize_start_s: 0,
            randomize_duration_s: 0,
            modes: ControlModes {
                exp_lim_w: Some(1500.0),
                ..ControlModes::default()
            },
            response_required: false,
            cancelled_at: None,
            cancel_randomized: false,
            created_at: 0,
            updated_at: 0,
        })
        .await?;

    // The EV chargers are managed through the aggregator head-end.
    let aggregator = report.clients.last().map(|c| c.lfdi.to_hex());
    for der_id in devices {
        registry
            .update::<Der, _>(&der_id, |d| {
                let mut d = d.clone();
                d.aggregator_lfdi = aggregator.clone();
                Ok(d)
            })
            .await?;
    }
    Ok(DemoSummary {
        loaded: true,
        pki: Some(report),
    })
}
