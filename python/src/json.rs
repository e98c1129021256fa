//! Python objects to and from `serde_json::Value`: the records of a
//! mapping, a channel's `send_record`, and a bus's arguments and replies
//! are JSON, as in Rust. Dicts (with string keys), lists and tuples, str,
//! int, float, bool and None go through; anything else is `InvalidError`.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use crate::errors::invalid;

/// How deep a value may nest before it is refused (a cycle, say).
const MAX_DEPTH: usize = 512;

/// The JSON value of a Python object.
pub(crate) fn to_json(object: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert(object, 0)
}

fn convert(object: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    let py = object.py();
    if depth > MAX_DEPTH {
        return Err(invalid(
            py,
            "the value nests too deeply (a cycle?) to be JSON",
        ));
    }
    if object.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: True is an int too.
    if let Ok(flag) = object.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if let Ok(int) = object.cast::<PyInt>() {
        if let Ok(n) = int.extract::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = int.extract::<u64>() {
            return Ok(Value::from(n));
        }
        return Err(invalid(
            py,
            format!("the int {int} does not fit in 64 bits, as JSON numbers here must"),
        ));
    }
    if let Ok(float) = object.cast::<PyFloat>() {
        let x = float.value();
        return Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| invalid(py, format!("the float {x} is not a JSON number")));
    }
    if let Ok(text) = object.cast::<PyString>() {
        return Ok(Value::String(text.to_str()?.to_owned()));
    }
    if let Ok(list) = object.cast::<PyList>() {
        return list
            .iter()
            .map(|item| convert(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(tuple) = object.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|item| convert(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(dict) = object.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, value) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(invalid(
                    py,
                    format!(
                        "a JSON object's keys are strings, not {}",
                        key.get_type().name()?
                    ),
                ));
            };
            map.insert(key.to_str()?.to_owned(), convert(&value, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    Err(invalid(
        py,
        format!(
            "a value of type {} cannot be JSON (dict, list, tuple, str, int, float, bool or None)",
            object.get_type().name()?
        ),
    ))
}

/// The Python object of a JSON value.
pub(crate) fn from_json<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(text) => PyString::new(py, text).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(from_json(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, from_json(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
