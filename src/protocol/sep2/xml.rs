//! IEEE 2030.5 XML encoding and decoding: bytes in, [`super::model`] types out, and back.
//!
//! No I/O here: the HTTP layer hands over a body it already read (within its own limit) and
//! maps each [`XmlError`] variant to a precise 400 answer.
//!
//! # Encoding
//!
//! [`encode`] names the root element after [`SepResource::ELEMENT`] and declares the
//! namespaces on it: `xmlns="urn:ieee:std:2030.5:ns"`, plus `xmlns:csipaus="<ns>"` when a
//! [`CsipAusVersion`] is chosen for the deployment. CSIP-AUS elements are written with the
//! `csipaus:` prefix, so the same model serves both CSIP-AUS versions; the encoder refuses a
//! document that would carry CSIP-AUS elements without a bound prefix, or v1.3-only elements
//! under v1.2, instead of emitting something the schemas reject.
//!
//! # Decoding and namespaces
//!
//! quick-xml's serde deserializer matches element and attribute names by **local name** and
//! ignores namespaces entirely (`ns0:DERSettings`, `DERSettings` and `csipaus:opModExpLimW`
//! all match their field; `xmlns` declarations are ignored). That is what lets clients use
//! any prefix, but it would also accept elements in a wrong namespace. So [`decode`] first
//! runs a streaming pass with quick-xml's `NsReader`, which resolves every prefix, and
//! refuses the document unless:
//!
//! - it is at most `max_bytes` long and valid UTF-8 (an optional BOM is skipped, a declared
//!   encoding other than UTF-8 is refused);
//! - it has no DOCTYPE (hence no entity declarations: nothing can be expanded, and the
//!   refusal happens at the DOCTYPE, before any content is read) and no processing
//!   instruction other than the leading XML declaration;
//! - it is well formed: one root, matching end tags, no duplicate attributes, no
//!   undeclared prefix on an element or attribute, no reference to an entity other than
//!   the five predefined ones and character references, nesting at most [`MAX_DEPTH`] deep;
//! - the root element has the expected local name and namespace;
//! - every element is in the 2030.5 namespace, except the CSIP-AUS extension elements, which
//!   must be in a CSIP-AUS namespace (v1.2 `https://csipaus.org/ns` or v1.3
//!   `https://csipaus.org/ns/v1.3`, not mixed).
//!
//! Only then is the text handed to the serde deserializer, whose local-name matching is
//! now safe. Deserialization errors carry the path of the offending field.
//!
//! The decoder is not a schema validator: like any serde format it accepts elements in any
//! order and skips elements the model does not have (in the right namespaces). Missing
//! required elements, numbers out of range, undefined codes and duplicates are refused as
//! [`XmlError::Content`]. What the server *emits* is held to the schemas by the tests.

use std::fmt;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser::{self, Error as _, SerializeStruct};

use super::model::SepResource;

/// The IEEE 2030.5 namespace.
pub const SEP_NS: &str = "urn:ieee:std:2030.5:ns";
/// The CSIP-AUS v1.2 namespace.
pub const CSIPAUS_V1_2_NS: &str = "https://csipaus.org/ns";
/// The CSIP-AUS v1.3 namespace.
pub const CSIPAUS_V1_3_NS: &str = "https://csipaus.org/ns/v1.3";
/// The XML Schema instance namespace (for `xsi:type` in notifications).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Deepest element nesting accepted. 2030.5 documents nest about 6 levels; the limit keeps
/// hostile input from driving the recursive deserializer deep.
pub const MAX_DEPTH: usize = 32;

/// Local names of the elements the CSIP-AUS extension schemas define (v1.2 and v1.3).
const CSIPAUS_ELEMENTS: &[&str] = &[
    "opModImpLimW",
    "opModExpLimW",
    "opModGenLimW",
    "opModLoadLimW",
    "opModStorageTargetW",
    "doeModesSupported",
    "doeModesEnabled",
    "vppModesSupported",
    "vppModesEnabled",
    "setMinWh",
    "ConnectionPointLink",
    "ConnectionPoint",
    "connectionPointId",
    "CombinedTimeTariffIntervalListLink",
    "ConsumptionTariffIntervalListSummary",
];

