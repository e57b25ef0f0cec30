//! Property tests for the engine's invariants over random sets of programs, controls and
//! defaults: limits never looser than any control in force, no superseded or cancelled
//! control ever contributing, answers stable until `next_change`, order independence, and
//! the wire scaling round trip.

use super::*;
use proptest::prelude::*;

const PROGRAMS: [&str; 4] = ["p0", "p1", "p2", "p3"];

fn value() -> impl Strategy<Value = f64> {
    // Coarse steps so that ties between controls are common.
    (0u32..20).prop_map(|k| f64::from(k) * 500.0)
}

fn modes() -> impl Strategy<Value = ControlModes> {
    (
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(value()),
            proptest::option::of(value().prop_map(|v| v - 5000.0)),
            proptest::option::of(value()),
            proptest::option::of(
                (0u32..=100, any::<bool>()).prop_map(|(d, over)| PowerFactor {
                    displacement: f64::from(d) / 100.0,
                    excitation: if over {
                        Excitation::OverExcited
                    } else {
                        Excitation::UnderExcited
                    },
                }),
            ),
            proptest::option::of((1u32..50).prop_map(f64::from)),
        ),
        (
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value().prop_map(|v| v - 5000.0)),
            proptest::option::of(value()),
        ),
    )
        .prop_map(
            |(
                (connect, energize, max_lim_w, fixed_w, target_w, fixed_pf_inject, set_grad_w),
                (imp_lim_w, exp_lim_w, gen_lim_w, load_lim_w, storage_target_w, min_wh),
            )| ControlModes {
                connect,
                energize,
                max_lim_w,
                fixed_w,
                target_w,
                fixed_pf_inject,
                set_grad_w,
                imp_lim_w,
                exp_lim_w,
                gen_lim_w,
                load_lim_w,
                storage_target_w,
                min_wh,
                // Not a mode; the engine's rules never read it.
                ramp_s: None,
                // Carried, never resolved: the properties are about limits.
                curves: Default::default(),
            },
        )
}

/// A control that passes validation; the id is filled in by [`controls`].
fn control() -> impl Strategy<Value = Control> {
    (
        0usize..PROGRAMS.len() + 1,
        0i64..20,
        0i64..400,
        1u32..200,
        prop_oneof![Just(0i32), -60i32..60],
        prop_oneof![Just(0i32), -60i32..60],
        modes(),
        proptest::option::of((0i64..700, any::<bool>())),
    )
        .prop_filter_map(
            "must validate",
            |(program, created, start, duration_s, rs, rd, modes, cancelled)| {
                let c = Control {
                    id: ControlId::new(""),
                    // Index 4 names a program missing from the program list.
                    program: ProgramId::new(format!("p{program}")),
                    created,
                    start,
                    duration_s,
                    randomize_start_s: rs,
                    randomize_duration_s: rd,
                    modes,
                    cancelled: cancelled.map(|(at, randomized)| Cancellation { at, randomized }),
                };
                let mut probe = c.clone();
                probe.id = ControlId::new("probe");
                probe.validate().is_ok().then_some(c)
            },
        )
}

fn controls() -> impl Strategy<Value = Vec<Control>> {
    proptest::collection::vec(control(), 0..12).prop_map(|mut v| {
        for (i, c) in v.iter_mut().enumerate() {
            c.id = ControlId::new(format!("c{i:02}"));
        }
        v
    })
}

fn programs() -> impl Strategy<Value = Vec<Program>> {
    proptest::collection::vec(0u8..4, PROGRAMS.len()).prop_map(|primacies| {
        PROGRAMS
            .iter()
            .zip(primacies)
            .map(|(id, primacy)| Program {
                id: ProgramId::new(*id),
                primacy,
            })
            .collect()
    })
}

fn defaults() -> impl Strategy<Value = Vec<DefaultControl>> {
    proptest::collection::vec(
        (0usize..PROGRAMS.len() + 1, modes()).prop_map(|(p, modes)| DefaultControl {
            program: ProgramId::new(format!("p{p}")),
            modes,
        }),
        0..4,
    )
}

