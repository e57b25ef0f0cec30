//! Resolution: which limits and set points are in force for one site or device at one
//! instant, and where each comes from.
//!
//! The rules (the event rules of [`status`](super::status) decide which controls are in
//! force; these decide how their modes combine):
//!
//! - **Ranking.** A control outranks another when its program has the lower primacy value;
//!   within one primacy the newer control (later `created`, then larger id) outranks the
//!   older. A program missing from the `programs` list ranks below every listed one.
//! - **Limits** (max_lim_w, imp_lim_w, exp_lim_w, gen_lim_w, load_lim_w): the smallest value
//!   among the in-force controls holds, whatever their rank, because every party's limit must
//!   be respected at once. On equal values the higher-ranked control is named as the source.
//! - **Reserve** (min_wh): the largest value holds, for the same reason.
//! - **Connect / energize**: `false` from any in-force control wins, since keeping a device off
//!   the grid when one party asks for it is the safe outcome.
//! - **Set points** (fixed_w, target_w, storage_target_w, fixed_pf_inject, set_grad_w): they
//!   cannot be merged, so the highest-ranked in-force control that sets the mode decides.
//! - **Defaults.** A mode that no in-force control sets is taken from the default controls,
//!   combined by the same rules. Defaults have no creation time, so between two defaults of
//!   equal primacy the smaller program id ranks first, and within one program the earlier
//!   one in the slice (2030.5 has one default per program). A mode set by an in-force control
//!   ignores the defaults entirely: an envelope may loosen a default as well as tighten it.

use super::model::{
    Combine, Control, ControlId, ControlModes, DefaultControl, Mode, PowerFactor, Program,
    ProgramId,
};
use super::status::{newness, timelines};
use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// An in-force control.
    Control { id: ControlId, program: ProgramId },
    /// A program's default control.
    Default { program: ProgramId },
}

/// A resolved value and its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The answer to "what is in force for this site/device at this instant". Each mode is
/// `None` when neither an in-force control nor a default sets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InForce {
    /// The instant this answer is for.
    pub at: EpochSeconds,
    pub connect: Option<Sourced<bool>>,
    pub energize: Option<Sourced<bool>>,
    pub max_lim_w: Option<Sourced<f64>>,
    pub fixed_w: Option<Sourced<f64>>,
    pub target_w: Option<Sourced<f64>>,
    pub fixed_pf_inject: Option<Sourced<PowerFactor>>,
    pub set_grad_w: Option<Sourced<f64>>,
    pub imp_lim_w: Option<Sourced<f64>>,
    pub exp_lim_w: Option<Sourced<f64>>,
    pub gen_lim_w: Option<Sourced<f64>>,
    pub load_lim_w: Option<Sourced<f64>>,
    pub storage_target_w: Option<Sourced<f64>>,
    pub min_wh: Option<Sourced<f64>>,
    /// The next instant after `at` at which this answer may change (a control starting or
    /// ceasing to be in force), or `None` if nothing known will change it. The answer is the
    /// same for every instant in `[at, next_change)`, so callers may cache it until then.
    pub next_change: Option<EpochSeconds>,
}

impl InForce {
    /// The resolved values alone, as a [`ControlModes`].
    pub fn modes(&self) -> ControlModes {
        fn v<T: Copy>(s: &Option<Sourced<T>>) -> Option<T> {
            s.as_ref().map(|s| s.value)
        }
        ControlModes {
            connect: v(&self.connect),
            energize: v(&self.energize),
            max_lim_w: v(&self.max_lim_w),
            fixed_w: v(&self.fixed_w),
            target_w: v(&self.target_w),
            fixed_pf_inject: v(&self.fixed_pf_inject),
            set_grad_w: v(&self.set_grad_w),
            imp_lim_w: v(&self.imp_lim_w),
            exp_lim_w: v(&self.exp_lim_w),
            gen_lim_w: v(&self.gen_lim_w),
            load_lim_w: v(&self.load_lim_w),
            storage_target_w: v(&self.storage_target_w),
            min_wh: v(&self.min_wh),
            // A ramp belongs to the control that asked for it, not to the resolved limits.
            ramp_s: None,
            // Curves are carried to devices, not resolved into limits.
            curves: Default::default(),
        }
    }

