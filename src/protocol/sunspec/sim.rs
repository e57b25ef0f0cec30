//! A SunSpec device simulator: a real Modbus TCP server presenting a PV inverter with a
//! battery (models 1, 103, 120, 123, 124, 701, 702, 704, 705, 713, 802), one image per unit
//! id behind one address, with time-varying values that a seed makes repeatable, and
//! control writes that change what it produces.
//!
//! The register image is laid out from the same embedded definitions the client uses
//! (every point starts "not implemented", then the simulated ones are set), so the
//! simulator never carries an offset of its own. It refuses what a careful device refuses:
//! reads outside the map and writes to read-only points (illegal data address), values a
//! point cannot take (illegal data value), and unit ids it does not serve (gateway target
//! device failed to respond).

use super::client::{END_ID, SUNS};
use super::decode::{decode_point, encode_point, encode_text, not_implemented};
use super::layout::{ModelLayout, Slot};
use super::model::{PointType, definition};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// Where the simulated map starts.
pub const BASE: u16 = 40000;
/// The vendor model id an endless chain repeats (64900 is in the vendor range, and this
/// build has no definition for it).
pub const ENDLESS_MODEL_ID: u16 = 64900;

/// How the simulator ends its model chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainMode {
    /// With the 0xFFFF end marker, as the standard requires.
    #[default]
    Normal,
    /// Never: after the last model an empty vendor model follows every two registers.
    Endless,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of the variations; the same seed gives the same values at the same elapsed
    /// second.
    pub seed: u64,
    /// Unit ids served, each its own device.
    pub units: Vec<u8>,
    /// Inverter rating, W.
    pub rated_w: f64,
    /// Battery capacity, Wh.
    pub battery_wh: f64,
    pub chain: ChainMode,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            units: vec![1, 2],
            rated_w: 5000.0,
            battery_wh: 13_500.0,
            chain: ChainMode::Normal,
        }
    }
}

/// The models presented, in chain order.
pub const MODELS: [u16; 11] = [1, 103, 120, 123, 124, 701, 702, 704, 705, 713, 802];

/// One model placed in the image.
struct Placed {
    layout: ModelLayout,
    /// Index of its `ID` register in the image.
    start: usize,
}

/// One simulated unit.
struct Unit {
    unit: u8,
    seed: u64,
    rated_w: f64,
    battery_wh: f64,
    chain: ChainMode,
    /// Registers from [`BASE`].
    regs: Vec<u16>,
    models: BTreeMap<u16, Placed>,
    started: Instant,
    /// Elapsed seconds at the last update.
    t: f64,
    soc_pct: f64,
    energy_wh: f64,
}

impl Unit {
    fn new(cfg: &SimConfig, unit: u8) -> Self {
        let mut regs = SUNS.to_vec();
        let mut models = BTreeMap::new();
        for id in MODELS {
            let def = definition(id).expect("simulated models are embedded");
            // One volt-var curve of four points.
            let layout = ModelLayout::natural(def, &|s: &Slot| match s.def.name.as_str() {
                "NCrv" => 1,
                "NPt" => 4,
                _ => 1,
            })
            .expect("simulated layouts fit");
            let start = regs.len();
            for slot in layout.slots() {
                regs.extend(not_implemented(slot.def));
            }
            regs[start] = id;
            regs[start + 1] = layout.length();
            models.insert(id, Placed { layout, start });
        }
        if cfg.chain == ChainMode::Normal {
            regs.extend([END_ID, 0]);
        }
        let mut u = Unit {
            unit,
            seed: cfg.seed.wrapping_add(u64::from(unit)),
            rated_w: cfg.rated_w,
            battery_wh: cfg.battery_wh,
            chain: cfg.chain,
            regs,
            models,
            started: Instant::now(),
            t: 0.0,
            soc_pct: 50.0,
            energy_wh: 1_000_000.0,
        };
        u.set_static();
        u.update(0.0);
        u
    }

    fn slot(&self, model: u16, path: &str) -> (usize, Slot) {
        let p = &self.models[&model];
        let s = p
            .layout
            .slot(path)
            .unwrap_or_else(|| panic!("model {model} has no point {path}"));
        (p.start, s.clone())
    }