type Getter = fn(&ControlModes) -> Option<f64>;

/// Every f64 mode with its accessor.
fn f64_modes() -> [(Mode, Getter); 10] {
    [
        (Mode::MaxLimW, |m| m.max_lim_w),
        (Mode::FixedW, |m| m.fixed_w),
        (Mode::TargetW, |m| m.target_w),
        (Mode::SetGradW, |m| m.set_grad_w),
        (Mode::ImpLimW, |m| m.imp_lim_w),
        (Mode::ExpLimW, |m| m.exp_lim_w),
        (Mode::GenLimW, |m| m.gen_lim_w),
        (Mode::LoadLimW, |m| m.load_lim_w),
        (Mode::StorageTargetW, |m| m.storage_target_w),
        (Mode::MinWh, |m| m.min_wh),
    ]
}

/// The part of an answer that must not change between two instants with the same controls
/// in force.
fn fingerprint(r: &InForce) -> (ControlModes, Vec<Option<Source>>) {
    (
        r.modes(),
        Mode::ALL.iter().map(|m| r.source(*m).cloned()).collect(),
    )
}

fn rank(programs: &[Program], p: &ProgramId) -> u16 {
    programs
        .iter()
        .find(|x| &x.id == p)
        .map_or(256, |x| u16::from(x.primacy))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) Every limit in force is no larger than any in-force control's value for that mode
    /// and equals one of them; with none in force it is the smallest default, or unset. The
    /// reserve is the largest, `false` wins for connect/energize, and set points come from
    /// the best-ranked control that sets them.
    #[test]
    fn resolution_follows_the_combination_rules(
        programs in programs(),
        controls in controls(),
        defaults in defaults(),
        key in 0u8..4,
        seed in any::<u64>(),
        t in -50i64..750,
    ) {
        let key = format!("site-{key}");
        let r = limits_in_force(&programs, &controls, &defaults, &key, seed, t);
        let tls = timelines(&controls, &key, seed);
        let mut active: Vec<&Control> =
            tls.iter().filter(|tl| tl.in_force_at(t)).map(|tl| tl.control).collect();
        active.sort_by(|a, b| {
            rank(&programs, &a.program)
                .cmp(&rank(&programs, &b.program))
                .then_with(|| newness(b, a))
        });
        let got = r.modes();
        for (mode, get) in f64_modes() {
            let from_controls: Vec<f64> = active.iter().filter_map(|c| get(&c.modes)).collect();
            let from_defaults: Vec<f64> = defaults.iter().filter_map(|d| get(&d.modes)).collect();
            let pool = if from_controls.is_empty() { &from_defaults } else { &from_controls };
            let value = get(&got);
            match mode.combine() {
                Combine::Minimum => {
                    for v in &from_controls {
                        prop_assert!(value.is_some_and(|x| x <= *v), "{mode}: {value:?} > {v}");
                    }
                    let min = pool.iter().copied().reduce(f64::min);
                    prop_assert_eq!(value, min, "{}", mode);
                }
                Combine::Maximum => {
                    let max = pool.iter().copied().reduce(f64::max);
                    prop_assert_eq!(value, max, "{}", mode);
                }
                Combine::Winner => {
                    if !from_controls.is_empty() {
                        prop_assert_eq!(value, from_controls.first().copied(), "{}", mode);
                    } else {
                        prop_assert_eq!(value.is_some(), !from_defaults.is_empty(), "{}", mode);
                        prop_assert!(value.is_none_or(|v| from_defaults.contains(&v)));
                    }
                }
                Combine::FalseWins => unreachable!("no f64 mode uses FalseWins"),
            }
            // The named source really carries the value.
            match r.source(mode) {
                Some(Source::Control { id, .. }) => {
                    let c = active.iter().find(|c| &c.id == id);
                    prop_assert!(c.is_some(), "{mode}: source {id} not in force");
                    prop_assert_eq!(c.and_then(|c| get(&c.modes)), value);
                }
                Some(Source::Default { program }) => {
                    prop_assert!(from_controls.is_empty());
                    prop_assert!(defaults
                        .iter()
                        .any(|d| &d.program == program && get(&d.modes) == value));
                }
                None => prop_assert!(value.is_none()),
            }
        }
        for (mode, get) in [
            (Mode::Connect, (|m: &ControlModes| m.connect) as fn(&ControlModes) -> Option<bool>),
            (Mode::Energize, |m: &ControlModes| m.energize),
        ] {
            let from_controls: Vec<bool> = active.iter().filter_map(|c| get(&c.modes)).collect();
            let from_defaults: Vec<bool> = defaults.iter().filter_map(|d| get(&d.modes)).collect();
            let pool = if from_controls.is_empty() { &from_defaults } else { &from_controls };
            let expected = (!pool.is_empty()).then(|| pool.iter().all(|b| *b));
            prop_assert_eq!(get(&got), expected, "{}", mode);
        }
    }

    /// (b) No superseded or (plainly) cancelled control ever contributes: every control named
    /// as a source is in force, and a control in force is Active, or in the random tail of a
    /// cancellation with randomization. Conversely an Active control whose effective window
    /// has begun is in force.
    #[test]
    fn only_active_controls_contribute(
        programs in programs(),
        controls in controls(),
        defaults in defaults(),
        seed in any::<u64>(),
        t in -50i64..750,
    ) {
        let r = limits_in_force(&programs, &controls, &defaults, "site-0", seed, t);
        let tls = timelines(&controls, "site-0", seed);
        for mode in Mode::ALL {
            if let Some(Source::Control { id, .. }) = r.source(mode) {
                let tl = tls.iter().find(|tl| &tl.control.id == id);
                prop_assert!(tl.is_some_and(|tl| tl.in_force_at(t)));
            }
        }
        for tl in &tls {
            let state = tl.lifecycle(t);
            if tl.in_force_at(t) {
                prop_assert!(
                    matches!(state, Lifecycle::Active | Lifecycle::Cancelled { randomized: true }),
                    "{:?} in force while {:?}", tl.control.id, state
                );
            }
            if matches!(state, Lifecycle::Superseded | Lifecycle::Cancelled { randomized: false }) {
                prop_assert!(!tl.in_force_at(t));
            }
            if state == Lifecycle::Active && t >= tl.window.start {
                prop_assert!(tl.in_force_at(t));
            }
            // The single-control entry point agrees with the batch evaluation.
            prop_assert_eq!(
                event_status(tl.control, &controls, "site-0", seed, t),
                state.event_status()
            );
        }
    }

    /// Within one program, at most one control in force sets any given mode at any instant:
    /// superseding leaves no two overlapping controls with a common mode.
    #[test]
    fn superseding_leaves_one_control_per_mode_and_program(
        controls in controls(),
        seed in any::<u64>(),
        t in -50i64..750,
    ) {
        let tls = timelines(&controls, "site-1", seed);
        let active: Vec<&Control> =
            tls.iter().filter(|tl| tl.in_force_at(t)).map(|tl| tl.control).collect();
        for (i, a) in active.iter().enumerate() {
            for b in &active[i + 1..] {
                prop_assert!(
                    a.program != b.program || !a.modes.shares_mode_with(&b.modes),
                    "{} and {} both in force", a.id, b.id
                );
            }
        }
    }

    /// The answer holds unchanged from `t` until `next_change`, and `next_change` is later
    /// than `t`.
    #[test]
    fn the_answer_is_stable_until_next_change(
        programs in programs(),
        controls in controls(),
        defaults in defaults(),
        seed in any::<u64>(),
        t in -50i64..750,
        frac in 0.0f64..1.0,
    ) {
        let r = limits_in_force(&programs, &controls, &defaults, "site-2", seed, t);
        let later = match r.next_change {
            Some(n) => {
                prop_assert!(n > t);
                let probe = t + ((n - t - 1) as f64 * frac) as i64;
                let at_end = limits_in_force(&programs, &controls, &defaults, "site-2", seed, n - 1);
                prop_assert_eq!(fingerprint(&at_end), fingerprint(&r));
                probe
            }
            None => t + 10_000,
        };
        let mid = limits_in_force(&programs, &controls, &defaults, "site-2", seed, later);
        prop_assert_eq!(fingerprint(&mid), fingerprint(&r));
    }

    /// The answer does not depend on the order in which controls are passed.
    #[test]
    fn resolution_ignores_input_order(
        programs in programs(),
        controls in controls(),
        defaults in defaults(),
        seed in any::<u64>(),
        t in -50i64..750,
    ) {
        let a = limits_in_force(&programs, &controls, &defaults, "site-3", seed, t);
        let mut reversed = controls.clone();
        reversed.reverse();
        let b = limits_in_force(&programs, &reversed, &defaults, "site-3", seed, t);
        prop_assert_eq!(a, b);
    }

    /// Effective windows stay within the randomization ranges and are reproducible.
    #[test]
    fn effective_windows_stay_in_bounds(
        c in control(),
        key in "[a-z0-9]{0,12}",
        seed in any::<u64>(),
    ) {
        let w = effective_window(&c, &key, seed);
        prop_assert_eq!(w, effective_window(&c, &key, seed));
        let (s, d) = (w.start - c.start, (w.end - w.start) - i64::from(c.duration_s));
        let within = |x: i64, bound: i32| {
            let b = i64::from(bound);
            if b >= 0 { (0..=b).contains(&x) } else { (b..=0).contains(&x) }
        };
        prop_assert!(within(s, c.randomize_start_s), "start offset {s}");
        prop_assert!(within(d, c.randomize_duration_s), "duration offset {d}");
        prop_assert!(!w.is_empty());
    }

    /// (c) Scaling round-trips: within 0.5 / 3276.75 relative error for every encodable value
    /// above the finest step (the best any 16-bit decimal form can promise), within 10^-4
    /// whenever the mantissa reaches 5000, and with the smallest multiplier that fits.
    #[test]
    fn scaling_round_trips(exp in -5.4f64..13.5, negative in any::<bool>()) {
        let value = if negative { -(10f64.powf(exp)) } else { 10f64.powf(exp) };
        let (v, m) = to_int16_scaled(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!((MIN_MULTIPLIER..=MAX_MULTIPLIER).contains(&m));
        let back = from_int16_scaled(v, m);
        let rel = ((back - value) / value).abs();
        prop_assert!(rel <= 0.5 / 3276.75 + 1e-12, "{value} -> ({v}, {m}) -> {back}: {rel}");
        if v.unsigned_abs() >= 5000 {
            prop_assert!(rel <= 1e-4, "{value} -> ({v}, {m}): {rel}");
        }
        prop_assert_eq!(back.is_sign_negative(), negative);
        if m > MIN_MULTIPLIER {
            // One step finer would not have fitted.
            let finer = (value / 10f64.powi(i32::from(m) - 1)).round();
            prop_assert!(finer > f64::from(i16::MAX) || finer < f64::from(i16::MIN));
        }
    }

    /// Any decoded wire value re-encodes to a value equal to it.
    #[test]
    fn decoded_values_re_encode_exactly(v in any::<i16>(), m in -9i8..=9) {
        let x = from_int16_scaled(v, m);
        let (v2, m2) = to_int16_scaled(x).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let y = from_int16_scaled(v2, m2);
        prop_assert!(
            (x - y).abs() <= x.abs() * 1e-15,
            "({v}, {m}) = {x} -> ({v2}, {m2}) = {y}"
        );
    }
}
