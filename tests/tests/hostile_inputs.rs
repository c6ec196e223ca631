//! Hostile files, through the binary (issue 8).
//!
//! - Bounded parsing (item 4): `irr validate` on bombs of several shapes answers exit 2 with
//!   a diagnostic naming what was too large, using under 1 s of CPU and under 64 MiB of memory
//!   (the child's own `ru_maxrss`, from `wait4`), and never hangs (a FIFO, `/dev/zero`).
//! - Verification (item 6): a FIFO, a symbolic link, a directory or a grown file in place of
//!   a sealed item is tampering (exit 3), answered at once.
//! - Fault-injection hooks are not in release builds (item 9).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use irr_tests::irr_bin;

/// What one `irr validate` cost.
struct Cost {
    code: Option<i32>,
    output: String,
    cpu: Duration,
    max_rss_kib: i64,
    wall: Duration,
}

/// Runs `irr validate PATH` and measures it with `wait4` (this child's usage only). Kills it
/// after 20 s, which fails the test. The peak memory is an upper bound: a child spawned with
/// `vfork` starts from this test process's own peak, so the tests here keep it small.
fn validate(path: &Path) -> Cost {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    // Reaped by the `wait4` below (which also gives its usage), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(irr_bin())
        .arg("validate")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(out_file.reopen().unwrap())
        .stderr(out_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (status, usage) = loop {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a pid of our own child, valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break (status, usage);
        }
        if started.elapsed() > Duration::from_secs(20) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("irr validate {} did not answer in 20 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Cost {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        output: std::fs::read_to_string(out_file.path()).unwrap_or_default(),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        wall: started.elapsed(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A playbook head, then `body` as the value of `metadata.labels`.
fn playbook_with(body: &str) -> String {
    format!(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata:\n  name: bomb\n  version: 1.0.0\n  description: d\n  owner: o@example.com\n  labels: {body}\nsteps:\n  - id: s\n    action: control.wait\n    with: {{seconds: 1}}\n"
    )
}

/// The bombs: (name, file, words the refusal must contain).
fn bombs(dir: &Path) -> Vec<(String, PathBuf, Vec<&'static str>)> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runner/tests/fixtures/invalid");
    let mut v: Vec<(String, PathBuf, Vec<&'static str>)> = [
        ("alias-bomb-text.yaml", vec!["alias", "anchor"]),
        ("alias-bomb-sequences.yaml", vec!["alias", "anchor"]),
        ("alias-bomb-mappings.yaml", vec!["alias", "anchor"]),
        ("alias-nests-too-deep.yaml", vec!["alias"]),
        ("alias-too-many.yaml", vec!["alias"]),
    ]
    .into_iter()
    .map(|(f, w)| (f.to_owned(), fixtures.join(f), w))
    .collect();
    // Ten levels of ten aliases each, in flow style on one line per level.
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    v.push((
        "laughs".into(),
        write(dir, "laughs.yaml", &laughs),
        vec!["alias"],
    ));
    // Merge keys: one anchor merged a thousand times over.
    let mut merges = String::from("base: &b {k0: 0, k1: 1, k2: 2, k3: 3}\n");
    for i in 0..1500 {
        merges.push_str(&format!("m{i}: {{<<: [*b, *b, *b]}}\n"));
    }
    v.push((
        "merge-keys".into(),
        write(dir, "merges.yaml", &merges),
        vec!["alias"],
    ));
    // Nesting: 100,000 open brackets; 2,000 levels of block mappings.
    v.push((
        "deep-flow".into(),
        write(dir, "deep-flow.yaml", &playbook_with(&"[".repeat(100_000))),
        vec!["nest"],
    ));
    let mut block = String::new();
    for i in 0..2000 {
        block.push_str(&" ".repeat(i));
        block.push_str("a:\n");
    }
    v.push((
        "deep-block".into(),
        write(dir, "deep-block.yaml", &block),
        vec!["nest"],
    ));
    // Size: 3 MiB of comments; one scalar of 1.9 MiB on one line (accepted as a label: the
    // refusal is of the step's unknown action); 150,000 values.
    v.push((
        "too-big".into(),
        write(dir, "big.yaml", &"# x\n".repeat(3 << 18)),
        vec!["MiB"],
    ));
    v.push((
        "long-line".into(),
        write(
            dir,
            "long-line.yaml",
            &playbook_with(&format!("[{}]", "y".repeat(1_900_000))),
        ),
        vec!["unknown action"],
    ));
    let many: String = (0..150_000).map(|i| format!("- {i}\n")).collect();
    v.push((
        "many-values".into(),
        write(dir, "many.yaml", &many),
        vec!["values"],
    ));
    v
}

#[test]
fn bombs_are_refused_in_bounded_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, path, words) in bombs(dir.path()) {
        let c = validate(&path);
        report.push(format!(
            "{name}: exit {:?}, cpu {:?}, wall {:?}, max rss {} KiB",
            c.code, c.cpu, c.wall, c.max_rss_kib
        ));
        if c.code != Some(2) {
            failures.push(format!("{name}: exit {:?}: {}", c.code, c.output));
        }
        let lower = c.output.to_lowercase();
        for w in &words {
            if !lower.contains(&w.to_lowercase()) {
                failures.push(format!(
                    "{name}: the refusal does not say {w:?}: {}",
                    c.output
                ));
            }
        }
        if c.output.len() > 64 * 1024 {
            failures.push(format!("{name}: {} bytes of output", c.output.len()));
        }
        if c.cpu > Duration::from_secs(1) {
            failures.push(format!("{name}: {:?} of CPU", c.cpu));
        }
        if c.max_rss_kib > 64 * 1024 {
            failures.push(format!("{name}: {} KiB of memory", c.max_rss_kib));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{}\n\n{}",
        failures.join("\n"),
        report.join("\n")
    );
}

/// A FIFO nobody writes to and `/dev/zero` in place of a playbook: refused, never a hang.
#[test]
fn special_files_never_hang_validate() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("playbook.yaml");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for path in [fifo.as_path(), Path::new("/dev/zero")] {
        let c = validate(path);
        assert_eq!(c.code, Some(2), "{}: {}", path.display(), c.output);
        assert!(c.wall < Duration::from_secs(10), "{:?}", c.wall);
        assert!(c.max_rss_kib < 64 * 1024, "{} KiB", c.max_rss_kib);
        assert!(
            c.output.contains(path.to_str().unwrap()),
            "names the file: {}",
            c.output
        );
    }
}

/// Verification cannot be fooled or hung (issue 8, item 6), through the binary: a bundle
/// sealed by a local run, then an item replaced by a FIFO, by a symbolic link to its own
/// genuine bytes, by a directory, or grown by a byte. Each is tampering (exit 3), named, and
/// answered at once; the genuine bundle verifies (exit 0).
#[test]
fn verify_treats_special_files_as_tampering_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let pb = write(
        dir.path(),
        "capture.yaml",
        "apiVersion: irr/v1\nkind: Playbook\nmetadata:\n  name: capture-only\n  version: 1.0.0\n  description: d\n  owner: o@example.com\nsteps:\n  - id: note\n    action: evidence.capture\n    with:\n      name: note.txt\n      content: the responder's note\n",
    );
    let state = dir.path().join("state");
    let evidence = dir.path().join("evidence");
    let irr = |args: &[&str]| {
        Command::new(irr_bin())
            .args(args)
            .arg("--state-dir")
            .arg(&state)
            .env_remove("IRR_FAULT_KILL_AT_SEQ")
            .env_remove("IRR_FAULT_SIGINT_AT_SEQ")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = irr(&[
        "run",
        pb.to_str().unwrap(),
        "--case",
        "IR-verify",
        "--yes",
        "--evidence",
        evidence.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["event"] == "evidence_sealed")
        .expect("sealed");
    let loc = PathBuf::from(sealed["location"].as_str().unwrap());
    let item = loc.join("artifacts/note/note.txt");
    let genuine = std::fs::read(&item).unwrap();
    let keep = dir.path().join("genuine.txt");
    std::fs::write(&keep, &genuine).unwrap();

    let verify = || {
        let started = Instant::now();
        let v = irr(&["evidence", "verify", loc.to_str().unwrap()]);
        let elapsed = started.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}: {text}");
        (v.status.code(), text)
    };
    assert_eq!(verify().0, Some(0), "the genuine bundle: {}", verify().1);

    let fifo = std::ffi::CString::new(item.to_str().unwrap()).unwrap();
    let mut grown = genuine.clone();
    grown.push(b'x');
    type Plant = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Plant)> = vec![
        (
            "fifo",
            Box::new(move |_: &Path| {
                // SAFETY: a valid C string.
                assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
            }),
        ),
        (
            "symlink",
            Box::new({
                let keep = keep.clone();
                move |p: &Path| std::os::unix::fs::symlink(&keep, p).unwrap()
            }),
        ),
        (
            "directory",
            Box::new(|p: &Path| std::fs::create_dir(p).unwrap()),
        ),
        (
            "one byte more",
            Box::new(move |p: &Path| std::fs::write(p, &grown).unwrap()),
        ),
    ];
    for (what, plant) in cases {
        std::fs::remove_file(&item).unwrap();
        plant(&item);
        let (code, text) = verify();
        assert_eq!(code, Some(3), "{what}: {text}");
        assert!(
            text.contains("artifacts/note/note.txt"),
            "{what}: names the item: {text}"
        );
        // Back to the genuine bytes for the next case.
        if item.is_dir() && !item.is_symlink() {
            std::fs::remove_dir(&item).unwrap();
        } else {
            std::fs::remove_file(&item).unwrap();
        }
        std::fs::write(&item, &genuine).unwrap();
        assert_eq!(verify().0, Some(0), "{what}: restored");
    }
}

