//! Runs the example programs end to end (cargo builds them for `cargo test`).

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.pop();
    p.push("examples");
    p.push(name);
    assert!(p.exists(), "{} not built", p.display());
    p
}

#[test]
fn downloader_fetches_everything_within_the_limit() {
    let out = Command::new(example("downloader"))
        .args(["60", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // File 13 does not exist on the server (404, not retried); every other file
    // arrives intact after its retries.
    assert!(stdout.contains("59 succeeded, 1 failed"), "{stdout}");
    assert!(stdout.contains("file  13: FAILED: HTTP 404"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("in flight at once"))
        .unwrap();
    let n: usize = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!((1..=5).contains(&n), "{line}");
}

#[test]
fn tour_runs() {
    let out = Command::new(example("tour")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn echo_client_checks_every_byte() {
    let out = Command::new(example("echo_client"))
        .args(["local", "200", "20", "512"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&(200 * 20 * 512).to_string()), "{stdout}");
}
