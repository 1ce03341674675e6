//! The command-line tools as an operator runs them: exit status, files, messages.
#![allow(clippy::unwrap_used)] // Test helpers: a failure here is a test failure.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn totemctl(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_totemctl"), args)
}

fn totemd(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_totemd"), args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example_with_key(dir: &Path) -> (String, String) {
    let key = dir.join("authkey");
    assert!(totemctl(&["keygen", "--key-file", key.to_str().unwrap()]).status.success());
    let text = include_str!("../examples/totem.conf").replace("/etc/totem/authkey", key.to_str().unwrap());
    let conf = dir.join("totem.conf");
    std::fs::write(&conf, text).unwrap();
    (conf.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned())
}

// Goal: `totemctl keygen` writes a 256-byte key with mode 0400, refuses to overwrite it
// without --force (exit non-zero, saying so), replaces it with --force, and rejects sizes
// outside corosync-keygen's range.
#[test]
fn totemctl_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authkey");
    let k = key.to_str().unwrap();
    let o = totemctl(&["keygen", "--key-file", k]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (256, 0o400));
    let first = std::fs::read(&key).unwrap();

    let o = totemctl(&["keygen", "--key-file", k]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&key).unwrap(), first);

    let o = totemctl(&["keygen", "--key-file", k, "--force", "--size", "512"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&key).unwrap().len(), 512);

    for size in ["127", "4097"] {
        assert!(!totemctl(&["keygen", "-k", k, "--force", "--size", size]).status.success());
    }
}

// Goal: `totemd -t` accepts the example configuration and prints its summary; without
// -t, a node whose address is taken exits with status 2, naming the address and the likely
// cause (the port is held by this test, so the outcome does not depend on the machine).
#[test]
fn totemd_checks_example() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, _) = example_with_key(dir.path());
    let o = totemd(&["-t", "-c", &conf]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "no warnings: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("is valid") && out.contains("token 3650"), "{out}");

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&conf).unwrap();
    let text = text.replacen("ring0_addr: 127.0.0.1\n", &format!("ring0_addr: 127.0.0.1:{port}\n"), 1);
    std::fs::write(&conf, text).unwrap();
    let state = dir.path().join("state");
    let run = dir.path().join("run");
    let o =
        totemd(&["-c", &conf, "--state-dir", state.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("cannot bind 127.0.0.1:{port}"))
            && stderr(&o).contains("Address already in use"),
        "{}",
        stderr(&o)
    );
    drop(taken);
}

// Goal: a bad value makes `totemd -t` fail with file, line and key; warnings are printed
// but do not fail the check.
#[test]
fn totemd_reports_errors_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, key) = example_with_key(dir.path());
    let text = std::fs::read_to_string(&conf).unwrap();

    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, text.replace("join: 50", "join: fifty")).unwrap();
    let o = totemd(&["-t", "-c", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let line = text.lines().position(|l| l.contains("join: 50")).unwrap() + 1;
    let expected = format!("{}:{line}: totem.join: \"fifty\" is not a number", bad.display());
    assert!(stderr(&o).contains(&expected), "{}\nwanted {expected}", stderr(&o));

    let warn = dir.path().join("warn.conf");
    std::fs::write(&warn, text.replace("# transport: knet", "transport: knet\n\tknet_mtu: 0")).unwrap();
    let o = totemd(&["-t", "-c", warn.to_str().unwrap(), "--key-file", &key]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("totem.knet_mtu: accepted but not acted on"), "{}", stderr(&o));
    assert!(stderr(&o).contains("totem.transport: knet is read as Totem's unicast UDP"), "{}", stderr(&o));
}

// Goal: a missing key fails the check with advice to run keygen; --key-file overrides
// the configured path.
#[test]
fn totemd_checks_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, key) = example_with_key(dir.path());
    let missing = dir.path().join("nokey");
    let o = totemd(&["-t", "-c", &conf, "--key-file", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("totemctl keygen"), "{}", stderr(&o));
    let short = dir.path().join("short");
    std::fs::write(&short, [7u8; 64]).unwrap();
    let o = totemd(&["-t", "-c", &conf, "--key-file", short.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at least 128 bytes"), "{}", stderr(&o));
    assert!(totemd(&["-t", "-c", &conf, "--key-file", &key, "--nodeid", "3"]).status.success());
    let o = totemd(&["-t", "-c", &conf, "--nodeid", "9"]);
    assert!(stderr(&o).contains("--nodeid: node id 9 is not in the nodelist"), "{}", stderr(&o));
}
