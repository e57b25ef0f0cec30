//! Device status as telemetry: what state a device is in, next to what it measures.
//!
//! A status is a category, not a quantity, yet operators ask of it what they ask of power:
//! what was it at 14:05, how long was the inverter in fault last week, which chargers are
//! off the grid now. So statuses are stored as readings like any other, under the state
//! measurands ([`Measurand::OperatingState`], [`Measurand::GridConnected`],
//! [`Measurand::StorageState`]), with the state's code below as the value. The codes are
//! the engine's own, fixed and documented; each protocol maps its vocabulary onto them at
//! the edge (SunSpec `InvSt`/`St`/`ChaSt` symbols, MQTT names), so a fault means the same
//! whichever way it arrived.
//!
//! A state reading whose value is not one of its measurand's codes is refused
//! ([`check_code`]): a stored status must always name a state.

use super::Measurand;
use crate::domain::string_enum;

string_enum!(
    /// What a device (an inverter, a charger, a battery's power stage) is doing.
    OperatingState, "operating_state", {
        /// Not operating, not ready to.
        Off => "off",
        /// Idle for lack of a resource (no sun), wakes by itself.
        Sleeping => "sleeping",
        /// Starting up, not yet delivering.
        Starting => "starting",
        /// Operating normally (an inverter tracking its maximum power point).
        Running => "running",
        /// Operating below what it could, by a limit or its own derating.
        Throttled => "throttled",
        /// Shutting down.
        ShuttingDown => "shutting_down",
        /// Stopped by a fault.
        Fault => "fault",
        /// Ready, waiting for a command or a condition.
        Standby => "standby",
    }
);

string_enum!(
    /// What a storage device's energy is doing.
    StorageState, "storage_state", {
        /// The storage is switched off.
        Off => "off",
        /// At its lower limit: cannot discharge.
        Empty => "empty",
        Discharging => "discharging",
        Charging => "charging",
        /// At its upper limit: cannot charge.
        Full => "full",
        /// Neither charging nor discharging, by command.
        Holding => "holding",
        /// Running a test.
        Testing => "testing",
    }
);

impl OperatingState {
    /// The stored code: 1 (`off`) to 8 (`standby`), in declaration order.
    pub fn code(self) -> f64 {
        code_of(Self::ALL, self)
    }

    /// The state a stored code names.
    pub fn from_code(v: f64) -> Option<OperatingState> {
        from_code(Self::ALL, v)
    }
}

impl StorageState {
    /// The stored code: 1 (`off`) to 7 (`testing`), in declaration order.
    pub fn code(self) -> f64 {
        code_of(Self::ALL, self)
    }

    /// The state a stored code names.
    pub fn from_code(v: f64) -> Option<StorageState> {
        from_code(Self::ALL, v)
    }
}

/// The stored value of "connected to the grid" (1) or "disconnected" (0).
pub fn connected_code(connected: bool) -> f64 {
    if connected { 1.0 } else { 0.0 }
}

// Codes are positions + 1 so that 0 is never a valid operating or storage state: a device
// that sends a zeroed register is refused rather than read as "off".
fn code_of<T: PartialEq + Copy>(all: &[T], v: T) -> f64 {
    (all.iter()
        .position(|x| *x == v)
        .expect("a variant is in ALL")
        + 1) as f64
}

fn from_code<T: Copy>(all: &[T], v: f64) -> Option<T> {
    if v.fract() != 0.0 || v < 1.0 {
        return None;
    }
    all.get(v as usize - 1).copied()
}

/// Each state of a state measurand with its code, in code order; empty for a quantity.
pub fn states(measurand: Measurand) -> Vec<(f64, &'static str)> {
    match measurand {
        Measurand::OperatingState => OperatingState::ALL
            .iter()
            .map(|s| (s.code(), s.as_str()))
            .collect(),
        Measurand::StorageState => StorageState::ALL
            .iter()
            .map(|s| (s.code(), s.as_str()))
            .collect(),
        Measurand::GridConnected => vec![(0.0, "disconnected"), (1.0, "connected")],
        _ => Vec::new(),
    }
}

/// The state names of a state measurand, in code order; empty for a quantity.
pub fn state_names(measurand: Measurand) -> Vec<&'static str> {
    states(measurand)
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

/// The name of the state `value` codes for `measurand`; `None` for a measurand that is not
/// a state or a value that is not one of its codes.
pub fn state_name(measurand: Measurand, value: f64) -> Option<&'static str> {
    states(measurand)
        .into_iter()
        .find(|(code, _)| *code == value)
        .map(|(_, name)| name)
}

/// The codes a state measurand accepts, for error messages (`1 off, 2 sleeping, ...`).
pub fn expected_codes(measurand: Measurand) -> String {
    let codes: Vec<String> = states(measurand)
        .iter()
        .map(|(code, name)| format!("{code} {name}"))
        .collect();
    if codes.is_empty() {
        "a number".to_string()
    } else {
        codes.join(", ")
    }
}

/// Checks that a state measurand's value is one of its codes; any value passes for the
/// other measurands.
pub fn check_code(measurand: Measurand, value: f64) -> bool {
    !measurand.is_state() || state_name(measurand, value).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_start_at_one() {
        for s in OperatingState::ALL {
            assert_eq!(OperatingState::from_code(s.code()), Some(*s));
        }
        for s in StorageState::ALL {
            assert_eq!(StorageState::from_code(s.code()), Some(*s));
        }
        assert_eq!(OperatingState::Off.code(), 1.0);
        assert_eq!(OperatingState::Fault.code(), 7.0);
        assert_eq!(StorageState::Charging.code(), 4.0);
        assert_eq!(OperatingState::from_code(0.0), None);
        assert_eq!(OperatingState::from_code(9.0), None);
        assert_eq!(OperatingState::from_code(4.5), None);
        assert_eq!(OperatingState::from_code(-1.0), None);
    }

    #[test]
    fn only_state_measurands_are_checked() {
        assert!(check_code(Measurand::OperatingState, 7.0));
        assert!(!check_code(Measurand::OperatingState, 0.0));
        assert!(check_code(Measurand::GridConnected, 0.0));
        assert!(!check_code(Measurand::GridConnected, 0.5));
        assert!(!check_code(Measurand::StorageState, 8.0));
        assert!(check_code(Measurand::ActivePower, -0.5));
        assert_eq!(
            state_name(Measurand::StorageState, 3.0),
            Some("discharging")
        );
        assert_eq!(state_name(Measurand::GridConnected, 1.0), Some("connected"));
    }
}
