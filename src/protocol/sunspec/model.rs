//! SunSpec model definitions: the serde types of the official SunSpec model JSON, and the
//! set of definitions embedded in the binary (`schemas/sunspec/`, copied byte-for-byte).
//!
//! Nothing here knows a register offset: offsets follow from the definitions (point sizes,
//! groups and their counts) in [`super::layout`].

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One model definition file: `{"id": N, "group": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelDef {
    pub id: u16,
    pub group: GroupDef,
}

/// A group of points, possibly repeated, possibly holding further groups.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupDef {
    pub name: String,
    /// How many times the group repeats: absent means once, a number is fixed (0: as many
    /// as fit in the rest of the model), a string names the point holding the count.
    #[serde(default)]
    pub count: Option<GroupCount>,
    #[serde(default)]
    pub points: Vec<PointDef>,
    #[serde(default)]
    pub groups: Vec<GroupDef>,
    #[serde(default)]
    pub label: Option<String>,
}

/// The repeat count of a group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum GroupCount {
    Fixed(u32),
    Point(String),
}

/// One point: a value occupying `size` registers.
#[derive(Debug, Clone, Deserialize)]
pub struct PointDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PointType,
    /// Registers occupied.
    pub size: u16,
    /// Scale factor: a fixed exponent or the name of a `sunssf` point.
    #[serde(default)]
    pub sf: Option<ScaleRef>,
    #[serde(default)]
    pub units: Option<String>,
    #[serde(default)]
    pub access: Option<String>,
    #[serde(default)]
    pub mandatory: Option<String>,
    #[serde(default)]
    pub symbols: Vec<Symbol>,
    #[serde(default)]
    pub label: Option<String>,
    /// A fixed value (the model id point carries it).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

impl PointDef {
    /// True when a client may write the point.
    pub fn writable(&self) -> bool {
        self.access.as_deref() == Some("RW")
    }

    /// The name of the symbol with this value (enumerations).
    pub fn symbol(&self, value: u64) -> Option<&str> {
        self.symbols
            .iter()
            .find(|s| s.value == value)
            .map(|s| s.name.as_str())
    }
}

/// A scale factor reference.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ScaleRef {
    Fixed(i8),
    Point(String),
}

/// A named value of an enumeration or a bit of a bitfield.
#[derive(Debug, Clone, Deserialize)]
pub struct Symbol {
    pub name: String,
    pub value: u64,
}

/// The point types of the SunSpec model schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointType {
    Int16,
    Int32,
    Int64,
    Raw16,
    Uint16,
    Uint32,
    Uint64,
    Acc16,
    Acc32,
    Acc64,
    Bitfield16,
    Bitfield32,
    Bitfield64,
    Enum16,
    Enum32,
    Float32,
    Float64,
    String,
    Pad,
    Ipaddr,
    Ipv6addr,
    Eui48,
    Sunssf,
    Count,
}

/// The definitions this build carries, as (id, JSON text).
const EMBEDDED: &[(u16, &str)] = &[
    (1, include_str!("../../../schemas/sunspec/model_1.json")),
    (101, include_str!("../../../schemas/sunspec/model_101.json")),
    (102, include_str!("../../../schemas/sunspec/model_102.json")),
    (103, include_str!("../../../schemas/sunspec/model_103.json")),
    (120, include_str!("../../../schemas/sunspec/model_120.json")),
    (121, include_str!("../../../schemas/sunspec/model_121.json")),
    (122, include_str!("../../../schemas/sunspec/model_122.json")),
    (123, include_str!("../../../schemas/sunspec/model_123.json")),
    (124, include_str!("../../../schemas/sunspec/model_124.json")),
    (701, include_str!("../../../schemas/sunspec/model_701.json")),
    (702, include_str!("../../../schemas/sunspec/model_702.json")),
    (703, include_str!("../../../schemas/sunspec/model_703.json")),
    (704, include_str!("../../../schemas/sunspec/model_704.json")),
    (705, include_str!("../../../schemas/sunspec/model_705.json")),
    (713, include_str!("../../../schemas/sunspec/model_713.json")),
    (802, include_str!("../../../schemas/sunspec/model_802.json")),
];

fn all() -> &'static BTreeMap<u16, ModelDef> {
    static DEFS: OnceLock<BTreeMap<u16, ModelDef>> = OnceLock::new();
    DEFS.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(id, text)| {
                // The files are part of the build and checked by a unit test, so a parse
                // failure here is a packaging bug, not bad input.
                let def: ModelDef = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("embedded SunSpec model {id}: {e}"));
                assert_eq!(
                    def.id, *id,
                    "embedded SunSpec model file {id} has id {}",
                    def.id
                );
                (*id, def)
            })
            .collect()
    })
}

/// The definition of model `id`, if this build carries it.
pub fn definition(id: u16) -> Option<&'static ModelDef> {
    all().get(&id)
}

/// The ids of every model this build can decode.
pub fn known_ids() -> Vec<u16> {
    all().keys().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_definition_parses_and_starts_with_id_and_length() {
        for id in known_ids() {
            let def = definition(id).unwrap();
            let p = &def.group.points;
            assert_eq!(p[0].name, "ID", "model {id}");
            assert_eq!(p[0].value, Some(serde_json::json!(id)), "model {id}");
            assert_eq!(p[1].name, "L", "model {id}");
        }
        assert_eq!(known_ids().len(), EMBEDDED.len());
    }

    #[test]
    fn counted_groups_and_scale_factors_are_read() {
        let vv = definition(705).unwrap();
        let crv = &vv.group.groups[0];
        assert_eq!(crv.count, Some(GroupCount::Point("NCrv".into())));
        assert_eq!(crv.groups[0].count, Some(GroupCount::Point("NPt".into())));
        let w = definition(103)
            .unwrap()
            .group
            .points
            .iter()
            .find(|p| p.name == "W")
            .unwrap();
        assert_eq!(w.sf, Some(ScaleRef::Point("W_SF".into())));
        assert_eq!(w.kind, PointType::Int16);
    }
}
