//! A small generic XML tree for assertions by element path, built with quick-xml.
//!
//! Names are local names (prefixes are resolved and the namespace kept on each element);
//! attributes are kept by local name, without namespace declarations. Text is the
//! concatenated character data of an element, with the predefined entities and character
//! references resolved. Documents with a DOCTYPE are refused, so nothing is ever expanded.
//!
//! Paths (used by checks, `save` and `follow` predicates) are `/`-separated steps:
//! a name, `*` (any element), `.` (the element itself), or a final `@attribute`; a name may
//! carry one predicate `[path=value]`, where `path` is relative (`mRID`, `@href`,
//! `EventStatus/currentStatus`) and the value is compared ignoring ASCII case. In a *selection* the
//! first name matches the root or any descendant and the rest are children; in a *relative*
//! path every step is a child.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

/// One element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Namespace URI, when bound.
    pub ns: Option<String>,
    /// Attributes by local name (namespace declarations left out).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// Character data directly inside this element.
    pub text: String,
}

/// What a path can reach: an element, or an attribute's value.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    Element(&'a Element),
    Attr(&'a str),
}

impl<'a> Node<'a> {
    /// The node's text: an element's trimmed character data or an attribute value.
    pub fn text(&self) -> &'a str {
        match self {
            Node::Element(e) => e.text.trim(),
            Node::Attr(v) => v,
        }
    }

    pub fn element(&self) -> Option<&'a Element> {
        match self {
            Node::Element(e) => Some(e),
            Node::Attr(_) => None,
        }
    }
}

/// Why a document could not be read as XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    #[error("the document has a DOCTYPE, which 2030.5 documents never carry")]
    Doctype,
    #[error("elements nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("no root element")]
    Empty,
}

