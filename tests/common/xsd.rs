//! Validation of XML documents against the official IEEE 2030.5 and CSIP-AUS schemas with
//! xmllint. sep.xsd may not be redistributed, so it is read from ../shared/standards (or
//! SWITCHYARD_SEP_XSD_DIR); without it the tests say SKIPPED loudly, and fail when CI=true.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard::protocol::sep2::xml::CsipAusVersion;

/// Paths of the three schemas a document can be validated against.
pub struct Schemas {
    pub sep: PathBuf,
    pub csipaus_v1_3: PathBuf,
    pub csipaus_v1_2: PathBuf,
    /// Holds the v1.2 link farm (see [`schemas`]) and the documents written for xmllint.
    pub work: tempfile::TempDir,
}

impl Schemas {
    pub fn csipaus(&self, version: CsipAusVersion) -> &Path {
        match version {
            CsipAusVersion::V1_2 => &self.csipaus_v1_2,
            CsipAusVersion::V1_3 => &self.csipaus_v1_3,
        }
    }
}

/// Skips (loudly) or fails, depending on whether this is CI.
pub fn missing(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (required when CI=true)");
    }
    eprintln!("\n==================================================================");
    eprintln!("SKIPPED: {reason}");
    eprintln!("Set SWITCHYARD_SEP_XSD_DIR and install xmllint (libxml2-utils) to run it.");
    eprintln!("==================================================================\n");
}

/// Finds the schemas and xmllint, or reports why not (see [`missing`]) and returns `None`.
pub fn schemas() -> Option<Schemas> {
    let dir = std::env::var_os("SWITCHYARD_SEP_XSD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/ieee2030.5")
        });
    let sep = dir.join("sep.xsd");
    if !sep.is_file() {
        missing(&format!("sep.xsd not found at {}", sep.display()));
        return None;
    }
    for name in [
        "csipaus-core-v1.2.xsd",
        "csipaus-ext-v1.2.xsd",
        "csipaus-core-v1.3.xsd",
        "csipaus-ext-v1.3.xsd",
    ] {
        if !dir.join(name).is_file() {
            missing(&format!("{name} not found in {}", dir.display()));
            return None;
        }
    }
    if Command::new("xmllint").arg("--version").output().is_err() {
        missing("xmllint not found on PATH (Debian: apt-get install -y libxml2-utils)");
        return None;
    }

    // csipaus-core-v1.2.xsd imports its extension as "csipaus-ext.xsd", but the file is
    // published as csipaus-ext-v1.2.xsd. Link the files under the names the schema uses in a
    // temporary directory (links, not copies: sep.xsd must not be duplicated).
    let work = tempfile::tempdir().expect("temporary directory");
    let v12 = work.path().join("csipaus-v1.2");
    fs::create_dir(&v12).expect("create v1.2 schema directory");
    for (target, link) in [
        ("sep.xsd", "sep.xsd"),
        ("csipaus-core-v1.2.xsd", "csipaus-core-v1.2.xsd"),
        ("csipaus-ext-v1.2.xsd", "csipaus-ext.xsd"),
    ] {
        let target = dir.join(target).canonicalize().expect("schema path");
        link_schema(&target, &v12.join(link));
    }

    Some(Schemas {
        sep,
        csipaus_v1_3: dir.join("csipaus-core-v1.3.xsd"),
        csipaus_v1_2: v12.join("csipaus-core-v1.2.xsd"),
        work,
    })
}

/// Makes `link` name the schema `target` for xmllint.
#[cfg(unix)]
pub fn link_schema(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("link schema");
}

/// Makes `link` name the schema `target` for xmllint. Without symlinks, a private copy in
/// the test's temporary directory (deleted with it).
#[cfg(not(unix))]
pub fn link_schema(target: &Path, link: &Path) {
    fs::copy(target, link).expect("copy schema");
}

/// One XML document to validate, with a name for the error messages.
pub struct Doc {
    pub name: String,
    pub xml: String,
}

/// Runs xmllint once over all `docs`; returns whether it exited 0, and its report.
pub fn run_xmllint(schemas: &Schemas, schema: &Path, label: &str, docs: &[Doc]) -> (bool, String) {
    let dir = schemas.work.path().join(label);
    fs::create_dir_all(&dir).expect("document directory");
    let mut files = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let file = dir.join(format!("{i:03}-{}.xml", doc.name));
        fs::write(&file, &doc.xml).expect("write document");
        files.push(file);
    }
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema)
        .args(&files)
        .output()
        .expect("run xmllint");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Validates all `docs` against `schema` in one xmllint run; fails naming every invalid one.
pub fn validate(schemas: &Schemas, schema: &Path, label: &str, docs: &[Doc]) {
    let (ok, report) = run_xmllint(schemas, schema, label, docs);
    if !ok {
        let mut failed = String::new();
        for doc in docs {
            if report.contains(&format!("-{}.xml:", doc.name)) {
                failed.push_str(&format!("--- {}:\n{}\n", doc.name, doc.xml));
            }
        }
        panic!("xmllint ({label}) refused documents:\n{report}\n{failed}");
    }
    assert_eq!(
        report.lines().filter(|l| l.ends_with(" validates")).count(),
        docs.len(),
        "xmllint did not report every document of {label} as valid:\n{report}"
    );
}
