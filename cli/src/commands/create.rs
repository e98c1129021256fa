//! `shmio create NAME`: a named mapping that stays until `shmio rm`, or,
//! where a name cannot outlive its holders, one held open until the end of
//! input.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use shmio::{Error as ShmioError, Mapping};

use super::exactly;
use crate::cli::Create;
use crate::error::{Error, Result};
use crate::output::ignore_broken_pipe;
use crate::units::describe_size;

pub fn run(args: Create) -> Result {
    let Create {
        name,
        size,
        file,
        permissions,
    } = args;
    let mut options = Mapping::options();
    if let Some(size) = size {
        options.size(size);
    }
    if let Some(permissions) = permissions {
        options.permissions(exactly(permissions));
    }
    if let Some(file) = &file {
        options.file(file);
    }
    match options.clone().persistent(true).create(&name) {
        Ok(map) => {
            print_created(&map, file.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        // Windows (a section lives while a handle does), and a file-backed
        // name on Linux: the name cannot outlive its holders, so hold it.
        Err(ShmioError::Unsupported { what }) => {
            let map = options.create(&name)?;
            print_created(&map, file.as_deref())?;
            eprintln!(
                "shmio: {what} is unsupported, so this command holds {name:?} open \
                 until Ctrl-C or the end of its input"
            );
            let mut sink = Vec::new();
            let _ = io::stdin().lock().read_to_end(&mut sink);
            drop(map);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error.into()),
    }
}

fn print_created(map: &Mapping, file: Option<&Path>) -> Result<()> {
    let mut out = io::stdout().lock();
    let mut text = format!(
        "name:    {}\nos name: {}\nsize:    {}\n",
        map.name().unwrap_or_default(),
        map.os_name().unwrap_or_default(),
        describe_size(map.len())
    );
    if let Some(file) = file {
        text.push_str(&format!("file:    {}\n", file.display()));
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .or_else(ignore_broken_pipe)
        .map_err(|e| Error::io("writing to stdout", e))
}
