//! Another owner's objects on Windows: a section, a kernel mutex and an
//! event's section made with a security descriptor whose owner is SYSTEM
//! (`S-1-5-18`), as a service would make them. Opening one is `Error::ForeignOwner` naming
//! that SID unless the caller trusts it. (Under Wine every process runs as
//! one user, and objects made with default attributes carry no owner at
//! all, which shmio accepts: Windows let the caller open them. An explicit
//! owner is the one way to see the check work there.)

#![cfg(windows)]

use std::os::windows::io::{FromRawHandle, OwnedHandle};

use shmio::{Channel, Error, EventMode, Mapping, NamedEvent, NamedMutex, Owner};
use shmio_testkit::unique_name;
use windows_sys::Win32::Foundation::{LocalFree, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Memory::{CreateFileMappingW, PAGE_READWRITE};
use windows_sys::Win32::System::Threading::CreateMutexW;

const SYSTEM: &str = "S-1-5-18";

/// A security descriptor owned by SYSTEM that lets everyone in.
struct Descriptor(PSECURITY_DESCRIPTOR);

impl Descriptor {
    fn system_owned() -> Descriptor {
        let sddl: Vec<u16> = "O:SYD:(A;;GA;;;WD)".encode_utf16().chain(Some(0)).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: a NUL-terminated SDDL string; Windows allocates the descriptor.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "a descriptor from SDDL");
        Descriptor(descriptor)
    }

    fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().chain(Some(0)).collect()
}

/// Takes a handle a Create*W call returned.
fn owned(handle: windows_sys::Win32::Foundation::HANDLE) -> OwnedHandle {
    assert!(!handle.is_null(), "the object was made");
    // SAFETY: a fresh handle from a Create*W call, ours to close.
    unsafe { OwnedHandle::from_raw_handle(handle) }
}

#[track_caller]
fn expect_system<T>(result: shmio::Result<T>) {
    match result {
        Err(Error::ForeignOwner { owner, .. }) => assert_eq!(owner, Owner::Sid(SYSTEM.into())),
        Err(other) => panic!("expected ForeignOwner, got {other:?}"),
        Ok(_) => panic!("expected ForeignOwner, got access"),
    }
}

#[test]
fn objects_owned_by_another_sid_are_joined_only_when_trusted() {
    let descriptor = Descriptor::system_owned();
    let attributes = descriptor.attributes();
    let section_name = unique_name("sid-section");
    let mutex_name = unique_name("sid-mutex");
    let event_name = unique_name("sid-event");
    // SAFETY: names are NUL-terminated; the attributes outlive the calls.
    let _section = owned(unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            &attributes,
            PAGE_READWRITE,
            0,
            4096,
            wide(&section_name).as_ptr(),
        )
    });
    // SAFETY: as above.
    let _mutex = owned(unsafe { CreateMutexW(&attributes, 0, wide(&mutex_name).as_ptr()) });
    // An event keeps its state in a section of its own, `NAME@event`.
    // SAFETY: as above.
    let _event = owned(unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            &attributes,
            PAGE_READWRITE,
            0,
            4096,
            wide(&format!("{event_name}@event")).as_ptr(),
        )
    });

    expect_system(Mapping::open(&section_name));
    expect_system(Mapping::create_or_open(&section_name, 4096));
    expect_system(Channel::open(&section_name));
    expect_system(NamedMutex::create_or_open(&mutex_name));
    expect_system(NamedEvent::create_or_open(
        &event_name,
        EventMode::AutoReset,
    ));

    let system = Owner::Sid(SYSTEM.into());
    let map = Mapping::options()
        .allow_owner(system.clone())
        .open(&section_name)
        .expect("trusted, it opens");
    assert!(map.existed());
    let mutex = NamedMutex::options()
        .allow_owner(system.clone())
        .create_or_open(&mutex_name)
        .expect("trusted, it opens");
    drop(mutex.lock().unwrap());
    // Trusting anyone, it opens: and a blank section is no event.
    assert!(matches!(
        NamedEvent::options()
            .allow_any_owner(true)
            .create_or_open(&event_name),
        Err(Error::WrongKind { .. })
    ));
    // A section that is not a channel is still not one when trusted.
    assert!(matches!(
        Channel::options().allow_owner(system).open(&section_name),
        Err(Error::WrongKind { .. })
    ));
}
