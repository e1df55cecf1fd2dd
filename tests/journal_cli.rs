//! `kuberay fixture run` journals every fixture on the engine's path, and the `journal` commands read it back:
//! replay gives 0 divergences, audit and why explain an object, and a damaged journal is reported (exit 2), never
//! passed off as clean.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kuberay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuberay")).args(args).output().expect("kuberay runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixtures() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/raycluster");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|entry| entry.expect("entry").path().to_string_lossy().into_owned())
        .filter(|path| path.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

/// A journal of every fixture, in a fresh directory of this test.
fn journal_of_fixtures(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuberay-journal-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut args = vec!["fixture", "run"];
    let files = fixtures();
    args.extend(files.iter().map(String::as_str));
    let dir_text = dir.to_string_lossy().into_owned();
    args.extend(["--journal", &dir_text]);
    let run = kuberay(&args);
    assert_eq!(run.status.code(), Some(0), "{}{}", text(&run.stdout), text(&run.stderr));
    assert_eq!(text(&run.stdout).lines().filter(|line| line.starts_with("ok ")).count(), files.len());
    dir
}

#[test]
fn every_fixture_replays_with_no_divergence() {
    let dir = journal_of_fixtures("replay");
    let replay = kuberay(&["journal", "replay", "--journal", dir.to_str().unwrap()]);
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay.stdout));
    let out = text(&replay.stdout);
    let summary = out.lines().last().unwrap_or_default();
    assert!(summary.starts_with("replayed ") && summary.ends_with(" 0 divergences"), "{out}");
    assert!(summary.contains(&format!(" {} objects,", fixtures().len())), "{out}");
}

#[test]
fn an_export_replays_like_the_journal_and_imports_into_another() {
    let dir = journal_of_fixtures("export");
    let dir = dir.to_str().unwrap();
    for format in ["jsonl", "bin"] {
        let file = format!("{dir}.{format}");
        let export = kuberay(&["journal", "export", "-o", &file, "--format", format, "--journal", dir]);
        assert_eq!(export.status.code(), Some(0), "{}", text(&export.stderr));
        let replay = kuberay(&["journal", "replay", "--file", &file]);
        assert_eq!(replay.status.code(), Some(0), "{}", text(&replay.stdout));
        assert!(text(&replay.stdout).trim_end().ends_with(" 0 divergences"));
        let copy = format!("{dir}-copy-{format}");
        let import = kuberay(&["journal", "import", &file, "--journal", &copy]);
        assert_eq!(import.status.code(), Some(0), "{}", text(&import.stderr));
        let stats = kuberay(&["journal", "stats", "--journal", &copy]);
        assert!(text(&stats.stdout).starts_with(&format!("objects {},", fixtures().len())), "{}", text(&stats.stdout));
    }
}

#[test]
fn audit_prints_one_line_per_transition_and_why_ends_with_the_state() {
    let dir = journal_of_fixtures("audit");
    let dir = dir.to_str().unwrap();
    let audit = kuberay(&["journal", "audit", "raycluster/default/raycluster-ft", "--journal", dir]);
    assert_eq!(audit.status.code(), Some(0));
    let out = text(&audit.stdout);
    // TIME TRIGGER FROM -> TO REASON [COMMANDS]
    assert!(
        out.lines().any(|line| line.starts_with("2025-01-01T00:00:00Z watch:Applied:RayCluster/raycluster-ft New -> ")),
        "{out}"
    );
    assert!(out.lines().any(|line| line.contains(" Deleting -> Deleted ClusterGone")), "{out}");
    let with_logs = kuberay(&["journal", "audit", "raycluster/default/raycluster-ft", "--logs", "--journal", dir]);
    assert_eq!(with_logs.status.code(), Some(0));
    assert_eq!(text(&with_logs.stdout), out, "no job ran here: --logs adds nothing");
    let why = kuberay(&["journal", "why", "raycluster/default/raycluster-kuberay", "--journal", dir]);
    assert_eq!(why.status.code(), Some(0));
    let why = text(&why.stdout);
    let lines: Vec<&str> = why.lines().collect();
    assert!(lines.iter().any(|line| line.starts_with("state: ")), "{why}");
    let seqs: Vec<u64> = lines.iter().filter_map(|line| line.split(' ').next()?.parse().ok()).collect();
    assert!(!seqs.is_empty() && seqs.windows(2).all(|pair| pair[0] < pair[1]), "oldest first: {why}");
    let unknown = kuberay(&["journal", "audit", "raycluster/default/nope", "--journal", dir]);
    assert_eq!(unknown.status.code(), Some(1));
}

/// Every file of sled's database, largest first.
fn sled_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.join("sled")];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files.sort_by_key(|path| std::cmp::Reverse(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)));
    files
}

fn assert_reported_not_clean(dir: &Path, what: &str) {
    let dir = dir.to_str().unwrap();
    for args in [
        vec!["journal", "replay", "--journal", dir],
        vec!["journal", "audit", "raycluster/default/raycluster-ft", "--journal", dir],
    ] {
        let output = kuberay(&args);
        let out = text(&output.stdout);
        // Never a panic (101), never a clean bill of health.
        assert_ne!(output.status.code(), Some(101), "{what}: {args:?} panicked: {}", text(&output.stderr));
        assert_ne!(output.status.code(), Some(0), "{what}: {args:?} exited 0:\n{out}");
        if args[1] == "replay" {
            assert!(!out.trim_end().ends_with(" 0 divergences"), "{what}: replay looks clean:\n{out}");
        }
    }
}

#[test]
fn a_marker_ahead_of_the_data_is_reported() {
    let full = journal_of_fixtures("marker");
    let marker =
        std::fs::read_dir(&full).unwrap().flatten().map(|e| e.path()).find(|p| p.is_file()).expect("the marker");
    // A journal of one fixture, given the marker of all of them: it promises records the data does not hold.
    let short = std::env::temp_dir().join(format!("kuberay-journal-cli-{}-marker-short", std::process::id()));
    let _ = std::fs::remove_dir_all(&short);
    let run = kuberay(&["fixture", "run", &fixtures()[0], "--journal", short.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0));
    std::fs::copy(&marker, short.join(marker.file_name().unwrap())).unwrap();
    let replay = kuberay(&["journal", "replay", "--journal", short.to_str().unwrap()]);
    let out = text(&replay.stdout);
    assert_eq!(replay.status.code(), Some(2), "{out}");
    assert!(out.contains("damage: ") && out.contains("missing"), "{out}");
    assert!(!out.trim_end().ends_with(" 0 divergences"), "{out}");
}

#[test]
fn flipped_bytes_in_sleds_files_are_reported_never_a_panic() {
    let dir = journal_of_fixtures("flip");
    let files = sled_files(&dir);
    let largest = files.first().expect("sled wrote files");
    let mut bytes = std::fs::read(largest).unwrap();
    let length = bytes.len();
    // Flip a run of bytes in the middle of the largest file, where the records live.
    for byte in &mut bytes[length / 3..length / 3 + 64] {
        *byte ^= 0xA5;
    }
    std::fs::write(largest, bytes).unwrap();
    assert_reported_not_clean(&dir, "flipped bytes");
}

#[test]
fn a_cut_tail_is_reported() {
    let dir = journal_of_fixtures("cut");
    let files = sled_files(&dir);
    let largest = files.first().expect("sled wrote files");
    let length = std::fs::metadata(largest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(largest).unwrap().set_len(length / 2).unwrap();
    assert_reported_not_clean(&dir, "cut tail");
}