    /// The source of one mode's value, if the mode is set.
    pub fn source(&self, mode: Mode) -> Option<&Source> {
        fn s<T>(x: &Option<Sourced<T>>) -> Option<&Source> {
            x.as_ref().map(|x| &x.source)
        }
        match mode {
            Mode::Connect => s(&self.connect),
            Mode::Energize => s(&self.energize),
            Mode::MaxLimW => s(&self.max_lim_w),
            Mode::FixedW => s(&self.fixed_w),
            Mode::TargetW => s(&self.target_w),
            Mode::FixedPfInject => s(&self.fixed_pf_inject),
            Mode::SetGradW => s(&self.set_grad_w),
            Mode::ImpLimW => s(&self.imp_lim_w),
            Mode::ExpLimW => s(&self.exp_lim_w),
            Mode::GenLimW => s(&self.gen_lim_w),
            Mode::LoadLimW => s(&self.load_lim_w),
            Mode::StorageTargetW => s(&self.storage_target_w),
            Mode::MinWh => s(&self.min_wh),
        }
    }
}

/// A value type that can be combined under a [`Combine`] rule.
trait Combinable: Copy {
    /// Whether `a` should replace `b` as the current choice, on value alone. Sources are
    /// visited best-ranked first, so returning `false` on a tie keeps the better-ranked one.
    fn replaces(rule: Combine, a: &Self, b: &Self) -> bool;
}

impl Combinable for f64 {
    fn replaces(rule: Combine, a: &f64, b: &f64) -> bool {
        // total_cmp keeps the order total (and deterministic) even if an unvalidated NaN
        // slips in; validated inputs are finite.
        match rule {
            Combine::Minimum => a.total_cmp(b) == Ordering::Less,
            Combine::Maximum => a.total_cmp(b) == Ordering::Greater,
            Combine::FalseWins | Combine::Winner => false,
        }
    }
}

impl Combinable for bool {
    fn replaces(rule: Combine, a: &bool, b: &bool) -> bool {
        rule == Combine::FalseWins && !*a && *b
    }
}

impl Combinable for PowerFactor {
    fn replaces(_: Combine, _: &PowerFactor, _: &PowerFactor) -> bool {
        false
    }
}

/// A candidate source, borrowed until it is chosen.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    Control(&'a Control),
    Default(&'a DefaultControl),
}

impl Candidate<'_> {
    fn modes(&self) -> &ControlModes {
        match self {
            Candidate::Control(c) => &c.modes,
            Candidate::Default(d) => &d.modes,
        }
    }

    fn source(&self) -> Source {
        match self {
            Candidate::Control(c) => Source::Control {
                id: c.id.clone(),
                program: c.program.clone(),
            },
            Candidate::Default(d) => Source::Default {
                program: d.program.clone(),
            },
        }
    }
}

