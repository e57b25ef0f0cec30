//! Validation of Green Button (ESPI Atom) feeds against the official ESPI 4.0 schema with
//! xmllint. `espi_4.0.xsd` is kept in schemas/greenbutton/ (Apache-2.0); it imports
//! `atom.xsd`, which the Green Button folder does not ship. The Atom schema of the OpenADR
//! 2.0b folder serves (../shared/standards/greenbutton/SOURCES.md), but may not be
//! republished, so it is read from ../shared/standards/openadr2b/ (or
//! SWITCHYARD_ATOM_XSD_DIR) at test time and linked beside espi_4.0.xsd in a temporary
//! directory. Without it, or without xmllint, tests say SKIPPED (and fail when CI=true).

use super::xsd::{link_schema, missing};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory holding espi_4.0.xsd with the Atom schema it imports.
pub struct EspiSchema {
    pub xsd: PathBuf,
    _dir: tempfile::TempDir,
}

/// Finds the schemas and xmllint, or reports why not and returns `None`.
pub fn espi_schema() -> Option<EspiSchema> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let espi = root.join("schemas/greenbutton/espi_4.0.xsd");
    let atom_dir = std::env::var_os("SWITCHYARD_ATOM_XSD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/standards/openadr2b"));
    for f in ["oadr_atom.xsd", "oadr_xml.xsd"] {
        if !atom_dir.join(f).is_file() {
            missing(&format!(
                "{f} (the Atom schema espi_4.0.xsd imports) not found in {}",
                atom_dir.display()
            ));
            return None;
        }
    }
    if Command::new("xmllint").arg("--version").output().is_err() {
        missing("xmllint not found on PATH (Debian: apt-get install -y libxml2-utils)");
        return None;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    for (target, link) in [
        (espi.clone(), "espi_4.0.xsd"),
        (atom_dir.join("oadr_atom.xsd"), "atom.xsd"),
        (atom_dir.join("oadr_xml.xsd"), "oadr_xml.xsd"),
    ] {
        link_schema(
            &target.canonicalize().expect("schema path"),
            &dir.path().join(link),
        );
    }
    Some(EspiSchema {
        xsd: dir.path().join("espi_4.0.xsd"),
        _dir: dir,
    })
}

impl EspiSchema {
    /// Runs xmllint on `xml`; Ok(()) when valid, else xmllint's report.
    pub fn check(&self, name: &str, xml: &str) -> Result<(), String> {
        let file = self._dir.path().join(format!("{name}.xml"));
        std::fs::write(&file, xml).expect("write document");
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&self.xsd)
            .arg(&file)
            .output()
            .expect("run xmllint");
        let report = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() && report.contains(" validates") {
            Ok(())
        } else {
            Err(report)
        }
    }

    /// Panics with xmllint's report unless `xml` is valid.
    pub fn validate(&self, name: &str, xml: &str) {
        if let Err(report) = self.check(name, xml) {
            panic!("{name} is not valid ESPI 4.0:\n{report}");
        }
    }
}