    fn model_regs(&self, model: u16) -> &[u16] {
        let p = &self.models[&model];
        &self.regs[p.start..p.start + p.layout.len as usize]
    }

    fn set(&mut self, model: u16, path: &str, value: f64) {
        let (start, s) = self.slot(model, path);
        let words = encode_point(self.model_regs(model), &s, value)
            .unwrap_or_else(|e| panic!("simulated {model}.{path}: {e}"));
        let at = start + s.offset as usize;
        self.regs[at..at + words.len()].copy_from_slice(&words);
    }

    fn set_text(&mut self, model: u16, path: &str, text: &str) {
        let (start, s) = self.slot(model, path);
        let words = encode_text(&s, text);
        let at = start + s.offset as usize;
        self.regs[at..at + words.len()].copy_from_slice(&words);
    }

    fn get(&self, model: u16, path: &str) -> Option<f64> {
        let (_, s) = self.slot(model, path);
        decode_point(self.model_regs(model), &s)
            .value
            .and_then(|v| v.as_f64())
    }

    /// Nameplate, scale factors and initial control settings.
    fn set_static(&mut self) {
        let rated = self.rated_w;
        self.set_text(1, "Mn", "Switchyard");
        self.set_text(1, "Md", "SIM-PV-BAT");
        self.set_text(1, "Vr", env!("CARGO_PKG_VERSION"));
        self.set_text(1, "SN", &format!("SIM-{:04}", self.unit));
        self.set(1, "DA", f64::from(self.unit));
        // 103: watts in tens, volts in tenths, hertz in hundredths: every decode must
        // apply its factor. Reactive power and phases B/C stay not implemented.
        for (p, sf) in [
            ("A_SF", -2.0),
            ("V_SF", -1.0),
            ("W_SF", 1.0),
            ("Hz_SF", -2.0),
            ("WH_SF", 0.0),
        ] {
            self.set(103, p, sf);
        }
        self.set(120, "DERTyp", 82.0); // PV_STOR
        self.set(120, "WRtg_SF", 0.0);
        self.set(120, "WRtg", rated);
        self.set(120, "VARtg_SF", 0.0);
        self.set(120, "VARtg", rated);
        self.set(120, "WHRtg_SF", 0.0);
        self.set(120, "WHRtg", self.battery_wh);
        self.set(123, "WMaxLimPct_SF", 0.0);
        self.set(123, "WMaxLimPct", 100.0);
        self.set(123, "WMaxLim_Ena", 0.0);
        self.set(123, "Conn", 1.0);
        self.set(124, "WChaMax_SF", 0.0);
        self.set(124, "WChaMax", rated);
        self.set(124, "InOutWRte_SF", -1.0);
        self.set(124, "InWRte", 0.0);
        self.set(124, "OutWRte", 0.0);
        self.set(124, "StorCtl_Mod", 0.0);
        self.set(124, "ChaState_SF", -1.0);
        for (p, sf) in [
            ("W_SF", 0.0),
            ("VA_SF", 0.0),
            ("Var_SF", 0.0),
            ("V_SF", -1.0),
            ("Hz_SF", -3.0),
            ("TotWh_SF", 0.0),
            ("A_SF", -2.0),
            ("PF_SF", -3.0),
        ] {
            self.set(701, p, sf);
        }
        self.set(701, "ACType", 1.0);
        self.set(702, "W_SF", 0.0);
        self.set(702, "WMaxRtg", rated);
        self.set(702, "WMax", rated);
        for (p, sf) in [
            ("WMaxLimPct_SF", -1.0),
            ("WSet_SF", 0.0),
            ("WSetPct_SF", -1.0),
        ] {
            self.set(704, p, sf);
        }
        self.set(704, "WMaxLimPctEna", 0.0);
        self.set(704, "WMaxLimPct", 100.0);
        self.set(704, "WSetEna", 0.0);
        self.set(704, "WSetMod", 1.0);
        self.set(704, "WSet", 0.0);
        self.set(705, "NCrv", 1.0);
        self.set(705, "NPt", 4.0);
        self.set(705, "V_SF", -1.0);
        self.set(705, "DeptRef_SF", -1.0);
        self.set(705, "Ena", 0.0);
        for (i, (v, var)) in [(92.0, 44.0), (98.0, 0.0), (102.0, 0.0), (108.0, -44.0)]
            .into_iter()
            .enumerate()
        {
            self.set(705, &format!("Crv[0].Pt[{i}].V"), v);
            self.set(705, &format!("Crv[0].Pt[{i}].Var"), var);
        }
        self.set(705, "Crv[0].ActPt", 4.0);
        self.set(713, "WH_SF", 0.0);
        self.set(713, "Pct_SF", -1.0);
        self.set(713, "WHRtg", self.battery_wh);
        for (p, sf) in [
            ("WHRtg_SF", 0.0),
            ("SoC_SF", -1.0),
            ("W_SF", 0.0),
            ("V_SF", -1.0),
            ("WChaDisChaMax_SF", 0.0),
        ] {
            self.set(802, p, sf);
        }
        self.set(802, "WHRtg", self.battery_wh);
        self.set(802, "WChaRteMax", rated);
        self.set(802, "WDisChaRteMax", rated);
        self.set(802, "Typ", 4.0); // LI_ION
        self.set(802, "State", 3.0); // CONNECTED
    }

