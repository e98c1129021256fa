//! `shmio.Mapping`: shared memory with a file-like cursor, positional
//! reads and writes, JSON records, a lock, and the buffer protocol.
//!
//! The buffer protocol hands Python a pointer into the mapping (so
//! `memoryview(m)` and `numpy.frombuffer(m)` see the shared memory itself).
//! While any such buffer lives, the mapping keeps a `View` of itself, which
//! keeps the memory mapped, and `close()` raises `BufferError`, as `mmap`
//! does. This is the only `unsafe` of the crate.

use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};
use shmio::{Mapping, MappingOptions, View};

use crate::bytes::{bytes_of, copy_into, len_of};
use crate::errors::{closed, invalid, IntoPyResult};
use crate::inherited::with_keywords;
use crate::json::{from_json, to_json};
use crate::lock::{LockGuard, LockSource};

/// Shared memory: named (found by name from any process of the same user),
/// anonymous, or backed by a file.
///
/// It reads and writes like a binary file (`read`, `write`, `seek`,
/// `tell`, `readinto`), by offset (`read_at`, `write_at`), as JSON
/// records (`read_record`, `write_record`, the framing Rust uses), and
/// through the buffer protocol (`memoryview(m)`, `numpy.frombuffer(m,
/// dtype)`), which shows the shared memory itself, without a copy.
/// `m.lock()` takes the mapping's named mutex. Use after `close()` raises
/// `shmio.ClosedError` (a `ValueError`).
#[pyclass(module = "shmio", name = "Mapping")]
pub(crate) struct PyMapping {
    mapping: Option<Mapping>,
    /// How many buffers handed out by `__getbuffer__` are alive.
    exports: usize,
    /// Keeps the memory mapped while buffers are exported.
    exported_view: Option<View>,
    /// The mapping's mutex source, made on the first `lock()`, so every
    /// lock of this handle is the same one.
    lock_source: Option<Arc<LockSource>>,
}

/// A size or offset from Python: `InvalidError` if negative.
fn non_negative(py: Python<'_>, value: i64, what: &str) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| invalid(py, format!("{what} must be >= 0, not {value}")))
}

/// The options of a named or file-backed mapping.
fn options(
    py: Python<'_>,
    size: Option<i64>,
    file: Option<PathBuf>,
    permissions: Option<u32>,
    persistent: bool,
    read_only: bool,
    copy_on_write: bool,
) -> PyResult<MappingOptions> {
    let mut options = Mapping::options();
    if let Some(size) = size {
        options.size(non_negative(py, size, "size")?);
    }
    if let Some(file) = file {
        options.file(file);
    }
    if let Some(permissions) = permissions {
        options.permissions(permissions);
    }
    options
        .persistent(persistent)
        .read_only(read_only)
        .copy_on_write(copy_on_write);
    Ok(options)
}

impl PyMapping {
    fn wrap(mapping: Mapping) -> PyMapping {
        PyMapping {
            mapping: Some(mapping),
            exports: 0,
            exported_view: None,
            lock_source: None,
        }
    }

    fn get(&self, py: Python<'_>) -> PyResult<&Mapping> {
        self.mapping.as_ref().ok_or_else(|| closed(py, "mapping"))
    }

    fn get_mut(&mut self, py: Python<'_>) -> PyResult<&mut Mapping> {
        self.mapping.as_mut().ok_or_else(|| closed(py, "mapping"))
    }
}

#[pymethods]
impl PyMapping {
    /// Opens the named mapping if it exists (its real size must be at least
    /// `size`), else creates it with `size` bytes, in one atomic step;
    /// `existed` tells which. With `file=path` the memory is that file's.
    /// `permissions` (default 0o600) applies to a new object;
    /// `persistent=True` keeps the name after the last holder closes.
    #[staticmethod]
    #[pyo3(signature = (name, size, *, file=None, permissions=None, persistent=false, read_only=false, copy_on_write=false))]
    #[allow(clippy::too_many_arguments)]
    fn create_or_open(
        py: Python<'_>,
        name: &str,
        size: i64,
        file: Option<PathBuf>,
        permissions: Option<u32>,
        persistent: bool,
        read_only: bool,
        copy_on_write: bool,
    ) -> PyResult<Self> {
        let options = options(
            py,
            Some(size),
            file,
            permissions,
            persistent,
            read_only,
            copy_on_write,
        )?;
        py.detach(|| options.create_or_open(name))
            .py(py)
            .map(PyMapping::wrap)
    }

