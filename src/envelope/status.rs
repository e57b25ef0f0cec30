//! Event rules: when a control is scheduled, active, superseded, cancelled or over, and the
//! interval during which it actually constrains a device.
//!
//! The rules, as this engine applies them (IEEE 2030.5 event rules, in our words):
//!
//! - **Effective window.** A control applies to a device from its randomized start until its
//!   randomized end (see [`effective_window`]). Each device (or site) has its own window.
//! - **Cancellation.** An operator can cancel (or delete) a control; it stays visible, with
//!   status Cancelled (2), or Cancelled with Randomization (3) when the cancellation asks
//!   devices to end at a random moment. The status changes at the cancellation instant
//!   [`Cancellation::at`](super::Cancellation::at); before it the control has its ordinary status. A device that was
//!   already running the control when a randomized cancellation arrived keeps it until a
//!   per-device delay, drawn in `0..=max(|randomizeStart|, |randomizeDuration|)`, has
//!   passed; a device that had not started it yet never starts it.
//! - **Superseding.** Within one program, a control is superseded by a *newer* control
//!   (later `created`; on a tie the larger id) of the same program when their effective
//!   windows overlap and both set at least one common mode. It becomes Superseded (4) from
//!   the instant the newer one takes effect (the newer one's effective start). Before that
//!   instant it keeps its own status, so a control already running stays Active until the
//!   newer one starts, and only then becomes Superseded; once superseded it stays so (it
//!   does not come back when the newer one ends). Controls of different programs never
//!   supersede one another; primacy arbitrates between them instead (see
//!   [`limits_in_force`](super::limits_in_force)).
//! - **Only controls that take effect supersede.** A newer control that never takes effect
//!   (cancelled, or itself superseded, at or before its own effective start) supersedes
//!   nothing. This makes "publish a replacement, then delete it before it starts" restore
//!   the original, and the answer for a time never depends on controls that never ran.
//! - **Scheduled / Active.** A control is Scheduled before it starts and Active from then
//!   until its effective end. 2030.5 forbids reporting Scheduled once the scheduled start
//!   has passed, so status becomes Active at the earlier of the scheduled start and the
//!   effective start. The device is constrained only from its effective start; the two
//!   differ when randomizeStart is positive.
//! - **Completed.** When the effective window has passed (and the control was neither
//!   cancelled nor superseded), it is complete. 2030.5 has no status code for that, so
//!   [`Lifecycle::Completed`] maps to no [`EventStatus`] and [`event_status`] returns `None`;
//!   the adapter decides whether to drop it from lists or serve its last status.
//!
//! The engine answers with everything it knows now: a control counts at time `t` even if it
//! was created after `t`. It does not replay history.

use super::model::{Control, EventStatus};
use super::randomize::{Window, effective_window, offsets};
use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Where a control stands at an instant, including the "completed" state 2030.5 has no code
/// for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Announced, not yet started.
    Scheduled,
    /// Started and not yet over.
    Active,
    /// Its effective window has passed without cancellation or superseding.
    Completed,
    /// Cancelled or deleted by the operator.
    Cancelled { randomized: bool },
    /// Replaced by a newer overlapping control of the same program.
    Superseded,
}

impl Lifecycle {
    /// The 2030.5 status code for this state; `None` for [`Lifecycle::Completed`].
    pub fn event_status(self) -> Option<EventStatus> {
        match self {
            Lifecycle::Scheduled => Some(EventStatus::Scheduled),
            Lifecycle::Active => Some(EventStatus::Active),
            Lifecycle::Completed => None,
            Lifecycle::Cancelled { randomized: false } => Some(EventStatus::Cancelled),
            Lifecycle::Cancelled { randomized: true } => {
                Some(EventStatus::CancelledWithRandomization)
            }
            Lifecycle::Superseded => Some(EventStatus::Superseded),
        }
    }

    /// Whether the control has run its course.
    pub fn is_completed(self) -> bool {
        self == Lifecycle::Completed
    }
}

/// Everything the event rules decide about one control for one device/site key.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlTimeline<'a> {
    pub control: &'a Control,
    /// The effective window for this key.
    pub window: Window,
    /// When a newer control of the same program superseded this one, if any did.
    pub superseded_at: Option<EpochSeconds>,
    /// The interval during which this control constrains the device: its effective window,
    /// cut short by superseding or cancellation. `None` when it never takes effect.
    pub in_force: Option<Window>,
}

