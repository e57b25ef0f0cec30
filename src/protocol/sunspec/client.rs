//! A SunSpec device over Modbus TCP: connect, discover the model map, read whole models and
//! write registers, each request bounded by a timeout.
//!
//! One [`Device`] is one TCP connection; [`Device::set_unit`] moves it between unit ids
//! behind the same gateway. After a timeout or link failure the connection's state is
//! unknown (a late answer may still arrive), so callers drop it and connect again.

use super::SunSpecError;
use super::decode::{DecodedModel, decode_model};
use super::layout::{HEADER_LEN, ModelLayout};
use super::model::definition;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_modbus::client::{Context, Reader, Writer, tcp};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

/// Where the 'SunS' marker may be, in the order tried.
pub const BASE_ADDRESSES: [u16; 3] = [40000, 0, 50000];
/// 'SunS' as two registers.
pub const SUNS: [u16; 2] = [0x5375, 0x6E53];
/// The model id that ends the chain.
pub const END_ID: u16 = 0xFFFF;
/// The most models a chain may hold before it is treated as never ending. Real devices
/// carry a few dozen at most.
pub const DEFAULT_MAX_MODELS: usize = 256;
/// The most registers one Modbus read may return.
const MAX_READ: u16 = 125;
/// The most registers one Modbus write may carry.
const MAX_WRITE: u16 = 123;

/// One model found in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelEntry {
    pub id: u16,
    /// Address of its `ID` register.
    pub address: u16,
    /// Its `L` register: registers after the header.
    pub length: u16,
}

/// The SunSpec map of one unit: where it starts and which models it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMap {
    pub base: u16,
    pub models: Vec<ModelEntry>,
}

impl DeviceMap {
    /// The first model with this id.
    pub fn find(&self, id: u16) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// A connection to one unit of a Modbus TCP device or gateway.
pub struct Device {
    addr: SocketAddr,
    unit: u8,
    timeout: Duration,
    max_models: usize,
    ctx: Context,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("addr", &self.addr)
            .field("unit", &self.unit)
            .finish()
    }
}