    /// Deterministic noise in [-1, 1] for this unit and elapsed second.
    fn noise(&self, second: u64, channel: u64) -> f64 {
        let mut rng = SmallRng::seed_from_u64(
            self.seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(second.wrapping_mul(31).wrapping_add(channel)),
        );
        rng.random_range(-1.0..=1.0)
    }

    /// Advances the simulation to `t` seconds after start: PV output under the limits in
    /// force, the battery under its storage controls, energy and state of charge.
    fn update(&mut self, t: f64) {
        let dt = (t - self.t).max(0.0);
        self.t = t;
        let second = t as u64;
        let rated = self.rated_w;
        let connected = self.get(123, "Conn") != Some(0.0) && self.get(802, "SetOp") != Some(2.0);
        // A ten-minute "day" so that values visibly change during a demo.
        let shape = 0.6 + 0.3 * (t * std::f64::consts::TAU / 600.0).sin();
        let mut pv = rated * shape * (1.0 + 0.05 * self.noise(second, 0));
        if self.get(704, "WMaxLimPctEna") == Some(1.0) {
            pv = pv.min(rated * self.get(704, "WMaxLimPct").unwrap_or(100.0) / 100.0);
        }
        if self.get(123, "WMaxLim_Ena") == Some(1.0) {
            pv = pv.min(rated * self.get(123, "WMaxLimPct").unwrap_or(100.0) / 100.0);
        }
        let mode = self.get(124, "StorCtl_Mod").unwrap_or(0.0) as u64;
        let wcha = self.get(124, "WChaMax").unwrap_or(rated);
        let mut battery = 0.0; // positive: discharging into the AC side
        if mode & 1 != 0 && self.soc_pct < 100.0 {
            battery -= wcha * self.get(124, "InWRte").unwrap_or(0.0).abs() / 100.0;
        }
        if mode & 2 != 0 && self.soc_pct > 0.0 {
            battery += wcha * self.get(124, "OutWRte").unwrap_or(0.0).abs() / 100.0;
        }
        let mut ac = (pv + battery).clamp(-rated, rated);
        if self.get(704, "WSetEna") == Some(1.0) && self.get(704, "WSetMod") == Some(1.0) {
            ac = self.get(704, "WSet").unwrap_or(0.0).clamp(-rated, rated);
            battery = ac - pv;
        }
        if !connected {
            ac = 0.0;
            battery = 0.0;
        }
        self.soc_pct =
            (self.soc_pct - battery * dt / 3600.0 / self.battery_wh * 100.0).clamp(0.0, 100.0);
        self.energy_wh += ac.max(0.0) * dt / 3600.0;
        let v = 240.0 + 2.0 * self.noise(second, 1);
        let hz = 60.0 + 0.02 * self.noise(second, 2);
        let amps = ac.abs() / v;
        let st = if !connected {
            1.0
        } else if ac < pv.min(rated) - 1.0 && battery >= 0.0 {
            5.0
        } else {
            4.0
        };
        self.set(103, "W", ac);
        self.set(103, "A", amps);
        self.set(103, "AphA", amps);
        self.set(103, "PhVphA", v);
        self.set(103, "Hz", hz);
        self.set(103, "WH", self.energy_wh.max(1.0));
        self.set(103, "St", st);
        self.set(701, "W", ac);
        self.set(701, "VA", ac.abs());
        self.set(701, "Var", 0.0);
        self.set(701, "LNV", v);
        self.set(701, "Hz", hz);
        self.set(701, "A", amps);
        self.set(701, "TotWhInj", self.energy_wh.max(1.0));
        self.set(701, "ConnSt", if connected { 1.0 } else { 0.0 });
        self.set(701, "InvSt", if connected { 3.0 } else { 0.0 });
        self.set(701, "St", if connected { 1.0 } else { 0.0 });
        self.set(124, "ChaState", self.soc_pct);
        let chast = if battery < 0.0 {
            4.0
        } else if battery > 0.0 {
            3.0
        } else {
            6.0
        };
        self.set(124, "ChaSt", chast);
        self.set(713, "SoC", self.soc_pct);
        self.set(713, "WHAvail", self.battery_wh * self.soc_pct / 100.0);
        self.set(802, "SoC", self.soc_pct);
        self.set(802, "W", battery);
        self.set(802, "V", 400.0 + self.soc_pct / 2.0);
        self.set(802, "ChaSt", chast);
        self.set(802, "State", if connected { 3.0 } else { 1.0 });
    }

