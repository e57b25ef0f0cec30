//! Builders the envelope modules' unit tests share.

use super::model::{Control, ControlModes};

/// A control of `program` created at `created`, in force from `start` for `dur` seconds,
/// not randomized and not cancelled.
pub fn ctl(
    id: &str,
    program: &str,
    created: i64,
    start: i64,
    dur: u32,
    modes: ControlModes,
) -> Control {
    Control {
        id: id.into(),
        program: program.into(),
        created,
        start,
        duration_s: dur,
        randomize_start_s: 0,
        randomize_duration_s: 0,
        modes,
        cancelled: None,
    }
}