/// CSIP-AUS elements that v1.3 added; a v1.2 document must not carry them.
const CSIPAUS_V1_3_ONLY: &[&str] = &[
    "opModStorageTargetW",
    "vppModesSupported",
    "vppModesEnabled",
    "setMinWh",
    "CombinedTimeTariffIntervalListLink",
    "ConsumptionTariffIntervalListSummary",
];

/// The CSIP-AUS version a deployment speaks; it decides the namespace of the extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CsipAusVersion {
    /// CSIP-AUS v1.2, namespace `https://csipaus.org/ns`.
    V1_2,
    /// CSIP-AUS v1.3, namespace `https://csipaus.org/ns/v1.3`.
    V1_3,
}

impl CsipAusVersion {
    /// The namespace URI of this version's extension elements.
    pub const fn namespace(self) -> &'static str {
        match self {
            Self::V1_2 => CSIPAUS_V1_2_NS,
            Self::V1_3 => CSIPAUS_V1_3_NS,
        }
    }

    /// The version whose namespace is `uri`, if any.
    pub fn from_namespace(uri: &str) -> Option<Self> {
        match uri {
            CSIPAUS_V1_2_NS => Some(Self::V1_2),
            CSIPAUS_V1_3_NS => Some(Self::V1_3),
            _ => None,
        }
    }
}

impl fmt::Display for CsipAusVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1_2 => "CSIP-AUS v1.2",
            Self::V1_3 => "CSIP-AUS v1.3",
        })
    }
}

/// Why a document could not be encoded or decoded. Each refusal has its own variant so the
/// server can answer with a precise reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The body is longer than the limit (checked before anything else).
    #[error("document of {actual} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
        /// The body's length.
        actual: usize,
    },
    /// The body is not valid UTF-8.
    #[error("document is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The XML declaration names an encoding other than UTF-8.
    #[error("document declares encoding {0:?}; only UTF-8 is accepted")]
    UnsupportedEncoding(String),
    /// The document has a DOCTYPE (and so possibly entity declarations); refused unread.
    #[error("DOCTYPE and entity declarations are not accepted")]
    Doctype,
    /// The document has a processing instruction other than the XML declaration.
    #[error("processing instruction <?{0} ...?> is not accepted")]
    ProcessingInstruction(String),
    /// The document is not well-formed XML.
    #[error("malformed XML at byte {position}: {message}")]
    Malformed {
        /// Byte offset where the problem was found.
        position: u64,
        /// What is wrong.
        message: String,
    },
    /// Elements nest deeper than [`MAX_DEPTH`].
    #[error("elements nest deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The root element is not the resource expected at this URI.
    #[error("expected root element {expected}, found {found}")]
    WrongRoot {
        /// Expected local name.
        expected: &'static str,
        /// Local name found.
        found: String,
    },
    /// An element is in a namespace other than the one it must be in.
    #[error("element {element} is in namespace {}, expected {expected}", found.as_deref().unwrap_or("(none)"))]
    WrongNamespace {
        /// Local name of the element.
        element: String,
        /// Namespace found (`None` for no namespace).
        found: Option<String>,
        /// Namespace(s) expected.
        expected: String,
    },
    /// The document is well formed but does not fit the model: a required element is
    /// missing, a number is out of range, a code is undefined, ...
    #[error("invalid content at {path}: {message}")]
    Content {
        /// Path of the field at fault (`DERControlBase.opModExpLimW.value`), `.` for the root.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Encoding: the value has CSIP-AUS elements but no CSIP-AUS version was chosen.
    #[error("element {element} is a CSIP-AUS extension; choose a CSIP-AUS version to encode it")]
    CsipAusNamespaceRequired {
        /// The CSIP-AUS element.
        element: String,
    },
    /// Encoding: the value has an element that the chosen CSIP-AUS version does not define.
    #[error("element {element} does not exist in {version}")]
    NotInCsipAusVersion {
        /// The CSIP-AUS element.
        element: &'static str,
        /// The chosen version.
        version: CsipAusVersion,
    },
    /// Encoding failed in the serializer.
    #[error("cannot encode document: {0}")]
    Encode(String),
}

