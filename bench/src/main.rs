//! `shmio-bench`: one table comparing shmio's message channel with its peers,
//! all measured in one run (see `bench/README.md`).
//!
//! ```sh
//! cargo run --release -p shmio-bench            # about a minute
//! cargo run --release -p shmio-bench -- --quick # a few seconds, noisier
//! ```
//!
//! The measurements are Linux only (raw futexes, `/dev/shm`, iceoryx2's
//! POSIX back end); elsewhere the binary says so and exits 0.

#[cfg(target_os = "linux")]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    std::process::exit(linux::main());

    #[cfg(not(target_os = "linux"))]
    println!("shmio-bench: Linux only (raw futexes, /dev/shm and iceoryx2's Linux back end); nothing to measure here.");
}
