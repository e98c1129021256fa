//! The raw Windows event pair: two named auto-reset events, `SetEvent` one
//! and `WaitForSingleObject` on the other; the wake-up limit on Windows
//! (measured under Wine here), beside which the channel's blocking round
//! trip is reported.

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::atomic::Ordering;
use std::time::Duration;

use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
use windows_sys::Win32::System::Threading::{
    CreateEventW, OpenEventW, SetEvent, WaitForSingleObject, EVENT_MODIFY_STATE, INFINITE,
    SYNCHRONIZATION_SYNCHRONIZE,
};

use super::{warmed_up, Role, Words};
use crate::child::{self, Kid};
use crate::harness::Side;
use crate::{watchdog, Result};
use shmio_cli::process::{Input, Output};

fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().chain(Some(0)).collect()
}

/// The event called `name`: created (auto-reset, not set) or opened.
fn event(name: &str, create: bool) -> Result<OwnedHandle> {
    let wide = wide(name);
    // SAFETY: a NUL-terminated name that outlives the call; default security.
    let handle = unsafe {
        if create {
            CreateEventW(std::ptr::null(), 0, 0, wide.as_ptr())
        } else {
            OpenEventW(
                SYNCHRONIZATION_SYNCHRONIZE | EVENT_MODIFY_STATE,
                0,
                wide.as_ptr(),
            )
        }
    };
    if handle.is_null() {
        return Err(format!("the event {name:?}: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: a non-null handle just returned to us, closed once by OwnedHandle.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

fn set(event: &OwnedHandle) -> Result<()> {
    // SAFETY: a live event handle.
    if unsafe { SetEvent(event.as_raw_handle()) } == 0 {
        return Err(format!("SetEvent: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

fn wait(event: &OwnedHandle) -> Result<()> {
    // SAFETY: a live event handle. No timeout: the watchdog bounds the run.
    match unsafe { WaitForSingleObject(event.as_raw_handle(), INFINITE) } {
        WAIT_OBJECT_0 => Ok(()),
        other => Err(format!("WaitForSingleObject: {other:#x}").into()),
    }
}

/// Raw event ping-pong between this process and an echo child.
pub struct EventPairRoundTrip {
    ping: OwnedHandle,
    pong: OwnedHandle,
    /// The stop flag (its `PING` word), which the child looks at after each wake-up.
    control: Words,
    _kid: Kid,
    gap: Option<Duration>,
}

impl EventPairRoundTrip {
    /// Creates the events under `name` and starts the echo child; each
    /// timed round trip after `gap` of quiet, if any.
    pub fn start(name: &str, gap: Option<Duration>) -> Result<EventPairRoundTrip> {
        let control = Words::create(&format!("{name}-control"))?;
        let ping = event(&format!("{name}-ping"), true)?;
        let pong = event(&format!("{name}-pong"), true)?;
        let kid = child::spawn(
            Role::EventPairEcho,
            &[(child::NAME, name.to_owned())],
            Input::Null,
            Output::Null,
        )?;
        Ok(EventPairRoundTrip {
            ping,
            pong,
            control,
            _kid: kid,
            gap,
        })
    }
}

impl Side for EventPairRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let (ping, pong) = (&self.ping, &self.pong);
        warmed_up(n, self.gap, || {
            set(ping)?;
            wait(pong)
        })
    }

    fn keepalive(&mut self) -> Result<()> {
        set(&self.ping)?;
        wait(&self.pong)
    }
}

impl Drop for EventPairRoundTrip {
    fn drop(&mut self) {
        self.control.u32_at(Words::PING).store(1, Ordering::SeqCst);
        let _ = set(&self.ping);
    }
}

/// The echo child: answers every `ping` with a `pong` until told to stop.
pub fn echo_child() -> Result<()> {
    let name = child::var(child::NAME)?;
    let control = Words::open(&format!("{name}-control"))?;
    let ping = event(&format!("{name}-ping"), false)?;
    let pong = event(&format!("{name}-pong"), false)?;
    loop {
        wait(&ping)?;
        if control.u32_at(Words::PING).load(Ordering::SeqCst) != 0 {
            return Ok(());
        }
        set(&pong)?;
        watchdog::progress();
    }
}