/// Whether the file holds `needle`, read in 1 MiB pieces: this test process stays small, as
/// [`validate`]'s measure needs (a child spawned with `vfork` starts its peak from ours).
fn file_contains(path: &Path, needle: &[u8]) -> bool {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; (1 << 20) + needle.len()];
    let mut kept = 0;
    loop {
        let n = f.read(&mut buf[kept..]).unwrap();
        if n == 0 {
            return false;
        }
        let end = kept + n;
        if buf[..end].windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        kept = (needle.len() - 1).min(end);
        buf.copy_within(end - kept..end, 0);
    }
}

/// Fault-injection hooks (issue 8, item 9) are compiled into debug builds only: the binary
/// under test has them exactly when it is a debug build, like this test. Run under
/// `cargo test --release`, the same test proves a release `irr` has no hook.
#[test]
fn fault_hooks_are_only_in_debug_builds() {
    for hook in ["IRR_FAULT_KILL_AT_SEQ", "IRR_FAULT_SIGINT_AT_SEQ"] {
        let present = file_contains(&irr_bin(), hook.as_bytes());
        assert_eq!(
            present,
            cfg!(debug_assertions),
            "{hook} in {} (debug build: {})",
            irr_bin().display(),
            cfg!(debug_assertions)
        );
    }
}