impl ControlTimeline<'_> {
    /// The control's state at `t`.
    pub fn lifecycle(&self, t: EpochSeconds) -> Lifecycle {
        if let Some(c) = self.control.cancelled
            && t >= c.at
        {
            return Lifecycle::Cancelled {
                randomized: c.randomized,
            };
        }
        if self.superseded_at.is_some_and(|s| t >= s) {
            return Lifecycle::Superseded;
        }
        if t < self.control.start.min(self.window.start) {
            Lifecycle::Scheduled
        } else if t < self.window.end {
            Lifecycle::Active
        } else {
            Lifecycle::Completed
        }
    }

    /// Whether the control constrains the device at `t`.
    pub fn in_force_at(&self, t: EpochSeconds) -> bool {
        self.in_force.is_some_and(|w| w.contains(t))
    }

    /// The first instant after `t` at which [`lifecycle`](Self::lifecycle) or
    /// [`in_force_at`](Self::in_force_at) may change, if any: for caching a served status.
    pub fn next_transition(&self, t: EpochSeconds) -> Option<EpochSeconds> {
        let mut candidates = vec![self.control.start.min(self.window.start), self.window.end];
        candidates.extend(self.superseded_at);
        candidates.extend(self.control.cancelled.map(|c| c.at));
        if let Some(w) = self.in_force {
            candidates.extend([w.start, w.end]);
        }
        candidates.into_iter().filter(|&x| x > t).min()
    }
}

/// Orders controls by age: `Greater` when `a` is newer than `b` (later creation time, then
/// larger id).
pub fn newness(a: &Control, b: &Control) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id))
}

/// Applies the event rules to a set of controls for one device/site key. Superseding is
/// worked out within each program only, so controls of several programs may be passed
/// together. The result is in the input order.
///
/// Cost is quadratic in the number of controls of one program.
pub fn timelines<'a>(controls: &'a [Control], key: &str, seed: u64) -> Vec<ControlTimeline<'a>> {
    let windows: Vec<Window> = controls
        .iter()
        .map(|c| effective_window(c, key, seed))
        .collect();
    // Newest first: whether a control takes effect depends only on newer controls, so one
    // pass in this order settles every control after all those that could supersede it.
    let mut order: Vec<usize> = (0..controls.len()).collect();
    order.sort_by(|&a, &b| newness(&controls[b], &controls[a]));

    let mut superseded_at: Vec<Option<EpochSeconds>> = vec![None; controls.len()];
    let mut in_force: Vec<Option<Window>> = vec![None; controls.len()];
    for (pos, &i) in order.iter().enumerate() {
        let older = &controls[i];
        let mut sup: Option<EpochSeconds> = None;
        for &j in &order[..pos] {
            let newer = &controls[j];
            let supersedes = in_force[j].is_some()
                && newer.program == older.program
                && newness(newer, older) == Ordering::Greater
                && windows[j].overlaps(&windows[i])
                && newer.modes.shares_mode_with(&older.modes);
            if supersedes {
                let at = windows[j].start;
                sup = Some(sup.map_or(at, |s| s.min(at)));
            }
        }
        superseded_at[i] = sup;
        in_force[i] = in_force_window(older, windows[i], sup, key, seed);
    }

    controls
        .iter()
        .zip(windows)
        .zip(superseded_at.into_iter().zip(in_force))
        .map(
            |((control, window), (superseded_at, in_force))| ControlTimeline {
                control,
                window,
                superseded_at,
                in_force,
            },
        )
        .collect()
}

/// The effective window cut short by superseding and cancellation; `None` if empty.
fn in_force_window(
    control: &Control,
    window: Window,
    superseded_at: Option<EpochSeconds>,
    key: &str,
    seed: u64,
) -> Option<Window> {
    let mut end = window.end;
    if let Some(s) = superseded_at {
        end = end.min(s);
    }
    if let Some(c) = control.cancelled {
        let stop = if c.randomized && window.start < c.at {
            // Running (or due to run) when cancelled: this device lets go after its delay.
            c.at.saturating_add(offsets(control, key, seed).cancel_delay_s)
        } else {
            c.at
        };
        end = end.min(stop);
    }
    let w = Window {
        start: window.start,
        end,
    };
    (!w.is_empty()).then_some(w)
}

/// The full state of `control` at `now` for the device/site `key`, given the other controls
/// of its program (`program_controls` may include `control` itself and controls of other
/// programs; both are ignored for superseding).
pub fn lifecycle(
    control: &Control,
    program_controls: &[Control],
    key: &str,
    seed: u64,
    now: EpochSeconds,
) -> Lifecycle {
    let mut set: Vec<Control> = program_controls
        .iter()
        .filter(|c| c.program == control.program && c.id != control.id)
        .cloned()
        .collect();
    set.push(control.clone());
    let timelines = timelines(&set, key, seed);
    // The control was pushed last, so its timeline is the last one.
    timelines
        .last()
        .map_or(Lifecycle::Scheduled, |tl| tl.lifecycle(now))
}