    /// Creates a named mapping of `size` bytes; `AlreadyExistsError` if the
    /// name is taken. Keywords as for `create_or_open`.
    #[staticmethod]
    #[pyo3(signature = (name, size, *, file=None, permissions=None, persistent=false))]
    fn create(
        py: Python<'_>,
        name: &str,
        size: i64,
        file: Option<PathBuf>,
        permissions: Option<u32>,
        persistent: bool,
    ) -> PyResult<Self> {
        let options = options(py, Some(size), file, permissions, persistent, false, false)?;
        py.detach(|| options.create(name))
            .py(py)
            .map(PyMapping::wrap)
    }

    /// Opens an existing named mapping at its real size; `NotFoundError`
    /// if there is none.
    // A class method, not a static one, so that pickle finds it through
    // the class (`__reduce__`).
    #[classmethod]
    #[pyo3(signature = (name, *, read_only=false, copy_on_write=false))]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        name: &str,
        read_only: bool,
        copy_on_write: bool,
    ) -> PyResult<Self> {
        let options = options(py, None, None, None, false, read_only, copy_on_write)?;
        py.detach(|| options.open(name)).py(py).map(PyMapping::wrap)
    }

    /// An anonymous mapping of `size` bytes (shared with the threads of
    /// this process, and with children that inherit it by fork).
    #[staticmethod]
    fn anonymous(py: Python<'_>, size: i64) -> PyResult<Self> {
        let size = non_negative(py, size, "size")?;
        py.detach(|| Mapping::anonymous(size))
            .py(py)
            .map(PyMapping::wrap)
    }

    /// Maps the file at `path`, with no name: created if missing, grown to
    /// `size` if it is empty (default: the file's size, or 64 MiB for a
    /// new file).
    #[staticmethod]
    #[pyo3(signature = (path, size=None, *, read_only=false, copy_on_write=false, permissions=None))]
    fn map_file(
        py: Python<'_>,
        path: PathBuf,
        size: Option<i64>,
        read_only: bool,
        copy_on_write: bool,
        permissions: Option<u32>,
    ) -> PyResult<Self> {
        let options = options(
            py,
            size,
            Some(path),
            permissions,
            false,
            read_only,
            copy_on_write,
        )?;
        py.detach(|| options.map_file()).py(py).map(PyMapping::wrap)
    }

    /// Removes a name now; processes that hold the mapping keep their memory.
    #[staticmethod]
    fn remove(py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| Mapping::remove(name)).py(py)
    }

    /// True when the constructor opened an existing mapping rather than creating one.
    #[getter]
    fn existed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.get(py)?.existed())
    }

    /// The name (None for an anonymous or file-only mapping).
    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.get(py)?.name().map(str::to_owned))
    }

    /// The length in bytes (as `len(m)`).
    #[getter]
    fn size(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.get(py)?.len())
    }

    /// Whether writes are refused.
    #[getter]
    fn read_only(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.get(py)?.is_read_only())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.mapping.is_none()
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.get(py)?.len() as usize)
    }

    /// Where the cursor is.
    fn tell(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.get(py)?.position())
    }

    /// Moves the cursor: `whence` 0 from the start, 1 from the cursor, 2
    /// from the end; returns the new position. Past the end is allowed (as
    /// for a file); before the start is `InvalidError`.
    #[pyo3(signature = (offset, whence=0))]
    fn seek(&mut self, py: Python<'_>, offset: i64, whence: i32) -> PyResult<u64> {
        let mapping = self.get_mut(py)?;
        let (base, from) = match whence {
            0 => (0, "the start"),
            1 => (mapping.position(), "the cursor"),
            2 => (mapping.len(), "the end"),
            _ => {
                return Err(invalid(
                    py,
                    format!("whence must be 0, 1 or 2, not {whence}"),
                ))
            }
        };
        let target = base.checked_add_signed(offset).ok_or_else(|| {
            invalid(
                py,
                format!("cannot seek {offset} bytes from {from} (at {base}): before the start"),
            )
        })?;
        mapping.set_position(target);
        Ok(target)
    }

    /// Reads up to `n` bytes at the cursor (all to the end if `n` < 0) and
    /// advances; fewer near the end, `b""` at or past it.
    #[pyo3(signature = (n=-1), text_signature = "($self, n=-1)")]
    fn read<'py>(&mut self, py: Python<'py>, n: i64) -> PyResult<Bound<'py, PyBytes>> {
        let mapping = self.get_mut(py)?;
        let position = mapping.position();
        let left = mapping.len().saturating_sub(position);
        let n = if n < 0 { left } else { (n as u64).min(left) };
        if n == 0 {
            // At or past the end, as `io.BytesIO` has it.
            return Ok(PyBytes::new(py, b""));
        }
        let bytes = PyBytes::new_with(py, n as usize, |buf| mapping.read_at(position, buf).py(py))?;
        mapping.set_position(position + n);
        Ok(bytes)
    }

    /// Reads into the writable bytes-like `buffer` at the cursor (as many
    /// bytes as fit, up to the end) and advances; how many were read.
    fn readinto(&mut self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mapping = self.get_mut(py)?;
        let position = mapping.position();
        let left = mapping.len().saturating_sub(position);
        let n = (len_of(buffer)? as u64).min(left) as usize;
        if n == 0 {
            // At or past the end: nothing, once the buffer is a writable one.
            return copy_into(buffer, &[]);
        }
        let mut data = vec![0; n];
        mapping.read_at(position, &mut data).py(py)?;
        let copied = copy_into(buffer, &data)?;
        mapping.set_position(position + copied as u64);
        Ok(copied)
    }

    /// Writes the bytes-like `data` at the cursor and advances; returns its
    /// length. `InvalidError`, and nothing written, if it does not all fit.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let data = bytes_of(data)?;
        let mapping = self.get_mut(py)?;
        let position = mapping.position();
        mapping.write_at(position, &data).py(py)?;
        mapping.set_position(position + data.len() as u64);
        Ok(data.len())
    }

    /// The `n` bytes at `offset` (the cursor does not move);
    /// `InvalidError` if they run past the end.
    fn read_at<'py>(&self, py: Python<'py>, offset: i64, n: i64) -> PyResult<Bound<'py, PyBytes>> {
        let offset = non_negative(py, offset, "offset")?;
        let n = non_negative(py, n, "n")?;
        let mapping = self.get(py)?;
        if offset.checked_add(n).is_none_or(|end| end > mapping.len()) {
            return Err(invalid(
                py,
                format!(
                    "reading {n} bytes at offset {offset} runs past the end ({} bytes)",
                    mapping.len()
                ),
            ));
        }
        PyBytes::new_with(py, n as usize, |buf| mapping.read_at(offset, buf).py(py))
    }

    /// Writes the bytes-like `data` at `offset` (the cursor does not move);
    /// `InvalidError`, and nothing written, if it does not all fit.
    fn write_at(&self, py: Python<'_>, offset: i64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let offset = non_negative(py, offset, "offset")?;
        let data = bytes_of(data)?;
        self.get(py)?.write_at(offset, &data).py(py)
    }

    /// Writes `value` (dict, list, str, int, float, bool, None) as a record
    /// at the cursor, the framing Rust's `write_record` uses (a u32 length,
    /// then JSON), and advances; returns the bytes written.
    fn write_record(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let value = to_json(value)?;
        let mapping = self.get_mut(py)?;
        mapping.write_record(&value).py(py)
    }

    /// Reads the record at the cursor and advances past it; None (cursor
    /// unchanged) where nothing was written.
    fn read_record<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mapping = self.get_mut(py)?;
        match mapping.read_record::<serde_json::Value>().py(py)? {
            Some(value) => from_json(py, &value),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// As `write_record`, at `offset`; the cursor does not move.
    fn write_record_at(
        &self,
        py: Python<'_>,
        offset: i64,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let offset = non_negative(py, offset, "offset")?;
        let value = to_json(value)?;
        self.get(py)?.write_record_at(offset, &value).py(py)
    }

    /// As `read_record`, at `offset`; the cursor does not move.
    fn read_record_at<'py>(&self, py: Python<'py>, offset: i64) -> PyResult<Bound<'py, PyAny>> {
        let offset = non_negative(py, offset, "offset")?;
        match self
            .get(py)?
            .read_record_at::<serde_json::Value>(offset)
            .py(py)?
        {
            Some(value) => from_json(py, &value),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// Writes a file-backed mapping's dirty pages to its file, and waits.
    fn flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        // A clone, so no borrow of this object lasts while the GIL is released.
        let mapping = slf.borrow().get(py)?.clone();
        py.detach(|| mapping.flush_to_file()).py(py)
    }

    /// Takes the mapping's named mutex (`NAME.mutex`, the one Rust's
    /// `Mapping::lock` and `shmio lock NAME` take), waiting at most
    /// `timeout` seconds (None: forever; `TimeoutError` then); returns the
    /// guard. `with m.lock() as guard:` releases on exit, and
    /// `guard.owner_died` says the previous holder died holding it.
    #[pyo3(signature = (timeout=None))]
    fn lock(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<LockGuard> {
        let py = slf.py();
        // The borrow ends before the wait, in which other threads use this object.
        let source = {
            let mut this = slf.borrow_mut();
            let mapping = this.get(py)?.clone();
            Arc::clone(
                this.lock_source
                    .get_or_insert_with(|| Arc::new(LockSource::Mapping(mapping))),
            )
        };
        LockGuard::take(py, source, timeout)
    }

    /// Unmaps this handle. `BufferError` while buffers of it (memoryviews,
    /// numpy arrays) are alive. Closing twice does nothing.
    fn close(&mut self) -> PyResult<()> {
        if self.exports > 0 {
            return Err(PyBufferError::new_err(
                "cannot close a mapping while buffers of it (memoryviews, numpy arrays) exist",
            ));
        }
        // Dropped with the GIL held: unmapping does not wait on anything,
        // and releasing it here would let other threads find this object
        // borrowed.
        self.mapping = None;
        self.lock_source = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        slf.borrow(py).get(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    /// Pickles as `Mapping.open(name)` (read-only or copy-on-write if this
    /// one is): a named mapping is opened by name where it is unpickled (a
    /// child of multiprocessing's spawn or forkserver). An anonymous or
    /// file-only mapping has no name to be found by: `TypeError`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let py = slf.py();
        let this = slf.borrow();
        let mapping = this.get(py)?;
        let Some(name) = mapping.name() else {
            return Err(PyTypeError::new_err(
                "cannot pickle a Mapping without a name (anonymous, or a file's): another \
                 process cannot find it; pass it to a forked child, which inherits it, or \
                 use a named Mapping",
            ));
        };
        let open = slf.get_type().getattr("open")?;
        let keywords = PyDict::new(py);
        if mapping.is_read_only() {
            keywords.set_item("read_only", true)?;
        }
        if mapping.is_copy_on_write() {
            keywords.set_item("copy_on_write", true)?;
        }
        Ok((with_keywords(open, &keywords)?, (name.to_owned(),)))
    }

    fn __repr__(&self) -> String {
        match &self.mapping {
            None => "<shmio.Mapping closed>".to_owned(),
            Some(mapping) => match mapping.name() {
                Some(name) => format!("<shmio.Mapping {name:?} size={}>", mapping.len()),
                None => format!("<shmio.Mapping anonymous size={}>", mapping.len()),
            },
        }
    }

    /// The buffer protocol: the whole mapping, writable unless mapped read-only.
    // `unsafe fn` because PyO3 declares the slot so: CPython calls it with a
    // `view` it owns and that is valid for writing; the one unsafe call
    // inside has its own SAFETY comment.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        // Borrowed already: the mapping is being passed to one of its own
        // methods (`m.write(m)`), which is busy with it.
        let mut this = slf.try_borrow_mut().map_err(|_| {
            PyBufferError::new_err(
                "the mapping is busy in one of its own methods (a mapping cannot be passed to its own methods)",
            )
        })?;
        let mapping = this.get(py)?;
        let read_only = mapping.is_read_only();
        if read_only && flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("the mapping is read-only"));
        }
        let whole = mapping.view(0, mapping.len()).py(py)?;
        let len = isize::try_from(whole.len())
            .map_err(|_| PyValueError::new_err("the mapping is too large for a buffer"))?;
        // SAFETY: `view` is the Py_buffer CPython passed to this slot; the
        // pointer and length are those of the whole mapping, which stays
        // mapped while the buffer lives: `exported_view` below keeps a View
        // of it until the last `__releasebuffer__`, and `close()` refuses
        // while any export is alive. FillInfo takes its own reference to
        // `slf` for `view.obj`, so this object outlives the buffer too.
        let filled = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                whole.as_mut_ptr().cast(),
                len,
                c_int::from(read_only),
                flags,
            )
        };
        if filled != 0 {
            return Err(PyErr::fetch(py));
        }
        this.exports += 1;
        this.exported_view.get_or_insert(whole);
        Ok(())
    }

    /// The end of one buffer's life: the last one lets the mapping close.
    // `unsafe fn` because PyO3 declares the slot so; it does nothing unsafe
    // (the `view` pointer is not read).
    unsafe fn __releasebuffer__(&mut self, _view: *mut ffi::Py_buffer) {
        self.exports = self.exports.saturating_sub(1);
        if self.exports == 0 {
            self.exported_view = None;
        }
    }
}
