//! The application the SAM tests supervise. It uses the SAM client library as a real
//! application would and follows a script chosen per instance, logging what it does (with
//! wall-clock milliseconds) to a file the test reads afterwards.
//!
//! ```text
//! sam-test-app --log FILE [--script ID=STEPS]... [--default STEPS]
//! ```
//!
//! STEPS is a comma-separated list:
//! `init`, `register`, `start`, `stop`, `finalize`, `hb:N:MS` (N heartbeats, MS apart),
//! `sleep:MS`, `exit:CODE`, `abort`, `hang`, `data-store:N`, `data-check:N`, `data-clear`,
//! `size-check:N`, `cb:K` (event-driven checking; the callback fails on its K-th call),
//! `warn:SIG`, `term-exits:CODE` (SIGTERM makes the process exit with CODE instead of
//! being logged and ignored), `mark-failed`, `api` (the SAM-7 state checks), `reinit`.
//! The data of `data-store:N` is a fixed pattern of N bytes covering every byte value, so
//! `data-check:N` in a later instance can compare byte for byte. A failed step logs
//! `error ...` and exits with status 99.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use totem_node::sam::{Sam, SamError, SamState, Signal};

static LOG: Mutex<Option<PathBuf>> = Mutex::new(None);
static INSTANCE: AtomicI32 = AtomicI32::new(0);
/// -1: SIGTERM is logged and ignored; otherwise the exit status on SIGTERM.
static TERM_EXIT: AtomicI32 = AtomicI32::new(-1);

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn log(event: &str) {
    let line = format!("{} {} {} {event}\n", now_ms(), INSTANCE.load(Ordering::Relaxed), std::process::id());
    let path = LOG.lock().ok().and_then(|p| p.clone());
    if let Some(path) = path
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + n) % 256) as u8).collect()
}

/// Log SIGTERM and SIGUSR1/2 as they arrive (SIGTERM exits if `term-exits` said so).
fn watch_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut usr1), Ok(mut usr2)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::user_defined1()),
                signal(SignalKind::user_defined2()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {
                        log("signal SIGTERM");
                        let code = TERM_EXIT.load(Ordering::Relaxed);
                        if code >= 0 {
                            std::process::exit(code);
                        }
                    }
                    _ = usr1.recv() => log("signal SIGUSR1"),
                    _ = usr2.recv() => log("signal SIGUSR2"),
                }
            }
        });
    });
}

struct App {
    sam: Option<Sam>,
}

fn fail(what: &str) -> ExitCode {
    log(&format!("error {what}"));
    ExitCode::from(99)
}

impl App {
    fn sam(&mut self) -> Result<&Sam, String> {
        if self.sam.is_none() {
            self.sam = Some(Sam::initialize().map_err(|e| e.to_string())?);
        }
        self.sam.as_ref().ok_or_else(|| "no handle".to_string())
    }

