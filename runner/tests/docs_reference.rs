//! The action catalog of `docs/playbook-reference.md` is derived from the actions'
//! declarations (`catalog::reference_markdown`, `catalog::reference_overview`): this test fails
//! when the document and the code disagree. `IRR_BLESS_DOCS=1 cargo test -p irr-runner --test
//! docs_reference` rewrites the generated parts (each action's section from its heading to its
//! **Undo** line, and the overview table), keeping the hand-written notes after them.

use irr_runner::catalog;

fn doc_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/playbook-reference.md")
}

/// The byte range of the generated part of `name`'s section in `doc`.
fn section(doc: &str, name: &str) -> Option<std::ops::Range<usize>> {
    let start = doc.find(&format!("\n### `{name}`\n"))? + 1;
    let undo = start + doc[start..].find("\n- **Undo:** ")? + 1;
    let end = undo + doc[undo..].find('\n').map_or(doc.len() - undo, |i| i + 1);
    Some(start..end)
}

fn overview(doc: &str) -> Option<std::ops::Range<usize>> {
    let start = doc.find("| action | changes AWS | undo |\n")?;
    let end = start + doc[start..].find("\n\n")? + 1;
    Some(start..end)
}

#[test]
fn the_reference_documents_every_action_as_declared() {
    let path = doc_path();
    let mut doc = std::fs::read_to_string(&path).unwrap();
    let bless = std::env::var_os("IRR_BLESS_DOCS").is_some();
    let mut wrong = Vec::new();
    for a in catalog::all() {
        let want = catalog::reference_markdown(a);
        match section(&doc, a.name) {
            Some(r) if doc[r.clone()] == want => {}
            Some(r) if bless => doc.replace_range(r, &want),
            Some(r) => wrong.push(format!(
                "{}: the document says\n{}\nthe declaration says\n{want}",
                a.name, &doc[r]
            )),
            None => wrong.push(format!(
                "{}: no section `### `{}`` with an **Undo** line",
                a.name, a.name
            )),
        }
    }
    let want = catalog::reference_overview();
    match overview(&doc) {
        Some(r) if doc[r.clone()] == want => {}
        Some(r) if bless => doc.replace_range(r, &want),
        Some(r) => wrong.push(format!(
            "overview table: the document says\n{}\nthe catalog says\n{want}",
            &doc[r]
        )),
        None => wrong.push("no overview table".to_owned()),
    }
    if bless {
        std::fs::write(&path, doc).unwrap();
    }
    assert!(
        wrong.is_empty(),
        "docs/playbook-reference.md disagrees with the actions' declarations \
         (IRR_BLESS_DOCS=1 cargo test -p irr-runner --test docs_reference rewrites it):\n\n{}",
        wrong.join("\n\n")
    );
}

#[test]
fn a_section_ends_at_its_undo_line() {
    let doc = "x\n### `a.b`\n\nS.\n\n- **Undo:** cannot be undone\n- a note\n";
    let r = section(doc, "a.b").unwrap();
    assert_eq!(&doc[r], "### `a.b`\n\nS.\n\n- **Undo:** cannot be undone\n");
}
