//! Dispatch delivery channels: the protocol side of the executor's
//! [`Channel`](crate::dispatch::execute::Channel) trait.
//!
//! Which channel reaches a DER (checked in this order, see docs/dispatch.md):
//! 1. SunSpec, when a `[[sunspec.devices]]` entry has the DER's id as `source_id` (the
//!    Modbus address lives in configuration, not in the registry);
//! 2. IEEE 2030.5, when a registered EndDevice has the DER as `der_id`;
//! 3. MQTT, when `[mqtt]` is enabled: the DER's id is the device id of its topics.
//!
//! Otherwise the delivery fails with "no delivery channel", recorded per device.

use crate::dispatch::execute::{Accepted, BoxFuture, Channel, Channels, Instruction};
use crate::domain::EpochSeconds;
use crate::envelope::model::ControlModes;
use crate::envelope::records::{ControlProgram, ControlRecord, TargetKind};
use crate::protocol::mqtt::MqttIngest;
use crate::protocol::mqtt::payload::AckStatus;
use crate::protocol::sep2::records::EndDeviceRecord;
use crate::protocol::sunspec::client::Device;
use crate::protocol::sunspec::control::{Command, apply};
use crate::registry::{Registry, RegistryError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The channels `switchyard serve` has.
pub struct ProtocolChannels {
    registry: Registry,
    sep2: Arc<Sep2Channel>,
    mqtt: Option<Arc<MqttChannel>>,
    sunspec: HashMap<String, Arc<SunSpecChannel>>,
}

impl ProtocolChannels {
    /// `sep2_primacy` is the primacy of the per-DER dispatch programs.
    pub fn new(registry: Registry, sep2_primacy: u8) -> ProtocolChannels {
        ProtocolChannels {
            sep2: Arc::new(Sep2Channel {
                registry: registry.clone(),
                primacy: sep2_primacy,
            }),
            registry,
            mqtt: None,
            sunspec: HashMap::new(),
        }
    }

    /// Adds the MQTT channel; acknowledgements are awaited for `ack_timeout`.
    pub fn with_mqtt(mut self, ingest: Arc<MqttIngest>, ack_timeout: Duration) -> Self {
        self.mqtt = Some(Arc::new(MqttChannel {
            ingest,
            ack_timeout,
        }));
        self
    }

    /// Adds a SunSpec device reached at `address`, unit `unit`, for DER `der`.
    pub fn with_sunspec(
        mut self,
        der: &str,
        address: SocketAddr,
        unit: u8,
        timeout: Duration,
    ) -> Self {
        self.sunspec.insert(
            der.to_string(),
            Arc::new(SunSpecChannel {
                address,
                unit,
                timeout,
            }),
        );
        self
    }
}

impl Channels for ProtocolChannels {
    fn route<'a>(&'a self, der: &'a str) -> BoxFuture<'a, Result<Arc<dyn Channel>, String>> {
        Box::pin(async move {
            if let Some(c) = self.sunspec.get(der) {
                return Ok(c.clone() as Arc<dyn Channel>);
            }
            let devices = self
                .registry
                .list::<EndDeviceRecord>(&[("der_id", der.into())], None, 1)
                .await
                .map_err(|e| format!("registry: {e}"))?;
            if !devices.items.is_empty() {
                return Ok(self.sep2.clone() as Arc<dyn Channel>);
            }
            match &self.mqtt {
                Some(m) => Ok(m.clone() as Arc<dyn Channel>),
                None => Err(format!(
                    "no delivery channel: DER {der} has no [[sunspec.devices]] entry, no 2030.5 \
                     EndDevice, and MQTT is not enabled"
                )),
            }
        })
    }
}

/// The operating modes that carry an instruction: a fixed active power in W (opModFixedW),
/// or no mode at all to withdraw the dispatch.
fn modes_for(instruction: &Instruction) -> ControlModes {
    match *instruction {
        Instruction::Hold { setpoint_kw, .. } => ControlModes {
            fixed_w: Some(setpoint_kw * 1000.0),
            ..ControlModes::default()
        },
        Instruction::Release => ControlModes::default(),
    }
}

/// IEEE 2030.5: a per-DER program `dispatch:{der}` whose DERControls (opModFixedW) the
/// device sees on its next poll of its DERProgramList. A new instruction cancels the
/// program's controls still in force and creates the new one, so the device always sees
/// one current control and the history of the rest as Cancelled.
pub struct Sep2Channel {
    registry: Registry,
    primacy: u8,
}

impl Sep2Channel {
    async fn program(&self, der: &str) -> Result<String, RegistryError> {
        let id = format!("dispatch:{der}");
        match self.registry.get::<ControlProgram>(&id).await {
            Ok(p) => return Ok(p.id),
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let created = self
            .registry
            .create(ControlProgram {
                id: id.clone(),
                name: id.clone(),
                description: Some(format!("Dispatch instructions for DER {der}")),
                primacy: self.primacy,
                target_kind: TargetKind::Der,
                target_id: der.to_string(),
                created_at: 0,
                updated_at: 0,
            })
            .await;
        match created {
            Ok(p) => Ok(p.id),
            // Created meanwhile by another delivery.
            Err(RegistryError::Conflict { .. }) => Ok(id),
            Err(e) => Err(e),
        }
    }

    async fn cancel_current(&self, program: &str, now: EpochSeconds) -> Result<(), RegistryError> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .registry
                .list::<ControlRecord>(&[("program_id", program.into())], after.as_deref(), 500)
                .await?;
            for c in &page.items {
                if c.cancelled_at.is_none() && c.start + i64::from(c.duration_s) > now {
                    self.registry
                        .update::<ControlRecord, _>(&c.id, |c| {
                            let mut c = c.clone();
                            c.cancelled_at = Some(now);
                            Ok(c)
                        })
                        .await?;
                }
            }
            match page.next_after {
                Some(a) => after = Some(a),
                None => return Ok(()),
            }
        }
    }
}