/// Picks the value of one mode from ranked candidates (best first): in-force controls
/// first, and the defaults only if no control sets the mode.
fn pick<T: Combinable>(
    mode: Mode,
    controls: &[Candidate<'_>],
    defaults: &[Candidate<'_>],
    get: impl Fn(&ControlModes) -> Option<T>,
) -> Option<Sourced<T>> {
    let choose = |cands: &[Candidate<'_>]| {
        let mut best: Option<(T, Candidate<'_>)> = None;
        for cand in cands {
            if let Some(v) = get(cand.modes()) {
                match &best {
                    Some((b, _)) if !T::replaces(mode.combine(), &v, b) => {}
                    _ => best = Some((v, *cand)),
                }
            }
        }
        best.map(|(value, cand)| Sourced {
            value,
            source: cand.source(),
        })
    };
    choose(controls).or_else(|| choose(defaults))
}

/// Which limits and set points are in force for the site or device `key` at `t`.
///
/// `controls` must hold only the controls applicable to that site/device (the caller
/// resolves targeting), of any programs, including cancelled and past ones: the event rules
/// (see [`status`](super::status)) decide which are in force at `t` for this key, and those
/// alone are combined (see the module documentation for the rules). `defaults` are the
/// default controls of the applicable programs; `programs` supplies primacies. Randomized
/// windows are drawn from (control id, `key`, `seed`).
///
/// Inputs are assumed validated ([`Control::validate`]); the function never fails.
pub fn limits_in_force(
    programs: &[Program],
    controls: &[Control],
    defaults: &[DefaultControl],
    key: &str,
    seed: u64,
    t: EpochSeconds,
) -> InForce {
    // The first listed entry of a program decides its primacy; unknown programs rank last.
    let rank = |p: &ProgramId| -> u16 {
        programs
            .iter()
            .find(|x| &x.id == p)
            .map_or(u16::from(u8::MAX) + 1, |x| u16::from(x.primacy))
    };

    let tls = timelines(controls, key, seed);
    let mut active: Vec<&Control> = tls
        .iter()
        .filter(|tl| tl.in_force_at(t))
        .map(|tl| tl.control)
        .collect();
    active.sort_by(|a, b| {
        rank(&a.program)
            .cmp(&rank(&b.program))
            .then_with(|| newness(b, a))
    });
    let active: Vec<Candidate<'_>> = active.into_iter().map(Candidate::Control).collect();

    // Sorting is stable, so within one program the slice order survives.
    let mut defs: Vec<&DefaultControl> = defaults.iter().collect();
    defs.sort_by(|a, b| {
        rank(&a.program)
            .cmp(&rank(&b.program))
            .then_with(|| a.program.cmp(&b.program))
    });
    let defs: Vec<Candidate<'_>> = defs.into_iter().map(Candidate::Default).collect();

    let next_change = tls
        .iter()
        .filter_map(|tl| tl.in_force)
        .flat_map(|w| [w.start, w.end])
        .filter(|&x| x > t)
        .min();

    let (a, d) = (active.as_slice(), defs.as_slice());
    InForce {
        at: t,
        connect: pick(Mode::Connect, a, d, |m| m.connect),
        energize: pick(Mode::Energize, a, d, |m| m.energize),
        max_lim_w: pick(Mode::MaxLimW, a, d, |m| m.max_lim_w),
        fixed_w: pick(Mode::FixedW, a, d, |m| m.fixed_w),
        target_w: pick(Mode::TargetW, a, d, |m| m.target_w),
        fixed_pf_inject: pick(Mode::FixedPfInject, a, d, |m| m.fixed_pf_inject),
        set_grad_w: pick(Mode::SetGradW, a, d, |m| m.set_grad_w),
        imp_lim_w: pick(Mode::ImpLimW, a, d, |m| m.imp_lim_w),
        exp_lim_w: pick(Mode::ExpLimW, a, d, |m| m.exp_lim_w),
        gen_lim_w: pick(Mode::GenLimW, a, d, |m| m.gen_lim_w),
        load_lim_w: pick(Mode::LoadLimW, a, d, |m| m.load_lim_w),
        storage_target_w: pick(Mode::StorageTargetW, a, d, |m| m.storage_target_w),
        min_wh: pick(Mode::MinWh, a, d, |m| m.min_wh),
        next_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::model::{Cancellation, Excitation};
    use crate::envelope::testing::ctl;

    fn prog(id: &str, primacy: u8) -> Program {
        Program {
            id: id.into(),
            primacy,
        }
    }

    fn modes(f: impl FnOnce(&mut ControlModes)) -> ControlModes {
        let mut m = ControlModes::default();
        f(&mut m);
        m
    }

    fn from_control(id: &str, program: &str) -> Source {
        Source::Control {
            id: id.into(),
            program: program.into(),
        }
    }

    fn resolve(p: &[Program], c: &[Control], d: &[DefaultControl], t: i64) -> InForce {
        limits_in_force(p, c, d, "site-1", 0, t)
    }

    #[test]
    fn nothing_known_means_nothing_in_force() {
        let r = resolve(&[], &[], &[], 0);
        assert_eq!(r.modes(), ControlModes::default());
        assert_eq!(r.next_change, None);
        assert_eq!(r.at, 0);
    }

    #[test]
    fn defaults_apply_when_nothing_is_active() {
        let p = [prog("p", 1)];
        let d = [DefaultControl {
            program: "p".into(),
            modes: modes(|m| {
                m.exp_lim_w = Some(5000.0);
                m.connect = Some(true);
            }),
        }];
        let c = [ctl(
            "a",
            "p",
            0,
            100,
            100,
            modes(|m| m.exp_lim_w = Some(1500.0)),
        )];
        let before = resolve(&p, &c, &d, 50);
        assert_eq!(before.exp_lim_w.as_ref().map(|s| s.value), Some(5000.0));
        assert_eq!(
            before.source(Mode::ExpLimW),
            Some(&Source::Default {
                program: "p".into()
            })
        );
        assert_eq!(before.next_change, Some(100));
        let during = resolve(&p, &c, &d, 150);
        assert_eq!(during.exp_lim_w.as_ref().map(|s| s.value), Some(1500.0));
        assert_eq!(during.source(Mode::ExpLimW), Some(&from_control("a", "p")));
        // A mode the control does not set still comes from the default.
        assert_eq!(during.connect.as_ref().map(|s| s.value), Some(true));
        assert_eq!(during.next_change, Some(200));
        let after = resolve(&p, &c, &d, 200);
        assert_eq!(after.exp_lim_w.as_ref().map(|s| s.value), Some(5000.0));
        assert_eq!(after.next_change, None);
    }

    #[test]
    fn a_control_may_loosen_a_default() {
        let p = [prog("p", 1)];
        let d = [DefaultControl {
            program: "p".into(),
            modes: modes(|m| m.exp_lim_w = Some(1500.0)),
        }];
        let c = [ctl(
            "a",
            "p",
            0,
            0,
            100,
            modes(|m| m.exp_lim_w = Some(10_000.0)),
        )];
        let r = resolve(&p, &c, &d, 10);
        assert_eq!(r.exp_lim_w.map(|s| s.value), Some(10_000.0));
    }

    #[test]
    fn limits_take_the_most_restrictive_value_across_programs() {
        let p = [prog("network", 0), prog("market", 5)];
        let c = [
            ctl(
                "n1",
                "network",
                0,
                0,
                100,
                modes(|m| {
                    m.exp_lim_w = Some(5000.0);
                    m.imp_lim_w = Some(2000.0);
                    m.min_wh = Some(1000.0);
                }),
            ),
            ctl(
                "m1",
                "market",
                1,
                0,
                100,
                modes(|m| {
                    m.exp_lim_w = Some(3000.0);
                    m.imp_lim_w = Some(7000.0);
                    m.min_wh = Some(4000.0);
                }),
            ),
        ];
        let r = resolve(&p, &c, &[], 10);
        // The lower-priority program's tighter export limit still holds.
        assert_eq!(r.exp_lim_w.as_ref().map(|s| s.value), Some(3000.0));
        assert_eq!(r.source(Mode::ExpLimW), Some(&from_control("m1", "market")));
        assert_eq!(r.imp_lim_w.as_ref().map(|s| s.value), Some(2000.0));
        assert_eq!(
            r.source(Mode::ImpLimW),
            Some(&from_control("n1", "network"))
        );
        // The reserve takes the largest.
        assert_eq!(r.min_wh.as_ref().map(|s| s.value), Some(4000.0));
    }

    #[test]
    fn equal_limits_name_the_higher_ranked_source() {
        let p = [prog("network", 0), prog("market", 5)];
        let c = [
            ctl(
                "m1",
                "market",
                9,
                0,
                100,
                modes(|m| m.exp_lim_w = Some(3000.0)),
            ),
            ctl(
                "n1",
                "network",
                0,
                0,
                100,
                modes(|m| m.exp_lim_w = Some(3000.0)),
            ),
        ];
        let r = resolve(&p, &c, &[], 10);
        assert_eq!(
            r.source(Mode::ExpLimW),
            Some(&from_control("n1", "network"))
        );
    }

    #[test]
    fn set_points_come_from_the_lowest_primacy_then_the_newest() {
        let p = [prog("network", 0), prog("market", 5), prog("other", 5)];
        let c = [
            ctl(
                "m1",
                "market",
                100,
                0,
                100,
                modes(|m| m.fixed_w = Some(-2000.0)),
            ),
            ctl(
                "n1",
                "network",
                0,
                0,
                100,
                modes(|m| m.fixed_w = Some(1000.0)),
            ),
            ctl(
                "o1",
                "other",
                50,
                0,
                100,
                modes(|m| {
                    m.storage_target_w = Some(400.0);
                    m.set_grad_w = Some(10.0);
                }),
            ),
            ctl(
                "m2",
                "market",
                60,
                0,
                100,
                modes(|m| {
                    m.storage_target_w = Some(-400.0);
                    m.set_grad_w = Some(20.0);
                }),
            ),
        ];
        let r = resolve(&p, &c, &[], 10);
        assert_eq!(r.fixed_w.as_ref().map(|s| s.value), Some(1000.0));
        assert_eq!(r.source(Mode::FixedW), Some(&from_control("n1", "network")));
        // Same primacy, different programs: the newer control decides.
        assert_eq!(r.storage_target_w.as_ref().map(|s| s.value), Some(-400.0));
        assert_eq!(r.set_grad_w.as_ref().map(|s| s.value), Some(20.0));
        assert_eq!(
            r.source(Mode::StorageTargetW),
            Some(&from_control("m2", "market"))
        );
    }

    #[test]
    fn any_false_connect_or_energize_wins() {
        let p = [prog("a", 0), prog("b", 9)];
        let c = [
            ctl(
                "x",
                "a",
                0,
                0,
                100,
                modes(|m| {
                    m.connect = Some(true);
                    m.energize = Some(true);
                }),
            ),
            ctl("y", "b", 0, 0, 100, modes(|m| m.energize = Some(false))),
        ];
        let r = resolve(&p, &c, &[], 10);
        assert_eq!(r.connect.as_ref().map(|s| s.value), Some(true));
        assert_eq!(r.energize.as_ref().map(|s| s.value), Some(false));
        assert_eq!(r.source(Mode::Energize), Some(&from_control("y", "b")));
    }

    #[test]
    fn superseded_and_cancelled_controls_do_not_count() {
        let p = [prog("p", 1)];
        let mut cancelled = ctl("c", "p", 5, 0, 1000, modes(|m| m.gen_lim_w = Some(10.0)));
        cancelled.cancelled = Some(Cancellation {
            at: 50,
            randomized: false,
        });
        let c = [
            ctl("old", "p", 0, 0, 1000, modes(|m| m.exp_lim_w = Some(100.0))),
            ctl(
                "new",
                "p",
                1,
                200,
                1000,
                modes(|m| m.exp_lim_w = Some(900.0)),
            ),
            cancelled,
        ];
        let r = resolve(&p, &c, &[], 100);
        assert_eq!(r.exp_lim_w.as_ref().map(|s| s.value), Some(100.0));
        assert_eq!(r.gen_lim_w, None, "cancelled at 50");
        assert_eq!(r.next_change, Some(200));
        let r = resolve(&p, &c, &[], 300);
        // The newer, looser limit replaced the older one: superseding is not "most
        // restrictive", it is replacement within the program.
        assert_eq!(r.exp_lim_w.as_ref().map(|s| s.value), Some(900.0));
        assert_eq!(r.source(Mode::ExpLimW), Some(&from_control("new", "p")));
        // Before the cancellation the control counted.
        let r = resolve(&p, &c, &[], 10);
        assert_eq!(r.gen_lim_w.as_ref().map(|s| s.value), Some(10.0));
        assert_eq!(r.next_change, Some(50));
    }

    #[test]
    fn defaults_combine_by_the_same_rules() {
        let p = [prog("a", 0), prog("b", 1), prog("c", 1)];
        let d = [
            DefaultControl {
                program: "c".into(),
                modes: modes(|m| {
                    m.exp_lim_w = Some(4000.0);
                    m.fixed_pf_inject = Some(PowerFactor {
                        displacement: 0.9,
                        excitation: Excitation::UnderExcited,
                    });
                }),
            },
            DefaultControl {
                program: "b".into(),
                modes: modes(|m| {
                    m.exp_lim_w = Some(5000.0);
                    m.fixed_pf_inject = Some(PowerFactor {
                        displacement: 0.95,
                        excitation: Excitation::OverExcited,
                    });
                }),
            },
            DefaultControl {
                program: "a".into(),
                modes: modes(|m| m.energize = Some(true)),
            },
        ];
        let r = resolve(&p, &[], &d, 0);
        assert_eq!(r.exp_lim_w.as_ref().map(|s| s.value), Some(4000.0));
        assert_eq!(
            r.source(Mode::ExpLimW),
            Some(&Source::Default {
                program: "c".into()
            })
        );
        // Equal primacy: the smaller program id ranks first for set points.
        assert_eq!(
            r.fixed_pf_inject.as_ref().map(|s| s.value.displacement),
            Some(0.95)
        );
        assert_eq!(r.energize.as_ref().map(|s| s.value), Some(true));
    }

    #[test]
    fn unknown_programs_rank_last_but_their_limits_still_hold() {
        let p = [prog("known", 200)];
        let c = [
            ctl(
                "k",
                "known",
                0,
                0,
                100,
                modes(|m| {
                    m.target_w = Some(1.0);
                    m.exp_lim_w = Some(500.0);
                }),
            ),
            ctl(
                "u",
                "unknown",
                9,
                0,
                100,
                modes(|m| {
                    m.target_w = Some(2.0);
                    m.exp_lim_w = Some(100.0);
                }),
            ),
        ];
        let r = resolve(&p, &c, &[], 10);
        assert_eq!(r.target_w.as_ref().map(|s| s.value), Some(1.0));
        assert_eq!(r.exp_lim_w.as_ref().map(|s| s.value), Some(100.0));
    }

    #[test]
    fn next_change_tracks_starts_and_ends() {
        let p = [prog("p", 1)];
        let c = [
            ctl("a", "p", 0, 100, 100, modes(|m| m.exp_lim_w = Some(1.0))),
            ctl("b", "p", 1, 150, 100, modes(|m| m.imp_lim_w = Some(1.0))),
            ctl("z", "p", 2, 5000, 100, modes(|m| m.imp_lim_w = Some(1.0))),
        ];
        let at = |t| resolve(&p, &c, &[], t).next_change;
        assert_eq!(at(0), Some(100));
        assert_eq!(at(100), Some(150));
        assert_eq!(at(160), Some(200));
        assert_eq!(at(200), Some(250));
        assert_eq!(at(250), Some(5000));
        assert_eq!(at(5100), None);
    }
}