/// The IEEE 2030.5 status of `control` at `now` for `key` (see the module rules), or `None`
/// once it has completed, a state 2030.5 has no code for. Use [`lifecycle`] to tell
/// completion apart explicitly, or [`timelines`] to evaluate a whole list at once.
pub fn event_status(
    control: &Control,
    program_controls: &[Control],
    key: &str,
    seed: u64,
    now: EpochSeconds,
) -> Option<EventStatus> {
    lifecycle(control, program_controls, key, seed, now).event_status()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::model::{Cancellation, ControlModes};
    use crate::envelope::testing::ctl;

    fn exp(v: f64) -> ControlModes {
        ControlModes {
            exp_lim_w: Some(v),
            ..Default::default()
        }
    }

    fn status(c: &Control, all: &[Control], t: i64) -> Option<EventStatus> {
        event_status(c, all, "site", 0, t)
    }

    #[test]
    fn scheduled_active_then_completed() {
        let c = ctl("a", "p", 0, 100, 50, exp(1.0));
        let all = [c.clone()];
        assert_eq!(status(&c, &all, 99), Some(EventStatus::Scheduled));
        assert_eq!(status(&c, &all, 100), Some(EventStatus::Active));
        assert_eq!(status(&c, &all, 149), Some(EventStatus::Active));
        assert_eq!(status(&c, &all, 150), None);
        assert!(lifecycle(&c, &all, "site", 0, 150).is_completed());
        assert!(!lifecycle(&c, &all, "site", 0, 149).is_completed());
    }

    #[test]
    fn cancelled_controls_stay_visible_as_cancelled() {
        let mut c = ctl("a", "p", 0, 100, 50, exp(1.0));
        c.cancelled = Some(Cancellation {
            at: 120,
            randomized: false,
        });
        let all = [c.clone()];
        assert_eq!(status(&c, &all, 110), Some(EventStatus::Active));
        assert_eq!(status(&c, &all, 120), Some(EventStatus::Cancelled));
        // Long after its window it is still reported as cancelled, never completed.
        assert_eq!(status(&c, &all, 10_000), Some(EventStatus::Cancelled));
        c.cancelled = Some(Cancellation {
            at: 120,
            randomized: true,
        });
        assert_eq!(
            status(&c, &[], 130),
            Some(EventStatus::CancelledWithRandomization)
        );
        assert_eq!(EventStatus::CancelledWithRandomization.code(), 3);
    }

    #[test]
    fn a_newer_overlapping_control_supersedes_from_its_start() {
        let old = ctl("a", "p", 0, 100, 100, exp(5000.0));
        let new = ctl("b", "p", 10, 150, 100, exp(3000.0));
        let all = [old.clone(), new.clone()];
        assert_eq!(status(&old, &all, 120), Some(EventStatus::Active));
        assert_eq!(status(&old, &all, 149), Some(EventStatus::Active));
        assert_eq!(status(&old, &all, 150), Some(EventStatus::Superseded));
        assert_eq!(status(&old, &all, 500), Some(EventStatus::Superseded));
        assert_eq!(status(&new, &all, 150), Some(EventStatus::Active));
        // Before the older one even starts, a newer one that starts earlier supersedes it
        // while it is still scheduled.
        let earlier = ctl("c", "p", 20, 50, 100, exp(1.0));
        let all = [old.clone(), earlier];
        assert_eq!(status(&old, &all, 49), Some(EventStatus::Scheduled));
        assert_eq!(status(&old, &all, 50), Some(EventStatus::Superseded));
    }

    #[test]
    fn creation_ties_are_broken_by_id() {
        let a = ctl("a", "p", 5, 100, 100, exp(1.0));
        let b = ctl("b", "p", 5, 100, 100, exp(2.0));
        let all = [a.clone(), b.clone()];
        assert_eq!(status(&a, &all, 100), Some(EventStatus::Superseded));
        assert_eq!(status(&b, &all, 100), Some(EventStatus::Active));
    }

    #[test]
    fn no_superseding_without_overlap_or_common_mode_or_across_programs() {
        let old = ctl("a", "p", 0, 100, 100, exp(5000.0));
        // Back to back: touches, does not overlap.
        let next = ctl("b", "p", 10, 200, 100, exp(1.0));
        // Overlaps but sets another mode.
        let other_mode = ctl(
            "c",
            "p",
            10,
            150,
            100,
            ControlModes {
                imp_lim_w: Some(1.0),
                ..Default::default()
            },
        );
        // Overlaps with the same mode, but in another program.
        let other_program = ctl("d", "q", 10, 150, 100, exp(1.0));
        let all = [old.clone(), next, other_mode, other_program];
        assert_eq!(status(&old, &all, 199), Some(EventStatus::Active));
        assert_eq!(status(&old, &all, 200), None);
    }

    #[test]
    fn an_older_control_never_supersedes_a_newer_one() {
        let new = ctl("b", "p", 10, 100, 100, exp(1.0));
        let old = ctl("a", "p", 0, 150, 100, exp(2.0));
        let all = [old.clone(), new.clone()];
        assert_eq!(status(&new, &all, 160), Some(EventStatus::Active));
        assert_eq!(status(&old, &all, 99), Some(EventStatus::Scheduled));
        assert_eq!(status(&old, &all, 100), Some(EventStatus::Superseded));
    }

    #[test]
    fn a_replacement_deleted_before_it_starts_supersedes_nothing() {
        let old = ctl("a", "p", 0, 100, 100, exp(5000.0));
        let mut new = ctl("b", "p", 10, 150, 100, exp(3000.0));
        new.cancelled = Some(Cancellation {
            at: 140,
            randomized: false,
        });
        let all = [old.clone(), new.clone()];
        assert_eq!(status(&old, &all, 160), Some(EventStatus::Active));
        assert_eq!(status(&new, &all, 160), Some(EventStatus::Cancelled));
        // Deleted after it had started: the older one stays superseded.
        new.cancelled = Some(Cancellation {
            at: 170,
            randomized: false,
        });
        let all = [old.clone(), new];
        assert_eq!(status(&old, &all, 160), Some(EventStatus::Superseded));
        assert_eq!(status(&old, &all, 180), Some(EventStatus::Superseded));
    }

    #[test]
    fn a_control_superseded_before_it_starts_supersedes_nothing() {
        // a [50,100) oldest; b [0,150) newer; c [0,10) newest. c supersedes b at b's own
        // start, so b never runs, and a (which c does not overlap) is left in force.
        let a = ctl("a", "p", 0, 50, 50, exp(1.0));
        let b = ctl("b", "p", 1, 0, 150, exp(2.0));
        let c = ctl("c", "p", 2, 0, 10, exp(3.0));
        let all = [a.clone(), b.clone(), c.clone()];
        assert_eq!(status(&b, &all, 0), Some(EventStatus::Superseded));
        assert_eq!(status(&a, &all, 60), Some(EventStatus::Active));
        let tl = timelines(&all, "site", 0);
        assert_eq!(tl[1].in_force, None);
        assert_eq!(tl[2].in_force, Some(Window { start: 0, end: 10 }));
    }

    #[test]
    fn status_is_active_once_the_scheduled_start_passes_even_if_randomized_later() {
        let mut c = ctl("a", "p", 0, 1000, 600, exp(1.0));
        c.randomize_start_s = 300;
        // Find a key whose start is drawn late.
        let (key, w) = (0..100)
            .map(|i| format!("k{i}"))
            .map(|k| {
                let w = effective_window(&c, &k, 0);
                (k, w)
            })
            .find(|(_, w)| w.start > 1000)
            .expect("some key draws a positive offset");
        let all = [c.clone()];
        assert_eq!(
            event_status(&c, &all, &key, 0, 999),
            Some(EventStatus::Scheduled)
        );
        assert_eq!(
            event_status(&c, &all, &key, 0, 1000),
            Some(EventStatus::Active)
        );
        let tl = &timelines(&all, &key, 0)[0];
        assert!(!tl.in_force_at(1000), "not yet constraining the device");
        assert!(tl.in_force_at(w.start));
    }

    #[test]
    fn randomized_cancellation_lets_running_devices_finish_within_the_delay() {
        let mut c = ctl("a", "p", 0, 1000, 3600, exp(1.0));
        c.randomize_start_s = 0;
        c.randomize_duration_s = 600;
        c.cancelled = Some(Cancellation {
            at: 2000,
            randomized: true,
        });
        let all = [c.clone()];
        let mut ends = std::collections::BTreeSet::new();
        for i in 0..100 {
            let tl = &timelines(&all, &format!("d{i}"), 9)[0];
            let w = tl.in_force.expect("was running when cancelled");
            assert!((2000..=2600).contains(&w.end), "{w:?}");
            ends.insert(w.end);
        }
        assert!(ends.len() > 50, "devices end at spread-out instants");
        // A device that had not started when the cancellation arrived never starts.
        let mut later = c.clone();
        later.start = 5000;
        let tl = &timelines(std::slice::from_ref(&later), "d1", 9)[0];
        assert_eq!(tl.in_force, None);
    }

    #[test]
    fn next_transition_lists_status_changes() {
        let old = ctl("a", "p", 0, 100, 100, exp(5000.0));
        let new = ctl("b", "p", 10, 150, 100, exp(3000.0));
        let all = [old, new];
        let tl = timelines(&all, "site", 0);
        assert_eq!(tl[0].next_transition(0), Some(100));
        assert_eq!(tl[0].next_transition(100), Some(150));
        assert_eq!(tl[0].next_transition(150), Some(200));
        assert_eq!(tl[0].next_transition(200), None);
    }
}
