//! Register layout of one model instance, computed from its definition: the offset of
//! every point (relative to the model's `ID` register), with repeating groups expanded and
//! each scale factor resolved to the register that holds it.
//!
//! Group counts that name a point (705's `NCrv`, `NPt`) depend on the device, so the
//! layout is computed per model instance with a callback that supplies those counts: the
//! client reads them from the registers it fetched, the simulator from its configuration.

use super::model::{GroupCount, GroupDef, ModelDef, PointDef, PointType, ScaleRef};
use std::collections::HashMap;

/// Registers before a model's body: `ID` and `L`.
pub const HEADER_LEN: u16 = 2;

/// Where a point's scale factor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleSource {
    /// A fixed exponent in the definition.
    Fixed(i8),
    /// The `sunssf` register at this offset in the model.
    At(u16),
}

/// One point placed in the model.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The point's definition.
    pub def: &'static PointDef,
    /// Dotted path from the model's top group: `W`, `Crv[0].Pt[2].V`, `PFWInj.PF`.
    pub path: String,
    /// Offset of the first register from the model's `ID` register.
    pub offset: u16,
    /// Its scale factor, when it has one.
    pub scale: Option<ScaleSource>,
}

/// A group instance: its points, then its nested groups (the order on the wire).
#[derive(Debug, Clone)]
pub struct GroupLayout {
    pub name: String,
    pub points: Vec<Slot>,
    pub groups: Vec<GroupSlots>,
}

/// The instances of one nested group.
#[derive(Debug, Clone)]
pub struct GroupSlots {
    pub name: String,
    /// False for a group that occurs exactly once by definition (no `count`).
    pub repeating: bool,
    pub instances: Vec<GroupLayout>,
}

/// The layout of one model instance.
#[derive(Debug, Clone)]
pub struct ModelLayout {
    pub def: &'static ModelDef,
    pub root: GroupLayout,
    /// Registers the definition occupies, header included.
    pub len: u16,
}

/// Why a model's layout could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "model {model}: the definition needs {needed} registers but the device gives a length of {length} (+2 header)"
    )]
    TooLong {
        model: u16,
        needed: u32,
        length: u16,
    },
    #[error("model {model}: group {group} counts by point {point}, which the model does not have")]
    NoCountPoint {
        model: u16,
        group: String,
        point: String,
    },
    #[error("model {model}: point {point} uses scale factor {sf}, which the model does not have")]
    NoScalePoint {
        model: u16,
        point: String,
        sf: String,
    },
    #[error("model {model}: group {group} repeats to fill the model but occupies no registers")]
    EmptyRepeat { model: u16, group: String },
}

struct Builder<'a> {
    model: u16,
    /// Registers available: header plus the length the device reports (`u32::MAX` when
    /// laying a model out for a simulator, where the layout defines the length).
    limit: u32,
    cursor: u32,
    count_of: &'a dyn Fn(&Slot) -> u32,
    /// Points by name in each enclosing group instance, innermost last.
    scopes: Vec<HashMap<&'static str, Slot>>,
}

impl ModelLayout {
    /// Lays out `def` for a device reporting model length `length` (the `L` register).
    /// `count_of` gives the value of a count point named by a repeating group.
    pub fn new(
        def: &'static ModelDef,
        length: u16,
        count_of: &dyn Fn(&Slot) -> u32,
    ) -> Result<Self, LayoutError> {
        Self::build(def, u32::from(HEADER_LEN) + u32::from(length), count_of)
    }

    /// Lays out `def` as a device would present it, with the given counts: the layout
    /// decides the length. Groups that repeat to fill the model get no instance.
    pub fn natural(
        def: &'static ModelDef,
        count_of: &dyn Fn(&Slot) -> u32,
    ) -> Result<Self, LayoutError> {
        let l = Self::build(def, u32::MAX, count_of)?;
        if l.len > u16::MAX - 1 {
            return Err(LayoutError::TooLong {
                model: def.id,
                needed: u32::from(l.len),
                length: u16::MAX,
            });
        }
        Ok(l)
    }

    /// The model length register value (`L`) of this layout.
    pub fn length(&self) -> u16 {
        self.len - HEADER_LEN
    }

