//! Parent-death signal: when the host process dies without stopping its plugins (SIGKILL, a
//! crash), Linux kills the plugin too, as SPIRE arranges with `Pdeathsig`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Alive and not a zombie (an orphan is reaped by whoever adopts it, maybe not promptly).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn plugin_dies_with_its_host() {
    let mut host = Command::new(env!("CARGO_BIN_EXE_host-once"))
        .arg(env!("CARGO_BIN_EXE_interop-plugin"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning host-once");
    let mut line = String::new();
    BufReader::new(host.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("reading the plugin PID");
    let plugin: u32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("host-once printed {line:?}"));
    assert!(
        alive(plugin),
        "the plugin {plugin} should be running while its host is"
    );

    host.kill().expect("SIGKILL to the host");
    host.wait().expect("reaping the host");
    // The kernel delivers the signal as the host's thread exits; poll, bounded.
    let mut polls = 0;
    while alive(plugin) && polls < 500 {
        std::thread::sleep(Duration::from_millis(20));
        polls += 1;
    }
    assert!(
        !alive(plugin),
        "plugin {plugin} outlived its SIGKILLed host"
    );
}
