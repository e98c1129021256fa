//! The Python bindings of shmio: the extension module `shmio._shmio`,
//! which the Python package `shmio` (python/shmio/) re-exports.
//!
//! The same objects Rust processes use, by name, with the same layout and
//! guarantees: `Mapping`, `Mutex`, `Event`, `Channel`, `Topic` and `Bus`, and an
//! exception hierarchy under `shmio.Error` (see `errors.rs`).

mod aio;
mod bus;
mod bytes;
mod channel;
mod errors;
mod event;
mod inherited;
mod json;
mod lock;
mod mapping;
mod topic;
mod unpoisoned;
mod wait;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _shmio(module: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(module)?;
    module.add_class::<mapping::PyMapping>()?;
    module.add_class::<lock::PyMutex>()?;
    module.add_class::<lock::LockGuard>()?;
    module.add_class::<event::PyEvent>()?;
    module.add_class::<channel::PyChannel>()?;
    module.add_class::<topic::PyTopic>()?;
    module.add_class::<topic::PySubscriber>()?;
    module.add_class::<topic::PySample>()?;
    module.add_class::<bus::PyBus>()?;
    module.add_class::<bus::ListenDecorator>()?;
    module.add_class::<aio::Awaiting>()?;
    module.add_function(wrap_pyfunction!(bus::close_all_buses, module)?)?;
    module.add_function(wrap_pyfunction!(lock::forget_inherited_holds, module)?)?;
    module.add("RECORD_HEADER_LEN", shmio::RECORD_HEADER_LEN)?;
    Ok(())
}