    /// Run one step; `Ok(Some(code))` ends the process.
    fn step(&mut self, step: &str) -> Result<Option<ExitCode>, String> {
        let parts: Vec<&str> = step.split(':').collect();
        let num = |i: usize| -> Result<u64, String> {
            parts.get(i).and_then(|p| p.parse().ok()).ok_or_else(|| format!("bad step {step}"))
        };
        let e = |err: SamError| format!("{step}: {err}");
        match parts.first().copied().unwrap_or("") {
            "init" => {
                self.sam()?;
                log("initialized");
            }
            "register" => {
                let id = self.sam()?.register().map_err(e)?;
                log(&format!("registered {id}"));
            }
            "start" => {
                log("starting");
                self.sam()?.start().map_err(e)?;
                log("started");
            }
            "stop" => {
                self.sam()?.stop().map_err(e)?;
                log("stopped");
            }
            "finalize" => {
                self.sam()?.finalize().map_err(e)?;
                log("finalized");
            }
            "hb" => {
                let (n, ms) = (num(1)?, num(2)?);
                for _ in 0..n {
                    self.sam()?.hc_send().map_err(e)?;
                    log("hb");
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
            "sleep" => std::thread::sleep(Duration::from_millis(num(1)?)),
            "exit" => {
                log(&format!("exit {}", num(1)?));
                return Ok(Some(ExitCode::from(num(1)? as u8)));
            }
            "abort" => {
                log("abort");
                std::process::abort();
            }
            "hang" => {
                log("hang");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            "data-store" => {
                self.sam()?.data_store(&pattern(num(1)? as usize)).map_err(e)?;
                log("data-stored");
            }
            "data-check" => {
                let want = pattern(num(1)? as usize);
                let got = self.sam()?.data_restore().map_err(e)?;
                if got != want {
                    return Err(format!("data-check: {} bytes, not the {} expected", got.len(), want.len()));
                }
                let mut buf = vec![0u8; want.len() + 3];
                let n = self.sam()?.data_restore_into(&mut buf).map_err(e)?;
                if buf.get(..n) != Some(&want[..]) {
                    return Err("data-check: restore_into differs".into());
                }
                log("data-ok");
            }
            "data-clear" => {
                self.sam()?.data_clear().map_err(e)?;
                log("data-cleared");
            }
            "size-check" => {
                let size = self.sam()?.data_getsize().map_err(e)?;
                if size as u64 != num(1)? {
                    return Err(format!("size-check: {size}"));
                }
                log("size-ok");
            }
            "cb" => {
                let fail_at = num(1)?;
                let calls = Arc::new(Mutex::new(0u64));
                self.sam()?
                    .hc_callback_register(move || {
                        let mut n = calls.lock().unwrap_or_else(|p| p.into_inner());
                        *n += 1;
                        log(&format!("cb {n}"));
                        if *n >= fail_at { Err("unhealthy") } else { Ok(()) }
                    })
                    .map_err(e)?;
                log("cb-registered");
            }
            "warn" => {
                let sig: Signal = parts.get(1).and_then(|s| s.parse().ok()).ok_or("bad signal")?;
                self.sam()?.warn_signal_set(sig).map_err(e)?;
                log(&format!("warn-set {}", sig.as_str()));
            }
            "term-exits" => TERM_EXIT.store(num(1)? as i32, Ordering::Relaxed),
            "mark-failed" => {
                log("mark-failed");
                let err = match self.sam()?.mark_failed() {
                    Ok(never) => match never {},
                    Err(err) => err,
                };
                return Err(format!("mark-failed returned: {err}"));
            }
            "api" => self.api()?,
            "reinit" => match Sam::initialize() {
                Err(SamError::Refused(_)) => log("reinit-refused"),
                Err(other) => return Err(format!("reinit: {other}")),
                Ok(_) => return Err("reinit: a second channel was accepted".into()),
            },
            other => return Err(format!("unknown step {other}")),
        }
        Ok(None)
    }

    /// SAM-7 against the real supervisor: every call outside its states is refused with
    /// BadHandle and changes nothing (the data survives; the state stays put).
    fn api(&mut self) -> Result<(), String> {
        let sam = self.sam()?;
        let bad = |what: &str, r: Result<(), SamError>| -> Result<(), String> {
            match r {
                Err(SamError::BadHandle { .. }) => Ok(()),
                other => Err(format!("api: {what} gave {other:?}")),
            }
        };
        let state = |want: SamState| -> Result<(), String> {
            if sam.state() == want { Ok(()) } else { Err(format!("api: state {} not {want}", sam.state())) }
        };
        bad("start before register", sam.start())?;
        bad("stop before register", sam.stop())?;
        bad("hc_send before register", sam.hc_send())?;
        bad("mark_failed before register", sam.mark_failed().map(|_| ()))?;
        bad("callback before register", sam.hc_callback_register(|| Ok::<(), String>(())))?;
        state(SamState::Initialized)?;
        sam.data_store(b"kept").map_err(|e| e.to_string())?;
        sam.register().map_err(|e| e.to_string())?;
        bad("register twice", sam.register().map(|_| ()))?;
        bad("stop while registered", sam.stop())?;
        bad("hc_send while registered", sam.hc_send())?;
        state(SamState::Registered)?;
        sam.start().map_err(|e| e.to_string())?;
        bad("start twice", sam.start())?;
        bad("register while started", sam.register().map(|_| ()))?;
        bad("callback while started", sam.hc_callback_register(|| Ok::<(), String>(())))?;
        state(SamState::Started)?;
        sam.hc_send().map_err(|e| e.to_string())?;
        sam.stop().map_err(|e| e.to_string())?;
        sam.finalize().map_err(|e| e.to_string())?;
        bad("data_store after finalize", sam.data_store(b"changed"))?;
        bad("data_clear after finalize", sam.data_clear())?;
        bad("data_restore after finalize", sam.data_restore().map(|_| ()))?;
        bad("start after finalize", sam.start())?;
        bad("register after finalize", sam.register().map(|_| ()))?;
        bad("warn after finalize", sam.warn_signal_set(Signal::SIGUSR1))?;
        bad("finalize twice", sam.finalize())?;
        state(SamState::Finalized)?;
        log("api-ok");
        Ok(())
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut scripts = BTreeMap::new();
    let mut default = String::new();
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--log" => {
                if let Ok(mut l) = LOG.lock() {
                    *l = Some(PathBuf::from(v));
                }
            }
            "--script" => {
                let Some((id, steps)) = v.split_once('=') else { return fail("bad --script") };
                let Ok(id) = id.parse::<i32>() else { return fail("bad --script id") };
                scripts.insert(id, steps.to_string());
            }
            "--default" => default = v,
            _ => return fail(&format!("unknown argument {a}")),
        }
    }
    let instance = std::env::var("TOTEM_SAM_INSTANCE").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    INSTANCE.store(instance, Ordering::Relaxed);
    watch_signals();
    log("begin");
    let steps = scripts.get(&instance).cloned().unwrap_or(default);
    let mut app = App { sam: None };
    for step in steps.split(',').filter(|s| !s.is_empty()) {
        match app.step(step) {
            Ok(None) => {}
            Ok(Some(code)) => return code,
            Err(e) => return fail(&e),
        }
    }
    log("end");
    ExitCode::SUCCESS
}
