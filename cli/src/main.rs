//! `shmio`: named shared memory from the command line.
//!
//! Every command is a thin layer over the `shmio` library: `create`, `ls`,
//! `stat`, `write`, `read`, `dump`, `rm` and `gc` for named mappings; `lock`
//! runs a command under a named mutex; `send` and `recv` use a channel,
//! `publish` and `subscribe` a topic;
//! `listen`, `call`, `post` and `listeners` use the command bus;
//! `bench` measures shmio against its peers and `demo` shows the library's
//! main job with real worker processes. Errors are one line on stderr
//! (`shmio: error: ...`) and exit 1 (or the code `error` gives); usage
//! errors exit 2.
//!
//! `cli` is the command line, `commands/` what each command does, `error`
//! what can go wrong; beside them, one module per concern the commands
//! share (`output`, `owners`, `units`, `hexdump`, `signals`, `supervise`,
//! `proc`).

mod cli;
mod commands;
mod error;
mod hexdump;
mod output;
mod owners;
mod proc;
mod signals;
mod supervise;
mod units;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::*;

fn main() -> ExitCode {
    let command = Cli::parse().command;
    match run(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shmio: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(command: Command) -> error::Result {
    // Commands that wait end cleanly on SIGTERM, SIGINT or SIGHUP, dropping
    // what they hold (see `signals`).
    if matches!(
        command,
        Command::Lock(_)
            | Command::Send(_)
            | Command::Recv(_)
            | Command::Publish(_)
            | Command::Subscribe(_)
            | Command::Listen(_)
    ) {
        signals::install()?;
    }
    match command {
        Command::Create(args) => create::run(args),
        Command::Ls(args) => list::ls(args),
        Command::Stat(args) => list::stat(args),
        Command::Write(args) => bytes::write(args),
        Command::Read(args) => bytes::read(args),
        Command::Dump(args) => bytes::dump(args),
        Command::Rm(args) => rm::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Lock(args) => lock::run(args),
        Command::Send(args) => channel::send(args),
        Command::Recv(args) => channel::recv(args),
        Command::Publish(args) => topic::publish(args),
        Command::Subscribe(args) => topic::subscribe(args),
        Command::Listen(args) => bus::listen(args),
        Command::Call(args) => bus::call(args),
        Command::Post(args) => bus::post(args),
        Command::Listeners(args) => bus::listeners(args),
        Command::Bench(args) => bench::run(args),
        Command::Demo => demo::run(),
        Command::Worker { role } => worker::run(role),
    }
}