impl Device {
    /// Connects to `addr` for unit `unit`; connecting and every later request are bounded
    /// by `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        unit: u8,
        timeout: Duration,
    ) -> Result<Self, SunSpecError> {
        let ctx = match tokio::time::timeout(timeout, tcp::connect_slave(addr, Slave(unit))).await {
            Err(_) => {
                return Err(SunSpecError::Timeout {
                    addr,
                    unit,
                    request: "connect".into(),
                    timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(SunSpecError::Link {
                    addr,
                    context: "connect".into(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(ctx)) => ctx,
        };
        Ok(Device {
            addr,
            unit,
            timeout,
            max_models: DEFAULT_MAX_MODELS,
            ctx,
        })
    }

    /// The device's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The unit id requests go to.
    pub fn unit(&self) -> u8 {
        self.unit
    }

    /// Sends later requests to another unit behind the same gateway.
    pub fn set_unit(&mut self, unit: u8) {
        self.unit = unit;
        self.ctx.set_slave(Slave(unit));
    }

    /// Changes the bound on connecting and on each request.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Changes the bound on the model chain (see [`DEFAULT_MAX_MODELS`]).
    pub fn set_max_models(&mut self, n: usize) {
        self.max_models = n.max(1);
    }

    /// Maps the result of one Modbus call, keeping refusals apart from link failures.
    fn outcome<T>(
        &self,
        request: String,
        r: Result<tokio_modbus::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, SunSpecError> {
        match r {
            Err(_) => Err(SunSpecError::Timeout {
                addr: self.addr,
                unit: self.unit,
                request,
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(SunSpecError::Link {
                addr: self.addr,
                context: request,
                reason: e.to_string(),
            }),
            Ok(Ok(Err(code))) => Err(SunSpecError::Refused {
                addr: self.addr,
                unit: self.unit,
                request,
                code,
            }),
            Ok(Ok(Ok(v))) => Ok(v),
        }
    }

    /// Reads `count` holding registers from `address`, in as many requests as needed.
    pub async fn read(&mut self, address: u16, count: u16) -> Result<Vec<u16>, SunSpecError> {
        let mut out = Vec::with_capacity(count as usize);
        let mut at = u32::from(address);
        let end = u32::from(address) + u32::from(count);
        while at < end {
            let n = (end - at).min(u32::from(MAX_READ)) as u16;
            let a = at as u16;
            let r = tokio::time::timeout(self.timeout, self.ctx.read_holding_registers(a, n)).await;
            let mut words = self.outcome(format!("read of {n} registers at {a}"), r)?;
            if words.len() != n as usize {
                return Err(SunSpecError::Link {
                    addr: self.addr,
                    context: format!("read of {n} registers at {a}"),
                    reason: format!("answer carried {} registers", words.len()),
                });
            }
            out.append(&mut words);
            at += u32::from(n);
        }
        Ok(out)
    }

    /// Writes `words` from `address` (function 16), in as many requests as needed.
    pub async fn write(&mut self, address: u16, words: &[u16]) -> Result<(), SunSpecError> {
        for (i, chunk) in words.chunks(MAX_WRITE as usize).enumerate() {
            let a = address.wrapping_add(i as u16 * MAX_WRITE);
            let r = tokio::time::timeout(self.timeout, self.ctx.write_multiple_registers(a, chunk))
                .await;
            self.outcome(format!("write of {} registers at {a}", chunk.len()), r)?;
        }
        Ok(())
    }

    /// Finds the 'SunS' marker and walks the model chain to its end marker.
    pub async fn discover(&mut self) -> Result<DeviceMap, SunSpecError> {
        let mut gateway_refusal = None;
        let mut base = None;
        for b in BASE_ADDRESSES {
            match self.read(b, 2).await {
                Ok(words) if words == SUNS => {
                    base = Some(b);
                    break;
                }
                Ok(_) => {}
                Err(e @ SunSpecError::Refused { .. }) => {
                    // A gateway that cannot reach the unit refuses every address; that is
                    // the answer to report, not "no SunSpec map".
                    if let SunSpecError::Refused {
                        code:
                            ExceptionCode::GatewayTargetDevice | ExceptionCode::GatewayPathUnavailable,
                        ..
                    } = e
                    {
                        gateway_refusal.get_or_insert(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let Some(base) = base else {
            return Err(gateway_refusal.unwrap_or(SunSpecError::NotSunSpec {
                addr: self.addr,
                unit: self.unit,
            }));
        };
        let mut models = Vec::new();
        let mut at = u32::from(base) + 2;
        loop {
            if at + u32::from(HEADER_LEN) > 0x1_0000 {
                let last = models.last().copied().unwrap_or(ModelEntry {
                    id: 0,
                    address: base,
                    length: 0,
                });
                return Err(SunSpecError::ChainOverflow {
                    addr: self.addr,
                    unit: self.unit,
                    id: last.id,
                    address: last.address,
                    length: last.length,
                });
            }
            let header = self.read(at as u16, 2).await?;
            let (id, length) = (header[0], header[1]);
            if id == END_ID {
                break;
            }
            if models.len() >= self.max_models {
                return Err(SunSpecError::EndlessChain {
                    addr: self.addr,
                    unit: self.unit,
                    base,
                    limit: self.max_models,
                    last_id: id,
                    last_address: at,
                });
            }
            models.push(ModelEntry {
                id,
                address: at as u16,
                length,
            });
            at += u32::from(HEADER_LEN) + u32::from(length);
        }
        Ok(DeviceMap { base, models })
    }

    /// Reads and decodes one model; `None` when this build has no definition for it.
    pub async fn read_model(
        &mut self,
        entry: &ModelEntry,
    ) -> Result<Option<DecodedModel>, SunSpecError> {
        if definition(entry.id).is_none() {
            return Ok(None);
        }
        let (layout, regs) = self.read_layout(entry).await?;
        Ok(Some(decode_model(&layout, entry.address, &regs)))
    }

    /// Reads every model of the map this build can decode, in chain order.
    pub async fn read_all(&mut self, map: &DeviceMap) -> Result<Vec<DecodedModel>, SunSpecError> {
        let mut out = Vec::with_capacity(map.models.len());
        for entry in &map.models {
            if let Some(m) = self.read_model(entry).await? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The registers and layout of one model, for writes that need its scale factors.
    pub async fn read_layout(
        &mut self,
        entry: &ModelEntry,
    ) -> Result<(ModelLayout, Vec<u16>), SunSpecError> {
        let def = definition(entry.id).ok_or_else(|| SunSpecError::Unsupported {
            addr: self.addr,
            unit: self.unit,
            command: format!("decode model {}", entry.id),
            needs: vec![entry.id],
        })?;
        let regs = self
            .read(entry.address, entry.length.saturating_add(HEADER_LEN))
            .await?;
        let layout = ModelLayout::new(def, entry.length, &|slot| {
            u32::from(regs.get(slot.offset as usize).copied().unwrap_or(0))
        })?;
        Ok((layout, regs))
    }
}