/// Parses a whole document.
pub fn parse(text: &str) -> Result<Element, TreeError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let bad = |e: &dyn std::fmt::Display| TreeError::Malformed(e.to_string());
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|e| bad(&e))?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.into_inner().to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(TreeError::Malformed(format!("undeclared prefix {p}")));
            }
        };
        match event {
            Event::DocType(_) => return Err(TreeError::Doctype),
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() && stack.is_empty() {
                    return Err(TreeError::Malformed("more than one root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(TreeError::TooDeep);
                }
                let mut el = Element {
                    name: start.local_name().into_inner().to_owned(),
                    ns,
                    ..Element::default()
                };
                for a in start.attributes() {
                    let a = a.map_err(|e| bad(&e))?;
                    let key = a.key.as_ref();
                    if key == "xmlns" || key.starts_with("xmlns:") {
                        continue;
                    }
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| bad(&e))?
                        .into_owned();
                    el.attrs
                        .push((a.key.local_name().into_inner().to_owned(), value));
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(el);
                } else {
                    attach(&mut stack, &mut root, el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| TreeError::Malformed("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(TreeError::Malformed("text outside the root".into())),
                }
            }
            Event::CData(c) => {
                let s = c.xml10_content();
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let name: &str = &r;
                let resolved = match name {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "apos" => Some('\''),
                    "quot" => Some('"'),
                    _ => r.resolve_char_ref().map_err(|e| bad(&e))?,
                };
                let c = resolved.ok_or_else(|| {
                    TreeError::Malformed(format!("reference to undefined entity &{name};"))
                })?;
                if let Some(el) = stack.last_mut() {
                    el.text.push(c);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(TreeError::Malformed(
            "document ends inside an element".into(),
        ));
    }
    root.ok_or(TreeError::Empty)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathStep {
    Dot,
    Any,
    Name {
        name: String,
        pred: Option<(String, String)>,
    },
    Attr(String),
}

fn parse_path(path: &str) -> Result<Vec<PathStep>, String> {
    let mut steps = Vec::new();
    // Split on '/' outside predicates.
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '/' if depth == 0 => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    let last = parts.len() - 1;
    for (i, part) in parts.into_iter().enumerate() {
        let part = part.trim();
        let step = if part == "." {
            PathStep::Dot
        } else if part == "*" {
            PathStep::Any
        } else if let Some(a) = part.strip_prefix('@') {
            if i != last || a.is_empty() {
                return Err(format!("'{path}': an @attribute must be the last step"));
            }
            PathStep::Attr(a.to_owned())
        } else if let Some((name, rest)) = part.split_once('[') {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("'{path}': unclosed predicate"))?;
            let (k, v) = inner
                .split_once('=')
                .ok_or_else(|| format!("'{path}': a predicate is [child=value]"))?;
            PathStep::Name {
                name: name.trim().to_owned(),
                pred: Some((k.trim().to_owned(), v.trim().to_owned())),
            }
        } else if part.is_empty() {
            return Err(format!("'{path}': empty step"));
        } else {
            PathStep::Name {
                name: part.to_owned(),
                pred: None,
            }
        };
        steps.push(step);
    }
    Ok(steps)
}

impl Element {
    /// An attribute's value by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// For a 2030.5 Notification's `Resource`, the type its `xsi:type` names: such an
    /// element is selected by that type's name, as the document it carries would be.
    fn resource_type(&self) -> Option<&str> {
        if self.name != "Resource" {
            return None;
        }
        let t = self.attr("type")?;
        Some(t.rsplit_once(':').map_or(t, |(_, local)| local))
    }

    fn matches(&self, step: &PathStep) -> bool {
        match step {
            PathStep::Any => true,
            PathStep::Name { name, pred } => {
                (self.name == *name || self.resource_type() == Some(name.as_str()))
                    && pred.as_ref().is_none_or(|(k, v)| {
                        self.relative(k).is_ok_and(|nodes| {
                            nodes.iter().any(|n| n.text().eq_ignore_ascii_case(v))
                        })
                    })
            }
            PathStep::Dot | PathStep::Attr(_) => false,
        }
    }

    fn descendants_or_self<'a>(&'a self, out: &mut Vec<&'a Element>) {
        out.push(self);
        for c in &self.children {
            c.descendants_or_self(out);
        }
    }

    /// The nodes a relative path reaches from this element.
    pub fn relative(&self, path: &str) -> Result<Vec<Node<'_>>, String> {
        let steps = parse_path(path)?;
        Ok(walk(vec![self], &steps))
    }

    /// The nodes a selection reaches: the first step matches this element or any descendant.
    pub fn select(&self, path: &str) -> Result<Vec<Node<'_>>, String> {
        let steps = parse_path(path)?;
        let Some((first, rest)) = steps.split_first() else {
            return Ok(Vec::new());
        };
        let start: Vec<&Element> = match first {
            PathStep::Dot => vec![self],
            PathStep::Attr(a) => {
                return Ok(self.attr(a).map(Node::Attr).into_iter().collect());
            }
            step => {
                let mut all = Vec::new();
                self.descendants_or_self(&mut all);
                all.into_iter().filter(|e| e.matches(step)).collect()
            }
        };
        Ok(walk(start, rest))
    }

    /// Elements below this one (not itself) matching one `Name[pred=value]` step.
    pub fn find_descendants(&self, step: &str) -> Result<Vec<&Element>, String> {
        let steps = parse_path(step)?;
        let [only @ PathStep::Name { .. }] = steps.as_slice() else {
            return Err(format!("'{step}' is not a single element name"));
        };
        let mut all = Vec::new();
        for c in &self.children {
            c.descendants_or_self(&mut all);
        }
        Ok(all.into_iter().filter(|e| e.matches(only)).collect())
    }
}

fn walk<'a>(mut current: Vec<&'a Element>, steps: &[PathStep]) -> Vec<Node<'a>> {
    for (i, step) in steps.iter().enumerate() {
        match step {
            PathStep::Dot => {}
            PathStep::Attr(a) => {
                debug_assert_eq!(i, steps.len() - 1);
                return current
                    .into_iter()
                    .filter_map(|e| e.attr(a).map(Node::Attr))
                    .collect();
            }
            step => {
                current = current
                    .into_iter()
                    .flat_map(|e| e.children.iter().filter(|c| c.matches(step)))
                    .collect();
            }
        }
    }
    current.into_iter().map(Node::Element).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DERControlList xmlns="urn:ieee:std:2030.5:ns" xmlns:csipaus="https://csipaus.org/ns/v1.3" href="/derc" all="2" results="2">
  <DERControl href="/derc/1" responseRequired="03">
    <mRID>AA</mRID><description>a &amp; b &#65;</description>
    <EventStatus><currentStatus>1</currentStatus></EventStatus>
    <DERControlBase><csipaus:opModExpLimW><multiplier>1</multiplier><value>150</value></csipaus:opModExpLimW></DERControlBase>
  </DERControl>
  <DERControl href="/derc/2"><mRID>BB</mRID><EventStatus><currentStatus>0</currentStatus></EventStatus><DERControlBase/></DERControl>
