//! OpenADR 2.0b XML encoding and decoding: bytes in, [`Message`] out, and back. No I/O.
//!
//! [`decode`] refuses, before the serde deserializer sees anything: bodies over the limit,
//! text that is not UTF-8, a DOCTYPE (so no entity can be declared, let alone expanded),
//! processing instructions, references to undefined entities, undeclared prefixes,
//! documents nested deeper than [`MAX_DEPTH`], a root that is not `oadrPayload` in the 2.0b
//! namespace, and elements outside the 2.0b schema set's namespaces. quick-xml's
//! deserializer matches names by local name only, which is safe once that pass has run.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use super::model::{Message, NAMESPACES, OTHER_NAMESPACES, OadrPayload, SignedObject};

/// Deepest element nesting accepted; real 2.0b payloads stay under 15.
pub const MAX_DEPTH: usize = 32;

/// The 2.0b namespace of the root element.
pub const OADR_NS: &str = "http://openadr.org/oadr-2.0b/2012/07";

/// Why a document was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum XmlError {
    #[error("body of {actual} bytes exceeds the limit of {limit}")]
    TooLarge { limit: usize, actual: usize },
    #[error("body is not UTF-8 (valid up to byte {0})")]
    NotUtf8(usize),
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("processing instructions are not accepted")]
    ProcessingInstruction,
    #[error("nesting deeper than {0} elements")]
    TooDeep(usize),
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("root element must be oadrPayload in {OADR_NS}, found {0}")]
    WrongRoot(String),
    #[error("element {element} is in namespace {namespace}, not one of the OpenADR 2.0b schemas")]
    ForeignNamespace { element: String, namespace: String },
    #[error("payload does not match the 2.0b schema at {path}: {message}")]
    Content { path: String, message: String },
}

fn malformed(position: u64, message: impl Into<String>) -> XmlError {
    XmlError::Malformed {
        position,
        message: message.into(),
    }
}

/// Writes `message` as a complete `oadrPayload` document with every prefix bound on the root.
pub fn encode(message: &Message) -> String {
    let payload = OadrPayload {
        signed_object: SignedObject {
            message: message.clone(),
        },
    };
    let mut body = String::new();
    let mut ser = quick_xml::se::Serializer::with_root(&mut body, Some("oadr:oadrPayload"))
        .expect("a fixed root name is valid");
    ser.expand_empty_elements(false);
    serde::Serialize::serialize(&payload, ser).expect("2.0b model types always serialize");
    // The serializer has no notion of namespace declarations; bind every prefix on the root.
    let decls: String = NAMESPACES
        .iter()
        .map(|(p, ns)| format!(" xmlns:{p}=\"{ns}\""))
        .collect();
    let body = body.replacen("<oadr:oadrPayload", &format!("<oadr:oadrPayload{decls}"), 1);
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}")
}

/// Decodes a 2.0b document, refusing anything unsafe or outside the schema set.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Message, XmlError> {
    if bytes.len() > max_bytes {
        return Err(XmlError::TooLarge {
            limit: max_bytes,
            actual: bytes.len(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    scan(text)?;
    let mut de = quick_xml::de::Deserializer::from_str(text);
    let payload: OadrPayload =
        serde_path_to_error::deserialize(&mut de).map_err(|e| XmlError::Content {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    Ok(payload.signed_object.message)
}

fn known_namespace(ns: &str) -> bool {
    NAMESPACES.iter().any(|(_, n)| *n == ns) || OTHER_NAMESPACES.contains(&ns)
}

/// The streaming safety and namespace pass that runs before deserialization.
fn scan(text: &str) -> Result<(), XmlError> {
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(pair) => pair,
            Err(e) => return Err(malformed(reader.error_position(), e.to_string())),
        };
        let ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.into_inner().to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(malformed(
                    reader.buffer_position(),
                    format!("namespace prefix {:?} is not declared", prefix),
                ));
            }
        };
        let position = reader.buffer_position();
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Start(ref start) | Event::Empty(ref start) => {
                if depth == 0 && seen_root {
                    return Err(malformed(position, "more than one root element"));
                }
                if depth >= MAX_DEPTH {
                    return Err(XmlError::TooDeep(MAX_DEPTH));
                }
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| malformed(position, e.to_string()))?;
                    if let (ResolveResult::Unknown(prefix), _) =
                        reader.resolver().resolve_attribute(attribute.key)
                    {
                        return Err(malformed(
                            position,
                            format!("namespace prefix {:?} is not declared", prefix),
                        ));
                    }
                    attribute
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| malformed(position, e.to_string()))?;
                }
                let local = start.local_name().into_inner().to_owned();
                if depth == 0 {
                    seen_root = true;
                    if local != "oadrPayload" || ns.as_deref() != Some(OADR_NS) {
                        return Err(XmlError::WrongRoot(local));
                    }
                }
                match ns {
                    Some(ref n) if known_namespace(n) => {}
                    other => {
                        return Err(XmlError::ForeignNamespace {
                            element: local,
                            namespace: other.unwrap_or_else(|| "(none)".into()),
                        });
                    }
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) if depth == 0 && !t.trim_ascii().is_empty() => {
                return Err(malformed(position, "text outside the root element"));
            }
            Event::CData(_) if depth == 0 => {
                return Err(malformed(position, "CDATA outside the root element"));
            }
            Event::GeneralRef(reference) => {
                let name: &str = &reference;
                let known = matches!(name, "lt" | "gt" | "amp" | "apos" | "quot")
                    || reference
                        .resolve_char_ref()
                        .map_err(|e| malformed(position, e.to_string()))?
                        .is_some();
                if !known || depth == 0 {
                    return Err(malformed(
                        position,
                        format!("reference to undefined entity &{name};"),
                    ));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(malformed(0, "no root element"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<p:oadrPayload xmlns:p="http://openadr.org/oadr-2.0b/2012/07">
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo/></ds:Signature>
  <p:oadrSignedObject p:Id="oadrSignedObject">
    <p:oadrPoll xmlns:x="http://docs.oasis-open.org/ns/energyinterop/201110" x:schemaVersion="2.0b">
      <venID xmlns="http://docs.oasis-open.org/ns/energyinterop/201110">ven-1</venID>
    </p:oadrPoll>
  </p:oadrSignedObject>
</p:oadrPayload>"#;

    #[test]
    fn any_prefix_and_a_signature_decode_and_encoding_round_trips() {
        let m = decode(POLL.as_bytes(), 1 << 16).unwrap();
        assert_eq!(m.ven_id(), Some("ven-1"));
        let again = decode(encode(&m).as_bytes(), 1 << 16).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn unsafe_or_foreign_documents_are_refused() {
        let foreign = POLL.replace(
            "http://docs.oasis-open.org/ns/energyinterop/201110\">ven-1",
            "urn:evil\">ven-1",
        );
        assert!(matches!(
            decode(foreign.as_bytes(), 1 << 16),
            Err(XmlError::ForeignNamespace { .. })
        ));
        let doctype = POLL.replace(
            "<p:oadrPayload",
            "<!DOCTYPE p [<!ENTITY e \"x\">]><p:oadrPayload",
        );
        assert_eq!(decode(doctype.as_bytes(), 1 << 16), Err(XmlError::Doctype));
        assert!(matches!(
            decode(POLL.as_bytes(), 100),
            Err(XmlError::TooLarge { .. })
        ));
        let entity = POLL.replace("ven-1", "&undefined;");
        assert!(matches!(
            decode(entity.as_bytes(), 1 << 16),
            Err(XmlError::Malformed { .. })
        ));
    }
}
