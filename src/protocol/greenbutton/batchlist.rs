//! The ESPI `BatchList` (espi_4.0.xsd `BatchListType`): the list of resource URIs a Data
//! Custodian POSTs to the Third Party's notify URI when new data is ready. Codec only, no
//! I/O: [`parse`] checks the shape first (one root element `BatchList`, no DTD), then
//! reads the `resources` with quick-xml's serde deserializer.

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// The ESPI namespace.
pub const ESPI_NS: &str = "http://naesb.org/espi";

/// A notification: the resources with new data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename = "BatchList")]
pub struct BatchList {
    #[serde(rename = "resources", default)]
    pub resources: Vec<String>,
}

/// Why a body is not a BatchList.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchListError {
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("the body is empty")]
    Empty,
    #[error("a DOCTYPE is not accepted (no DTDs or entity declarations in notifications)")]
    Doctype,
    #[error("not a BatchList: the root element is <{0}>")]
    WrongRoot(String),
    #[error("not a BatchList: the root element is in namespace '{0}', not {ESPI_NS}")]
    WrongNamespace(String),
    #[error("invalid XML at byte {at}: {message}")]
    Xml { at: u64, message: String },
    #[error("BatchList: {0}")]
    Shape(String),
    #[error("BatchList: resource '{0}' is not an absolute http(s) URI")]
    BadUri(String),
}

/// Parses a notification body.
pub fn parse(body: &[u8]) -> Result<BatchList, BatchListError> {
    let text = std::str::from_utf8(body).map_err(|_| BatchListError::NotUtf8)?;
    check_shape(text)?;
    let list: BatchList =
        quick_xml::de::from_str(text).map_err(|e| BatchListError::Shape(e.to_string()))?;
    let list = BatchList {
        resources: list
            .resources
            .into_iter()
            .map(|r| r.trim().to_string())
            .collect(),
    };
    for r in &list.resources {
        match reqwest::Url::parse(r) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(BatchListError::BadUri(r.clone())),
        }
    }
    Ok(list)
}

/// The root element must be the first and only one, `BatchList` in the ESPI namespace (or
/// in none: some Data Custodians omit it).
fn check_root(
    e: &quick_xml::events::BytesStart<'_>,
    seen: &mut bool,
) -> Result<(), BatchListError> {
    if *seen {
        return Err(BatchListError::Shape("more than one root element".into()));
    }
    *seen = true;
    let local = e.local_name().as_ref().to_string();
    if local != "BatchList" {
        return Err(BatchListError::WrongRoot(local));
    }
    let prefix = e.name().prefix().map(|p| p.as_ref().to_string());
    let ns_attr = match &prefix {
        Some(p) => format!("xmlns:{p}"),
        None => "xmlns".into(),
    };
    let ns = e
        .attributes()
        .flatten()
        .find(|a| a.key.as_ref() == ns_attr)
        .map(|a| a.value.to_string());
    match ns {
        Some(ns) if ns != ESPI_NS => Err(BatchListError::WrongNamespace(ns)),
        None if prefix.is_some() => Err(BatchListError::Shape(
            "undeclared namespace prefix on the root element".into(),
        )),
        _ => Ok(()),
    }
}

/// Walks the whole document once: well-formed, no DOCTYPE, root `BatchList` in the ESPI
/// namespace (or none), its children `resources` holding text only.
fn check_shape(text: &str) -> Result<(), BatchListError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut root_seen = false;
    loop {
        let at = reader.buffer_position();
        let event = reader.read_event().map_err(|e| BatchListError::Xml {
            at,
            message: e.to_string(),
        })?;
        match event {
            Event::DocType(_) => return Err(BatchListError::Doctype),
            Event::Start(e) if depth == 0 => {
                check_root(&e, &mut root_seen)?;
                depth += 1;
            }
            Event::Empty(e) if depth == 0 => check_root(&e, &mut root_seen)?,
            Event::Start(e) => {
                if depth != 1 || e.local_name().as_ref() != "resources" {
                    return Err(BatchListError::Shape(format!(
                        "unexpected element <{}>",
                        e.name().as_ref()
                    )));
                }
                depth += 1;
            }
            Event::Empty(e) => {
                return Err(BatchListError::Shape(format!(
                    "unexpected empty element <{}>",
                    e.name().as_ref()
                )));
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) if depth == 0 && !t.trim().is_empty() => {
                return Err(BatchListError::Shape(
                    "text outside the root element".into(),
                ));
            }
            Event::GeneralRef(r) => {
                // Only the predefined entities and character references: nothing to expand.
                let name = r.as_ref().to_string();
                let predefined = matches!(name.as_str(), "lt" | "gt" | "amp" | "apos" | "quot")
                    || name.starts_with('#');
                if !predefined {
                    return Err(BatchListError::Shape(format!("unknown entity &{name};")));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err(BatchListError::Empty);
    }
    if depth != 0 {
        return Err(BatchListError::Xml {
            at: text.len() as u64,
            message: "the document ends inside an element".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prefixed_and_default_namespace_lists() {
        let a = br#"<?xml version="1.0" encoding="UTF-8"?>
<espi:BatchList xmlns:espi="http://naesb.org/espi">
  <espi:resources>https://dc.example/DataCustodian/espi/1_1/resource/Batch/Subscription/5</espi:resources>
  <espi:resources> https://dc.example/DataCustodian/espi/1_1/resource/Batch/Subscription/6/UsagePoint/1 </espi:resources>
</espi:BatchList>"#;
        let l = parse(a).unwrap();
        assert_eq!(l.resources.len(), 2);
        assert!(l.resources[1].ends_with("/UsagePoint/1"));
        let b = br#"<BatchList xmlns="http://naesb.org/espi"><resources>https://x.example/a?b=1&amp;c=2</resources></BatchList>"#;
        assert_eq!(
            parse(b).unwrap().resources,
            vec!["https://x.example/a?b=1&c=2"]
        );
        assert_eq!(
            parse(br#"<BatchList xmlns="http://naesb.org/espi"/>"#)
                .unwrap()
                .resources
                .len(),
            0
        );
    }

    #[test]
    fn refuses_what_is_not_a_batchlist() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"<feed xmlns=\"http://www.w3.org/2005/Atom\"/>", "root element is <feed>"),
            (b"<BatchList xmlns=\"urn:other\"/>", "namespace 'urn:other'"),
            (b"<BatchList><resources>https://a.example/x</resources>", "ends inside"),
            (b"<BatchList><resources>https://a.example/x</wrong></BatchList>", "invalid XML"),
            (b"<BatchList><other>x</other></BatchList>", "unexpected element"),
            (b"<BatchList><resources>not a uri</resources></BatchList>", "not an absolute"),
            (b"<BatchList><resources>file:///etc/passwd</resources></BatchList>", "not an absolute"),
            (
                b"<?xml version=\"1.0\"?><!DOCTYPE lol [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><BatchList><resources>&b;</resources></BatchList>",
                "DOCTYPE",
            ),
            (b"<BatchList><resources>&ext;</resources></BatchList>", "unknown entity"),
            (b"<BatchList/><BatchList/>", "more than one root"),
            (b"\xff\xfe", "UTF-8"),
        ];
        for (body, want) in cases {
            let err = parse(body).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