    fn build(
        def: &'static ModelDef,
        limit: u32,
        count_of: &dyn Fn(&Slot) -> u32,
    ) -> Result<Self, LayoutError> {
        let mut b = Builder {
            model: def.id,
            limit,
            cursor: 0,
            count_of,
            scopes: Vec::new(),
        };
        let root = b.group(&def.group, "")?;
        let len = b.cursor.min(u32::from(u16::MAX)) as u16;
        Ok(ModelLayout { def, root, len })
    }

    /// Every point, in register order.
    pub fn slots(&self) -> Vec<&Slot> {
        fn walk<'a>(g: &'a GroupLayout, out: &mut Vec<&'a Slot>) {
            out.extend(g.points.iter());
            for gs in &g.groups {
                for inst in &gs.instances {
                    walk(inst, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// The point at `path` (`WMaxLimPct`, `Crv[0].Pt[1].V`).
    pub fn slot(&self, path: &str) -> Option<&Slot> {
        self.slots().into_iter().find(|s| s.path == path)
    }
}

impl Builder<'_> {
    fn group(&mut self, def: &'static GroupDef, prefix: &str) -> Result<GroupLayout, LayoutError> {
        let mut points = Vec::with_capacity(def.points.len());
        for p in &def.points {
            let slot = Slot {
                def: p,
                path: format!("{prefix}{}", p.name),
                offset: self.cursor as u16,
                scale: None,
            };
            self.cursor += u32::from(p.size);
            self.check_fits()?;
            points.push(slot);
        }
        self.scopes.push(
            points
                .iter()
                .map(|s| (s.def.name.as_str(), s.clone()))
                .collect(),
        );
        // Scale factors may sit after the points that use them, so they are resolved
        // once the whole group instance is placed.
        for slot in &mut points {
            slot.scale = self.resolve_scale(slot.def)?;
        }
        if let Some(scope) = self.scopes.last_mut() {
            for s in &points {
                scope.insert(s.def.name.as_str(), s.clone());
            }
        }
        let mut groups = Vec::with_capacity(def.groups.len());
        for g in &def.groups {
            groups.push(self.repeated(g, prefix)?);
        }
        self.scopes.pop();
        Ok(GroupLayout {
            name: def.name.clone(),
            points,
            groups,
        })
    }

    fn repeated(
        &mut self,
        def: &'static GroupDef,
        prefix: &str,
    ) -> Result<GroupSlots, LayoutError> {
        let mut instances = Vec::new();
        let path = |i: usize| format!("{prefix}{}[{i}].", def.name);
        match &def.count {
            None => {
                let inst = self.group(def, &format!("{prefix}{}.", def.name))?;
                instances.push(inst);
                return Ok(GroupSlots {
                    name: def.name.clone(),
                    repeating: false,
                    instances,
                });
            }
            Some(GroupCount::Fixed(0)) => {
                // As many instances as fit in the rest of the model.
                while self.limit != u32::MAX && self.cursor < self.limit {
                    let start = self.cursor;
                    let inst = self.group(def, &path(instances.len()))?;
                    if self.cursor == start {
                        return Err(LayoutError::EmptyRepeat {
                            model: self.model,
                            group: def.name.clone(),
                        });
                    }
                    instances.push(inst);
                }
            }
            Some(GroupCount::Fixed(n)) => {
                for i in 0..*n as usize {
                    instances.push(self.group(def, &path(i))?);
                }
            }
            Some(GroupCount::Point(name)) => {
                let slot = self.lookup(name).ok_or_else(|| LayoutError::NoCountPoint {
                    model: self.model,
                    group: def.name.clone(),
                    point: name.clone(),
                })?;
                let n = (self.count_of)(&slot);
                for i in 0..n as usize {
                    // A count the device got wrong shows up here as a layout longer than
                    // the model, before anything is allocated for the rest.
                    instances.push(self.group(def, &path(i))?);
                }
            }
        }
        Ok(GroupSlots {
            name: def.name.clone(),
            repeating: true,
            instances,
        })
    }

    fn lookup(&self, name: &str) -> Option<Slot> {
        self.scopes
            .iter()
            .rev()
            .find_map(|scope| scope.get(name).cloned())
    }

    fn resolve_scale(&self, p: &PointDef) -> Result<Option<ScaleSource>, LayoutError> {
        match &p.sf {
            None => Ok(None),
            Some(ScaleRef::Fixed(e)) => Ok(Some(ScaleSource::Fixed(*e))),
            Some(ScaleRef::Point(name)) => match self.lookup(name) {
                Some(s) if s.def.kind == PointType::Sunssf => Ok(Some(ScaleSource::At(s.offset))),
                _ => Err(LayoutError::NoScalePoint {
                    model: self.model,
                    point: p.name.clone(),
                    sf: name.clone(),
                }),
            },
        }
    }

    fn check_fits(&self) -> Result<(), LayoutError> {
        // Beyond 65535 registers no model can exist, whatever the limit.
        if self.cursor > self.limit || self.cursor > u32::from(u16::MAX) {
            return Err(LayoutError::TooLong {
                model: self.model,
                needed: self.cursor,
                length: self.limit.saturating_sub(u32::from(HEADER_LEN)).min(65535) as u16,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::definition;
    use super::*;

    fn fixed(id: u16) -> ModelLayout {
        let def = definition(id).unwrap();
        let natural = ModelLayout::natural(def, &|_| 0).unwrap();
        // A device reporting exactly that length gives the same layout.
        let l = ModelLayout::new(def, natural.length(), &|_| 0).unwrap();
        assert_eq!(l.len, natural.len);
        l
    }

    #[test]
    fn offsets_follow_point_sizes() {
        let common = fixed(1);
        assert_eq!(common.len, 68);
        // ID, L, Mn (16 registers), Md (16), Opt (8), Vr (8), SN (16), DA.
        assert_eq!(common.slot("Mn").unwrap().offset, 2);
        assert_eq!(common.slot("SN").unwrap().offset, 2 + 16 + 16 + 8 + 8);
        assert_eq!(common.slot("DA").unwrap().offset, 66);
        let inv = fixed(103);
        let w = inv.slot("W").unwrap();
        let sf = inv.slot("W_SF").unwrap();
        assert_eq!(w.scale, Some(ScaleSource::At(sf.offset)));
        assert!(sf.offset > w.offset);
    }

    #[test]
    fn counted_groups_expand_with_paths_and_inherit_scale_factors() {
        let def = definition(705).unwrap();
        let top: u16 = def.group.points.iter().map(|p| p.size).sum();
        let crv: u16 = def.group.groups[0].points.iter().map(|p| p.size).sum();
        let pt: u16 = def.group.groups[0].groups[0]
            .points
            .iter()
            .map(|p| p.size)
            .sum();
        let (ncrv, npt) = (2u16, 3u16);
        let len = top + ncrv * (crv + npt * pt);
        let count = |s: &Slot| match s.def.name.as_str() {
            "NCrv" => u32::from(ncrv),
            "NPt" => u32::from(npt),
            other => panic!("unexpected count point {other}"),
        };
        let l = ModelLayout::new(def, len - HEADER_LEN, &count).unwrap();
        assert_eq!(l.len, len);
        let last = l.slot("Crv[1].Pt[2].Var").unwrap();
        assert_eq!(last.offset, len - 1);
        // The curve's V uses the model-level V_SF.
        let vsf = l.slot("V_SF").unwrap().offset;
        assert_eq!(
            l.slot("Crv[0].Pt[0].V").unwrap().scale,
            Some(ScaleSource::At(vsf))
        );
        // A device claiming more curves than its length holds is refused.
        let err = ModelLayout::new(def, len - HEADER_LEN - 1, &count).unwrap_err();
        assert!(
            matches!(err, LayoutError::TooLong { model: 705, .. }),
            "{err}"
        );
    }

    #[test]
    fn single_groups_are_nested_by_name() {
        let l = fixed(704);
        // 704's PFWInj group has no count: once, after the top-level points.
        let pf = l.slot("PFWInj.PF").unwrap();
        assert!(pf.offset >= l.slot("VarSetPct_SF").unwrap().offset);
        assert_eq!(l.slot("PFWInjRvrt.PF").unwrap().offset, pf.offset + 2);
    }
}