</DERControlList>"#;

    #[test]
    fn parses_names_namespaces_attributes_and_text() {
        let root = parse(LIST).unwrap();
        assert_eq!(root.name, "DERControlList");
        assert_eq!(root.ns.as_deref(), Some("urn:ieee:std:2030.5:ns"));
        assert_eq!(root.attr("all"), Some("2"));
        assert_eq!(root.children.len(), 2);
        let desc = root.select("DERControl/description").unwrap();
        assert_eq!(desc[0].text(), "a & b A");
        let exp = root.select("opModExpLimW").unwrap();
        let el = exp[0].element().unwrap();
        assert_eq!(el.ns.as_deref(), Some("https://csipaus.org/ns/v1.3"));
        assert_eq!(el.child("value").unwrap().text, "150");
    }

    #[test]
    fn a_notification_resource_is_selected_by_its_xsi_type() {
        let root = parse(
            r#"<Notification xmlns="urn:ieee:std:2030.5:ns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><subscribedResource>/edev</subscribedResource><Resource xsi:type="EndDeviceList" all="1" results="1" pollRate="30"><EndDevice><lFDI>AB</lFDI></EndDevice></Resource><status>0</status></Notification>"#,
        )
        .unwrap();
        let lists = root.select("EndDeviceList").unwrap();
        assert_eq!(lists.len(), 1);
        assert_eq!(
            root.select("EndDeviceList/@pollRate").unwrap()[0].text(),
            "30"
        );
        assert_eq!(
            root.select("Notification/Resource/EndDevice")
                .unwrap()
                .len(),
            1
        );
        assert!(root.select("DERControlList").unwrap().is_empty());
    }

    #[test]
    fn selections_predicates_and_attributes() {
        let root = parse(LIST).unwrap();
        assert_eq!(root.select("DERControl").unwrap().len(), 2);
        assert_eq!(root.select("DERControlList/DERControl").unwrap().len(), 2);
        assert_eq!(root.select("DERControl[mRID=aa]").unwrap().len(), 1);
        assert_eq!(
            root.select("DERControl[EventStatus/currentStatus=0]/mRID")
                .unwrap()[0]
                .text(),
            "BB"
        );
        assert_eq!(root.select("DERControl[@href=/derc/2]").unwrap().len(), 1);
        let hrefs: Vec<_> = root
            .select("DERControl/@href")
            .unwrap()
            .iter()
            .map(|n| n.text().to_owned())
            .collect();
        assert_eq!(hrefs, ["/derc/1", "/derc/2"]);
        assert_eq!(root.select("@results").unwrap()[0].text(), "2");
        let first = root.select("DERControl").unwrap()[0].element().unwrap();
        assert_eq!(
            first.relative("EventStatus/currentStatus").unwrap()[0].text(),
            "1"
        );
        assert_eq!(first.relative("@responseRequired").unwrap()[0].text(), "03");
        assert!(first.relative("DERControlBase/rampTms").unwrap().is_empty());
        assert_eq!(
            root.find_descendants("DERControl[mRID=BB]").unwrap().len(),
            1
        );
        assert!(root.select("a/@b/c").is_err());
    }

    #[test]
    fn refuses_doctype_and_malformed_documents() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Time>&a;</Time>"#;
        assert_eq!(parse(laughs), Err(TreeError::Doctype));
        assert!(matches!(
            parse("<Time><a></Time>"),
            Err(TreeError::Malformed(_))
        ));
        assert!(matches!(parse("<a/><b/>"), Err(TreeError::Malformed(_))));
        assert_eq!(parse("   "), Err(TreeError::Empty));
        assert!(matches!(parse("<x:a/>"), Err(TreeError::Malformed(_))));
    }
}