    fn read(&mut self, address: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        self.update(self.started.elapsed().as_secs_f64());
        let start = i64::from(address) - i64::from(BASE);
        let end = start + i64::from(count);
        if start < 0 || count == 0 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let len = self.regs.len() as i64;
        if end <= len {
            return Ok(self.regs[start as usize..end as usize].to_vec());
        }
        match self.chain {
            ChainMode::Normal => Err(ExceptionCode::IllegalDataAddress),
            // Past the last model an empty vendor model header every two registers:
            // the chain goes on for as long as anyone reads.
            ChainMode::Endless => Ok((start..end)
                .map(|i| {
                    if i < len {
                        self.regs[i as usize]
                    } else if (i - len) % 2 == 0 {
                        ENDLESS_MODEL_ID
                    } else {
                        0
                    }
                })
                .collect()),
        }
    }

    fn write(&mut self, address: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let start = usize::from(address)
            .checked_sub(usize::from(BASE))
            .ok_or(ExceptionCode::IllegalDataAddress)?;
        let end = start + words.len();
        if words.is_empty() || end > self.regs.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        // Every register written must belong to a writable point of one model.
        let (id, placed) = self
            .models
            .iter()
            .find(|(_, p)| start >= p.start && end <= p.start + p.layout.len as usize)
            .ok_or(ExceptionCode::IllegalDataAddress)?;
        let id = *id;
        let base = placed.start;
        let mut touched = Vec::new();
        for slot in placed.layout.slots() {
            let s = base + slot.offset as usize;
            let e = s + slot.def.size as usize;
            if s < end && e > start {
                // Writing part of a multi-register point, or a read-only one, is refused.
                if !slot.def.writable() || s < start || e > end {
                    return Err(ExceptionCode::IllegalDataAddress);
                }
                touched.push(slot.clone());
            }
        }
        let mut candidate = self.model_regs(id).to_vec();
        candidate[start - base..end - base].copy_from_slice(words);
        for slot in &touched {
            let p = decode_point(&candidate, slot);
            let v = p.value.as_ref().and_then(|v| v.as_f64());
            let bad = match slot.def.kind {
                PointType::Enum16 | PointType::Enum32 => {
                    v.is_some_and(|v| slot.def.symbol(v as u64).is_none())
                }
                _ => match slot.def.name.as_str() {
                    "WMaxLimPct" | "WMaxLimPctRvrt" | "InWRte" | "OutWRte" => {
                        v.is_some_and(|v| !(0.0..=100.0).contains(&v.abs()))
                    }
                    "WSet" | "WSetRvrt" => v.is_some_and(|v| v.abs() > self.rated_w),
                    _ => false,
                },
            };
            if bad {
                return Err(ExceptionCode::IllegalDataValue);
            }
        }
        self.regs[start..end].copy_from_slice(words);
        self.update(self.started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The simulator: shared state behind every connection.
#[derive(Clone)]
pub struct Simulator {
    units: Arc<Mutex<BTreeMap<u8, Unit>>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    pub fn new(cfg: &SimConfig) -> Self {
        let units = cfg.units.iter().map(|u| (*u, Unit::new(cfg, *u))).collect();
        Simulator {
            units: Arc::new(Mutex::new(units)),
        }
    }

    /// Handles one request (what the Modbus server calls).
    fn handle(&self, req: SlaveRequest<'static>) -> Result<Response, ExceptionCode> {
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        let unit = units
            .get_mut(&req.slave)
            .ok_or(ExceptionCode::GatewayTargetDevice)?;
        match req.request {
            Request::ReadHoldingRegisters(a, n) => {
                if n > 125 {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                unit.read(a, n).map(Response::ReadHoldingRegisters)
            }
            Request::WriteMultipleRegisters(a, words) => {
                unit.write(a, &words)?;
                Ok(Response::WriteMultipleRegisters(a, words.len() as u16))
            }
            Request::WriteSingleRegister(a, w) => {
                unit.write(a, &[w])?;
                Ok(Response::WriteSingleRegister(a, w))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    /// Serves Modbus TCP on `listener` until the future is dropped.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let server = Server::new(listener);
        let on_connected = |stream, _addr: SocketAddr| {
            let service = Service(self.clone());
            async move { Ok(Some((service, stream))) }
        };
        let on_error = |e: std::io::Error| tracing::debug!("sunspec sim connection: {e}");
        server.serve(&on_connected, on_error).await
    }

    /// Binds `addr` and serves in a background task; returns the bound address.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = self.serve(listener).await {
                tracing::warn!("sunspec simulator stopped: {e}");
            }
        });
        Ok(local)
    }
}

/// The tokio-modbus service wrapper.
struct Service(Simulator);

impl tokio_modbus::server::Service for Service {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.0.handle(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_starts_with_suns_and_ends_with_the_marker() {
        let u = Unit::new(&SimConfig::default(), 1);
        assert_eq!(&u.regs[..2], &SUNS);
        assert_eq!(&u.regs[u.regs.len() - 2..], &[END_ID, 0]);
        assert_eq!(u.regs[2], 1);
        assert_eq!(u.regs[3], 66);
    }

    #[test]
    fn the_same_seed_gives_the_same_values() {
        let cfg = SimConfig::default();
        let mut a = Unit::new(&cfg, 1);
        let mut b = Unit::new(&cfg, 1);
        a.update(42.0);
        b.update(42.0);
        assert_eq!(a.regs, b.regs);
        let mut c = Unit::new(&SimConfig { seed: 7, ..cfg }, 1);
        c.update(42.0);
        assert_ne!(a.get(103, "W"), c.get(103, "W"));
        assert_ne!(a.get(103, "W"), {
            a.update(43.0);
            a.get(103, "W")
        });
    }

    #[test]
    fn writes_to_read_only_points_and_bad_values_are_refused_and_change_nothing() {
        let mut u = Unit::new(&SimConfig::default(), 1);
        let before = u.regs.clone();
        let (start, w) = u.slot(103, "W");
        let addr = BASE + (start + w.offset as usize) as u16;
        assert_eq!(u.write(addr, &[1]), Err(ExceptionCode::IllegalDataAddress));
        let (start, lim) = u.slot(704, "WMaxLimPct");
        let addr = BASE + (start + lim.offset as usize) as u16;
        // 150.0 % at scale 10^-1.
        assert_eq!(u.write(addr, &[1500]), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(u.regs.len(), before.len());
        assert_eq!(u.get(704, "WMaxLimPct"), Some(100.0));
        assert_eq!(u.write(addr, &[500]), Ok(()));
        assert_eq!(u.get(704, "WMaxLimPct"), Some(50.0));
    }
}