/// A decoded document and what the decoder learned about its namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<T> {
    /// The resource.
    pub value: T,
    /// The CSIP-AUS version whose namespace the document used, if it had CSIP-AUS elements.
    /// Useful to answer a client in the dialect it speaks.
    pub csipaus: Option<CsipAusVersion>,
}

/// Encodes `value` as a 2030.5 document rooted at `T::ELEMENT`.
///
/// `csipaus` is the deployment's CSIP-AUS version: with `Some`, the root also binds the
/// `csipaus` prefix (used or not, which keeps every response of a deployment alike); with
/// `None` the document is plain 2030.5 and a value carrying CSIP-AUS elements is refused.
pub fn encode<T>(value: &T, csipaus: Option<CsipAusVersion>) -> Result<String, XmlError>
where
    T: SepResource + Serialize,
{
    let mut attributes: Vec<(&'static str, &str)> = Vec::with_capacity(2);
    if T::CSIPAUS_ROOT {
        let version = csipaus.ok_or_else(|| XmlError::CsipAusNamespaceRequired {
            element: T::ELEMENT.to_owned(),
        })?;
        attributes.push(("@xmlns", version.namespace()));
    } else {
        attributes.push(("@xmlns", SEP_NS));
        if let Some(version) = csipaus {
            attributes.push(("@xmlns:csipaus", version.namespace()));
        }
    }

    let mut out = String::new();
    let serializer = quick_xml::se::Serializer::with_root(&mut out, Some(T::ELEMENT))
        .map_err(|e| XmlError::Encode(e.to_string()))?;
    serialize_with_attributes(value, serializer, &attributes)
        .map_err(|e| XmlError::Encode(e.to_string()))?;

    check_csipaus_elements(&out, csipaus)?;
    Ok(out)
}

/// Refuses output whose CSIP-AUS elements the chosen version cannot carry. Text and
/// attribute values never contain a raw `<`, so searching for `<csipaus:` finds tags only.
fn check_csipaus_elements(out: &str, csipaus: Option<CsipAusVersion>) -> Result<(), XmlError> {
    match csipaus {
        None => {
            if let Some(at) = out.find("<csipaus:") {
                let rest = &out[at + "<csipaus:".len()..];
                let end = rest
                    .find(|c: char| c == '>' || c == '/' || c.is_whitespace())
                    .unwrap_or(rest.len());
                return Err(XmlError::CsipAusNamespaceRequired {
                    element: rest[..end].to_owned(),
                });
            }
        }
        Some(CsipAusVersion::V1_2) => {
            for element in CSIPAUS_V1_3_ONLY {
                let tag = format!("<csipaus:{element}");
                let found = out.match_indices(&tag).any(|(at, _)| {
                    matches!(out[at + tag.len()..].chars().next(), Some('>' | '/' | ' '))
                });
                if found {
                    return Err(XmlError::NotInCsipAusVersion {
                        element,
                        version: CsipAusVersion::V1_2,
                    });
                }
            }
        }
        Some(CsipAusVersion::V1_3) => {}
    }
    Ok(())
}

/// Decodes a document whose root must be `T::ELEMENT`, refusing anything unsafe or not
/// 2030.5 (see the module documentation for the checks, in the order they run).
pub fn decode<T>(bytes: &[u8], max_bytes: usize) -> Result<T, XmlError>
where
    T: SepResource + DeserializeOwned,
{
    decode_document(bytes, max_bytes).map(|decoded| decoded.value)
}

/// Like [`decode`], also telling which CSIP-AUS namespace the document used.
pub fn decode_document<T>(bytes: &[u8], max_bytes: usize) -> Result<Decoded<T>, XmlError>
where
    T: SepResource + DeserializeOwned,
{
    if bytes.len() > max_bytes {
        return Err(XmlError::TooLarge {
            limit: max_bytes,
            actual: bytes.len(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    // A UTF-8 byte order mark is legal before the declaration; neither reader wants it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let csipaus = scan(text, T::ELEMENT, T::CSIPAUS_ROOT)?;

    let mut deserializer = quick_xml::de::Deserializer::from_str(text);
    let value =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| XmlError::Content {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    Ok(Decoded { value, csipaus })
}

/// The namespace an element resolved to, reduced to what the checks need.
enum ElementNs {
    Sep,
    CsipAus(CsipAusVersion),
    Other(String),
    None,
}

/// The streaming safety and namespace pass that runs before deserialization. Returns the
/// CSIP-AUS version whose namespace the document used, if any.
fn scan(
    text: &str,
    expected_root: &'static str,
    csipaus_root: bool,
) -> Result<Option<CsipAusVersion>, XmlError> {
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;

    let mut depth = 0usize;
    let mut seen_root = false;
    let mut first_event = true;
    let mut csipaus: Option<CsipAusVersion> = None;

    loop {
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(pair) => pair,
            Err(e) => return Err(malformed(reader.error_position(), e.to_string())),
        };
        // Copy what the resolution says before the reader is borrowed again.
        let ns = match resolved {
            ResolveResult::Bound(ns) => {
                let uri = ns.into_inner().to_owned();
                if uri == SEP_NS {
                    ElementNs::Sep
                } else if let Some(version) = CsipAusVersion::from_namespace(&uri) {
                    ElementNs::CsipAus(version)
                } else {
                    ElementNs::Other(uri)
                }
            }
            ResolveResult::Unbound => ElementNs::None,
            ResolveResult::Unknown(prefix) => {
                return Err(malformed(
                    reader.buffer_position(),
                    format!("namespace prefix {prefix:?} is not declared"),
                ));
            }
        };
        let position = reader.buffer_position();
        let is_first = std::mem::replace(&mut first_event, false);

        match event {
            Event::Decl(decl) => {
                if !is_first {
                    return Err(malformed(position, "XML declaration not at the start"));
                }
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|e| malformed(position, e.to_string()))?;
                    if !encoding.eq_ignore_ascii_case("utf-8")
                        && !encoding.eq_ignore_ascii_case("utf8")
                    {
                        return Err(XmlError::UnsupportedEncoding(encoding.into_owned()));
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(pi) => return Err(XmlError::ProcessingInstruction(pi.target().to_owned())),
            Event::Start(ref start) | Event::Empty(ref start) => {
                if depth == 0 && seen_root {
                    return Err(malformed(position, "more than one root element"));
                }
                if depth >= MAX_DEPTH {
                    return Err(XmlError::TooDeep { limit: MAX_DEPTH });
                }
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| malformed(position, e.to_string()))?;
                    if let (ResolveResult::Unknown(prefix), _) =
                        reader.resolver().resolve_attribute(attribute.key)
                    {
                        return Err(malformed(
                            position,
                            format!("namespace prefix {prefix:?} is not declared"),
                        ));
                    }
                    // Normalizing resolves references, so an undefined entity in an
                    // attribute value is caught here rather than by the deserializer.
                    attribute
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| malformed(position, e.to_string()))?;
                }
                let local = start.local_name().into_inner().to_owned();

                if depth == 0 {
                    seen_root = true;
                    if local != expected_root {
                        return Err(XmlError::WrongRoot {
                            expected: expected_root,
                            found: local,
                        });
                    }
                }
                check_namespace(&local, &ns, depth == 0 && csipaus_root, &mut csipaus)?;

                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(text) => {
                if depth == 0 && !text.trim_ascii().is_empty() {
                    return Err(malformed(position, "text outside the root element"));
                }
            }
            Event::CData(_) => {
                if depth == 0 {
                    return Err(malformed(position, "CDATA outside the root element"));
                }
            }
            Event::GeneralRef(reference) => {
                if depth == 0 {
                    return Err(malformed(position, "reference outside the root element"));
                }
                let name: &str = &reference;
                let known = matches!(name, "lt" | "gt" | "amp" | "apos" | "quot")
                    || reference
                        .resolve_char_ref()
                        .map_err(|e| malformed(position, e.to_string()))?
                        .is_some();
                if !known {
                    return Err(malformed(
                        position,
                        format!("reference to undefined entity &{name};"),
                    ));
                }
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }

    if !seen_root {
        return Err(malformed(reader.buffer_position(), "no root element"));
    }
    if depth != 0 {
        return Err(malformed(
            reader.buffer_position(),
            "document ends inside an element",
        ));
    }
    Ok(csipaus)
}

/// Checks that one element is in the namespace it belongs to, recording the CSIP-AUS
/// version seen (and refusing a document that mixes the two CSIP-AUS namespaces).
fn check_namespace(
    local: &str,
    ns: &ElementNs,
    csipaus_root: bool,
    seen: &mut Option<CsipAusVersion>,
) -> Result<(), XmlError> {
    let csipaus_element = csipaus_root || CSIPAUS_ELEMENTS.contains(&local);
    let found = || match ns {
        ElementNs::Sep => Some(SEP_NS.to_owned()),
        ElementNs::CsipAus(version) => Some(version.namespace().to_owned()),
        ElementNs::Other(uri) => Some(uri.clone()),
        ElementNs::None => None,
    };
    match (csipaus_element, ns) {
        (false, ElementNs::Sep) => Ok(()),
        (true, ElementNs::CsipAus(version)) => match seen {
            Some(previous) if previous != version => Err(XmlError::WrongNamespace {
                element: local.to_owned(),
                found: found(),
                expected: previous.namespace().to_owned(),
            }),
            _ => {
                *seen = Some(*version);
                Ok(())
            }
        },
        (false, _) => Err(XmlError::WrongNamespace {
            element: local.to_owned(),
            found: found(),
            expected: SEP_NS.to_owned(),
        }),
        (true, _) => Err(XmlError::WrongNamespace {
            element: local.to_owned(),
            found: found(),
            expected: format!("{CSIPAUS_V1_2_NS} or {CSIPAUS_V1_3_NS}"),
        }),
    }
}

fn malformed(position: u64, message: impl Into<String>) -> XmlError {
    XmlError::Malformed {
        position,
        message: message.into(),
    }
}

/// Serializes `value`, a struct, with extra attributes (`("@name", value)` pairs) written
/// on its element before its own fields.
///
/// This is how the encoder puts `xmlns` declarations on the root and how a notification
/// types its `Resource` with `xsi:type`, without adding namespace fields to every model
/// type. quick-xml writes attributes as they come and buffers child elements, so the
/// order does not matter to it.
pub(crate) fn serialize_with_attributes<T, S>(
    value: &T,
    serializer: S,
    attributes: &[(&'static str, &str)],
) -> Result<S::Ok, S::Error>
where
    T: Serialize + ?Sized,
    S: ser::Serializer,
{
    value.serialize(WithAttributes {
        inner: serializer,
        attributes,
    })
}

/// Serializer adapter behind [`serialize_with_attributes`]. It forwards the first struct to
/// the inner serializer with the attributes prepended; every other shape is refused,
/// because only structs become elements with attributes.
struct WithAttributes<'a, S> {
    inner: S,
    attributes: &'a [(&'static str, &'a str)],
}

impl<S: ser::Serializer> WithAttributes<'_, S> {
    fn not_a_struct(what: &str) -> S::Error {
        S::Error::custom(format!(
            "cannot add XML attributes to a {what}; only structs can carry them"
        ))
    }
}

impl<'a, S: ser::Serializer> ser::Serializer for WithAttributes<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = ser::Impossible<S::Ok, S::Error>;
    type SerializeTuple = ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = ser::Impossible<S::Ok, S::Error>;
    type SerializeMap = ser::Impossible<S::Ok, S::Error>;
    type SerializeStruct = S::SerializeStruct;
    type SerializeStructVariant = ser::Impossible<S::Ok, S::Error>;

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        let mut state = self
            .inner
            .serialize_struct(name, len + self.attributes.len())?;
        for (key, value) in self.attributes {
            state.serialize_field(key, value)?;
        }
        Ok(state)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }

    fn serialize_bool(self, _: bool) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("boolean"))
    }
    fn serialize_i8(self, _: i8) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_i16(self, _: i16) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_i32(self, _: i32) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_i64(self, _: i64) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_u8(self, _: u8) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_u16(self, _: u16) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_u32(self, _: u32) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_u64(self, _: u64) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_f32(self, _: f32) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_f64(self, _: f64) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("number"))
    }
    fn serialize_char(self, _: char) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("character"))
    }
    fn serialize_str(self, _: &str) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("string"))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("byte string"))
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("missing value"))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("unit"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("unit struct"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("enum"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(Self::not_a_struct("enum"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(Self::not_a_struct("sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(Self::not_a_struct("tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(Self::not_a_struct("tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(Self::not_a_struct("enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(Self::not_a_struct("map"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(Self::not_a_struct("enum"))
    }
}
