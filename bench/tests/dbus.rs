//! The D-Bus peer on its own (Linux, feature `dbus`): the call measured
//! alone (its time per call is printed), two echo children on one bus, no
//! `dbus-daemon` (skipped, not an error), and what is left afterwards (no
//! daemon, no directory; a stale directory of a killed run is reclaimed).
//!
//! Its own `main` (`harness = false`), since the echo children are this
//! binary again: it serves their role first. Without `dbus-daemon` the
//! checks that need it are skipped and say so.
//!
//! ```sh
//! cargo test -p shmio-bench --test dbus
//! ```

fn main() {
    if let Some(code) = shmio_bench::sides::serve_child() {
        std::process::exit(code);
    }
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    println!("dbus: Linux only\n0 passed, 0 failed, 1 skipped");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::Path;
    use std::time::Duration;

    use shmio_bench::harness::{Settings, Side};
    use shmio_bench::report::format_ns;
    use shmio_bench::sides::dbus::{self, Bus, EchoCall};
    use shmio_bench::{watchdog, Result};

    /// What a check found.
    enum Outcome {
        Passed,
        Skipped(&'static str),
    }

    /// A check, by its name.
    type Check = (&'static str, fn() -> Result<Outcome>);

    pub fn main() {
        watchdog::start("the dbus test".into());
        let checks: [Check; 2] = [
            ("no dbus-daemon: None, nothing left", missing_daemon),
            ("the call alone, two children, clean up", call_alone),
        ];
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        for (name, check) in checks {
            match check() {
                Ok(Outcome::Passed) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Ok(Outcome::Skipped(why)) => {
                    println!("test {name} ... skipped: {why}");
                    skipped += 1;
                }
                Err(e) => {
                    println!("test {name} ... FAILED: {e}");
                    failed += 1;
                }
            }
        }
        println!("\n{passed} passed, {failed} failed, {skipped} skipped");
        std::process::exit(i32::from(failed > 0));
    }

    /// The private directories of this process.
    fn our_dirs() -> Vec<String> {
        let prefix = format!("shmio-bench-dbus-{}-", std::process::id());
        std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&prefix))
            .collect()
    }

    fn missing_daemon() -> Result<Outcome> {
        let bus = Bus::start_program("/nonexistent/shmio-bench/dbus-daemon")?;
        if bus.is_some() {
            return Err("a daemon started from a path that does not exist".into());
        }
        if !our_dirs().is_empty() {
            return Err(format!("left behind: {:?}", our_dirs()).into());
        }
        Ok(Outcome::Passed)
    }

    fn call_alone() -> Result<Outcome> {
        // What a run killed outright leaves (no process has this pid).
        let stale = std::env::temp_dir().join("shmio-bench-dbus-4294967294-0");
        std::fs::create_dir_all(&stale)?;
        let bus = Bus::start()?;
        if stale.exists() {
            return Err(format!("{} (a stale directory) was not removed", stale.display()).into());
        }
        let Some(bus) = bus else {
            return Ok(Outcome::Skipped(dbus::MISSING));
        };
        let settings = Settings {
            rounds: 5,
            batch_time: Duration::from_millis(5),
        };
        let ns = dbus::time_per_call(&bus, settings)?;
        if !(ns.is_finite() && ns > 0.0) {
            return Err(format!("{ns} ns per call").into());
        }
        println!(
            "D-Bus call alone, private dbus-daemon: {} per call",
            format_ns(ns)
        );

        // Two echo children on one bus, each under a name of its own.
        let mut first = EchoCall::start(&bus)?;
        let mut second = EchoCall::start(&bus)?;
        first.call(1)?;
        second.call(2)?;
        first.batch(16)?;
        second.keepalive()?;
        drop((first, second));

        let (pid, dir) = (bus.pid(), bus.dir().to_owned());
        drop(bus);
        if Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("the daemon ({pid}) is still there").into());
        }
        if dir.exists() {
            return Err(format!("{} is still there", dir.display()).into());
        }
        Ok(Outcome::Passed)
    }
}
