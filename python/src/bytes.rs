//! Bytes-like objects in and out: anything with the buffer protocol
//! (bytes, bytearray, memoryview, array, numpy arrays) is accepted where
//! Python accepts "bytes-like".

use std::borrow::Cow;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The bytes of a bytes-like object (borrowed for `bytes`, copied otherwise).
pub(crate) fn bytes_of<'a>(object: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(bytes) = object.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(bytes.as_bytes()));
    }
    let buffer = byte_buffer(object)?;
    Ok(Cow::Owned(buffer.to_vec(object.py())?))
}

/// The object's buffer seen as unsigned bytes.
fn byte_buffer(object: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    if let Ok(buffer) = PyBuffer::<u8>::get(object) {
        return Ok(buffer);
    }
    PyBuffer::<u8>::get(&byte_view(object)?)
}

/// `memoryview(object).cast('B')`: the object's bytes, one-dimensional.
fn byte_view<'py>(object: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = object.py();
    let view = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((object,))
        .map_err(|error| {
            // A buffer the object refuses to give now (a mapping passed to
            // its own method) is its error, not a wrong type.
            if error.is_instance_of::<PyBufferError>(py) {
                return error;
            }
            let name = object
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!("a bytes-like object is required, not '{name}'"))
        })?;
    view.call_method1("cast", ("B",))
}

/// Copies `data` into the start of the writable bytes-like `target`;
/// how many bytes were copied (`min` of both lengths).
pub(crate) fn copy_into(target: &Bound<'_, PyAny>, data: &[u8]) -> PyResult<usize> {
    let py = target.py();
    let whole = byte_view(target)?;
    let room = PyBuffer::<u8>::get(&whole)?;
    if room.readonly() {
        return Err(PyTypeError::new_err(
            "a writable bytes-like object is required (bytearray, memoryview, numpy array)",
        ));
    }
    let n = room.item_count().min(data.len());
    drop(room);
    // Exactly the first n bytes, so the copy's lengths match.
    let head = whole.get_item(pyo3::types::PySlice::new(py, 0, n as isize, 1))?;
    PyBuffer::<u8>::get(&head)?.copy_from_slice(py, &data[..n])?;
    Ok(n)
}

/// The length of a bytes-like object, in bytes.
pub(crate) fn len_of(target: &Bound<'_, PyAny>) -> PyResult<usize> {
    Ok(byte_buffer(target)?.len_bytes())
}