impl Channel for Sep2Channel {
    fn name(&self) -> &'static str {
        "sep2"
    }

    fn deliver<'a>(
        &'a self,
        plan_id: &'a str,
        der: &'a str,
        now: EpochSeconds,
        instruction: &'a Instruction,
    ) -> BoxFuture<'a, Result<Accepted, String>> {
        Box::pin(async move {
            let program = self.program(der).await.map_err(|e| e.to_string())?;
            self.cancel_current(&program, now)
                .await
                .map_err(|e| e.to_string())?;
            let Instruction::Hold { until, .. } = *instruction else {
                return Ok(Accepted {
                    confirmed: false,
                    reference: None,
                    note: Some("controls in force cancelled".into()),
                });
            };
            let duration_s = u32::try_from((until - now).max(1)).unwrap_or(u32::MAX);
            let control = self
                .registry
                .create(ControlRecord {
                    id: String::new(),
                    program_id: program,
                    description: Some(format!("dispatch plan {plan_id}")),
                    start: now,
                    duration_s,
                    randomize_start_s: 0,
                    randomize_duration_s: 0,
                    modes: modes_for(instruction),
                    response_required: true,
                    cancelled_at: None,
                    cancel_randomized: false,
                    created_at: 0,
                    updated_at: 0,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(Accepted {
                confirmed: false,
                reference: Some(control.id),
                note: None,
            })
        })
    }
}

/// MQTT: the command (retained, QoS 1) on the device's command topic, then its
/// acknowledgement, correlated by command id.
pub struct MqttChannel {
    ingest: Arc<MqttIngest>,
    ack_timeout: Duration,
}

impl Channel for MqttChannel {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn deliver<'a>(
        &'a self,
        _plan_id: &'a str,
        der: &'a str,
        _now: EpochSeconds,
        instruction: &'a Instruction,
    ) -> BoxFuture<'a, Result<Accepted, String>> {
        Box::pin(async move {
            let pending = self
                .ingest
                .send_command(der, modes_for(instruction))
                .await
                .map_err(|e| e.to_string())?;
            let command_id = pending.command_id.clone();
            let ack = pending
                .ack(self.ack_timeout)
                .await
                .map_err(|e| e.to_string())?;
            match ack.status {
                AckStatus::Applied => Ok(Accepted {
                    confirmed: true,
                    reference: Some(command_id),
                    note: ack.reason,
                }),
                AckStatus::Rejected => Err(format!(
                    "device rejected command {command_id}: {}",
                    ack.reason.unwrap_or_else(|| "no reason given".into())
                )),
            }
        })
    }
}

/// SunSpec over Modbus TCP: a fixed active power (model 704 WSet), or the release of the
/// power controls, each written and read back.
pub struct SunSpecChannel {
    address: SocketAddr,
    unit: u8,
    timeout: Duration,
}

impl Channel for SunSpecChannel {
    fn name(&self) -> &'static str {
        "sunspec"
    }

    fn deliver<'a>(
        &'a self,
        _plan_id: &'a str,
        _der: &'a str,
        _now: EpochSeconds,
        instruction: &'a Instruction,
    ) -> BoxFuture<'a, Result<Accepted, String>> {
        Box::pin(async move {
            let command = match *instruction {
                Instruction::Hold { setpoint_kw, .. } => Command::FixedW(setpoint_kw * 1000.0),
                Instruction::Release => Command::Release,
            };
            let mut device = Device::connect(self.address, self.unit, self.timeout)
                .await
                .map_err(|e| e.to_string())?;
            let map = device.discover().await.map_err(|e| e.to_string())?;
            let applied = apply(&mut device, &map, command)
                .await
                .map_err(|e| e.to_string())?;
            let note = applied
                .writes
                .iter()
                .map(|(w, read)| format!("{}.{} = {read}", w.model, w.point))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(Accepted {
                confirmed: true,
                reference: None,
                note: Some(format!("read back {note}")),
            })
        })
    }
}
