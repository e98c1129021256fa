//! `shmio lock`'s supervision on Windows: a kill-on-close job object (see
//! the parent module).

use std::io;
use std::process::{Command, ExitStatus};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_BREAKAWAY_OK, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use crate::error::{Error, Result};
use crate::signals;

pub fn run(mut command: Command, program: &str) -> Result<ExitStatus> {
    // Before the command starts, so that it is in the job from its
    // first instruction (a process inherits its parent's job).
    let job = match Job::enter() {
        Ok(job) => Some(job),
        Err(error) => {
            eprintln!(
                "shmio: warning: cannot tie {program} to this process ({error}): \
                 killed, this process would leave it running"
            );
            None
        }
    };
    signals::check()?;
    let mut child = command
        .spawn()
        .map_err(|error| super::cannot_run(program, error))?;
    let status = match child.wait() {
        Ok(status) => status,
        Err(error) => {
            // Unlocking with the command alive is what must not happen.
            let _ = child.kill();
            return Err(Error::io(format!("waiting for {program}"), error));
        }
    };
    if let Some(job) = &job {
        job.wait_for_the_rest();
    }
    Ok(status)
}

/// A job object this process is in, with the command and its children.
struct Job(HANDLE);

impl Job {
    fn enter() -> io::Result<Job> {
        // SAFETY: no security attributes (so the handle is not
        // inherited: the job must close when this process dies) and no name.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        let job = Job(handle);
        // Breaking away stays possible (programs that ask and are refused
        // fail), as a Unix daemon can leave the process group.
        job.limit(JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK)?;
        // SAFETY: both handles are valid; the current-process
        // pseudo-handle needs no closing.
        if unsafe { AssignProcessToJobObject(job.0, GetCurrentProcess()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(job)
    }

    fn limit(&self, flags: u32) -> io::Result<()> {
        let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        info.BasicLimitInformation.LimitFlags = flags;
        // SAFETY: `info` is the structure this class takes, of the size given.
        let done = unsafe {
            SetInformationJobObject(
                self.0,
                JobObjectExtendedLimitInformation,
                (&raw const info).cast(),
                size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if done == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// How many processes are in the job besides this one.
    fn others(&self) -> io::Result<u32> {
        let mut info = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
        // SAFETY: `info` is the structure this class fills, of the size given.
        let done = unsafe {
            QueryInformationJobObject(
                self.0,
                JobObjectBasicAccountingInformation,
                (&raw mut info).cast(),
                size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                std::ptr::null_mut(),
            )
        };
        if done == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info.ActiveProcesses.saturating_sub(1))
    }

    /// Waits for what the command left running in the job. There is no
    /// event for "only this process left", so by polling.
    fn wait_for_the_rest(&self) {
        while self.others().is_ok_and(|others| others > 0) {
            std::thread::sleep(signals::POLL);
        }
    }
}

impl Drop for Job {
    /// On every way out but being killed: without the limit, closing
    /// the job's last handle (now, or as this process exits) kills
    /// nothing, so the exit code stays this process's own.
    fn drop(&mut self) {
        let _ = self.limit(0);
        // SAFETY: the handle is this job's, closed once.
        unsafe { CloseHandle(self.0) };
    }
}
