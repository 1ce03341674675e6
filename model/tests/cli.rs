//! The `model` binary: verdicts, exit status, counterexamples, the Explorer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn model() -> Command {
    Command::new(env!("CARGO_BIN_EXE_model"))
}

// Goal: a clean run prints the statistics and every verdict, and exits 0.
#[test]
fn check_reports_and_exits_zero() {
    let out = model()
        .args(["check", "--nodes", "2", "--msgs", "1", "--timers", "quiet", "--visits", "4", "--rings", "0"])
        .output()
        .expect("run model");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in
        ["states explored:", "unique states:", "states/second:", "maximum depth:", "exhaustive", "EVS-6a"]
    {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(text.contains("holds"), "{text}");
}

// Goal: a violation prints a step-by-step counterexample and exits 1.
#[cfg(feature = "broken")]
#[test]
fn violation_exits_one_with_counterexample() {
    let out = model()
        .args(["check", "--nodes", "2", "--msgs", "1", "--guarantee", "safe", "--depth", "6"])
        .args(["--bug", "safe-on-first-receipt"])
        .output()
        .expect("run model");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("VIOLATED"), "{text}");
    assert!(text.contains("=== counterexample for EVS-7"), "{text}");
    assert!(text.contains("step 1:"), "{text}");
}

// Goal: the CPG options turn the service on: its properties are judged and reported.
#[test]
fn cpg_check_reports_cpg_properties() {
    let out = model()
        .args(["check", "--nodes", "2", "--cpg-members", "1,2", "--msgs", "1", "--timers", "quiet"])
        .args(["--visits", "6", "--rings", "0"])
        .output()
        .expect("run model");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "CPG members [1, 2]",
        "CPG-1 ",
        "CPG-15 ",
        "sometimes: a CPG view change with NODEDOWN",
        "exhaustive",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("CPG-7 ") && !text.contains("CPG-11 "), "liveness properties listed:\n{text}");
}

// Goal: a CPG counterexample tells the story in CPG terms (view changes with reasons).
#[cfg(feature = "broken")]
#[test]
fn cpg_counterexample_shows_view_changes() {
    let out = model()
        .args(["check", "--nodes", "3", "--cpg-members", "1,2,3", "--msgs", "0", "--crashes", "2"])
        .args(["--timers", "quiet", "--visits", "12", "--rings", "1", "--bug", "cpg-nodedown-per-node"])
        .output()
        .expect("run model");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("=== counterexample for CPG-"), "{text}");
    assert!(text.contains("NodeDown"), "{text}");
    assert!(text.contains("conn 1 view of \"g\""), "{text}");
}

// Goal: without the `broken` feature, --bug is refused with a hint.
#[cfg(not(feature = "broken"))]
#[test]
fn bug_needs_the_feature() {
    let out = model().args(["check", "--bug", "DeliverPastGap"]).output().expect("run model");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features broken"));
}

// Goal: the Explorer refuses non-loopback addresses.
#[test]
fn explorer_serves_loopback_only() {
    let out = model().args(["explore", "--addr", "0.0.0.0:3999"]).output().expect("run model");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

// Goal: the Explorer answers on loopback.
// Method: start it on a free port, fetch its status page, stop it.
#[test]
fn explorer_answers() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = model()
        .args([
            "explore", "--nodes", "2", "--msgs", "1", "--timers", "quiet", "--visits", "4", "--addr", &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start explorer");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut response = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let _ = write!(s, "GET /.status HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            let _ = s.read_to_string(&mut response);
            if !response.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.") && response.contains("200"), "{response}");
}
