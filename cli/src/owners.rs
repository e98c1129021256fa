//! Users on the command line: `--allow-owner USER` (a user name, a uid, a
//! Windows SID, or `any`), and owners shown by name in `ls` and `stat`.

use shmio::Owner;

/// An owner whose objects a command may open, besides the caller's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Any owner at all.
    Any,
    /// This one.
    Owner(Owner),
}

/// Parses `--allow-owner`'s value: `any`, a number (a uid), a SID
/// (`S-1-...`), or a user name (Unix).
pub fn parse(text: &str) -> Result<Allowed, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("any") {
        return Ok(Allowed::Any);
    }
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(Allowed::Owner(Owner::Uid(uid)));
    }
    if text.starts_with("S-") {
        return Ok(Allowed::Owner(Owner::Sid(text.to_owned())));
    }
    match uid_of(text) {
        Some(uid) => Ok(Allowed::Owner(Owner::Uid(uid))),
        None => Err(format!(
            "{text:?} is not a known user (give a user name, a uid, a SID, or `any`)"
        )),
    }
}

/// Applies `allowed` to a builder through its `allow_owner` and
/// `allow_any_owner` methods.
pub fn trust<B>(
    builder: &mut B,
    allowed: &[Allowed],
    allow_owner: fn(&mut B, Owner) -> &mut B,
    allow_any_owner: fn(&mut B, bool) -> &mut B,
) {
    for allowed in allowed {
        match allowed {
            Allowed::Any => {
                allow_any_owner(builder, true);
            }
            Allowed::Owner(owner) => {
                allow_owner(builder, owner.clone());
            }
        }
    }
}

/// An owner as people read it: the user's name where it is known.
pub fn describe(owner: &Owner) -> String {
    match owner {
        Owner::Uid(uid) => name_of(*uid).unwrap_or_else(|| uid.to_string()),
        other => other.to_string(),
    }
}

/// The uid of the user called `name`.
#[cfg(unix)]
fn uid_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: every pointer comes from `passwd_entry` and is valid for the call.
    passwd_entry(|entry, buffer, len, found| unsafe {
        libc::getpwnam_r(name.as_ptr(), entry, buffer, len, found)
    })
    .map(|(uid, _)| uid)
}

/// The name of the user `uid`.
#[cfg(unix)]
fn name_of(uid: u32) -> Option<String> {
    // SAFETY: every pointer comes from `passwd_entry` and is valid for the call.
    passwd_entry(|entry, buffer, len, found| unsafe {
        libc::getpwuid_r(uid, entry, buffer, len, found)
    })
    .map(|(_, name)| name)
}

/// The uid and name of the user a `getpw*_r` call (`lookup`) finds, given
/// the entry, a buffer, its length and where to say whether it found one.
#[cfg(unix)]
fn passwd_entry(
    lookup: impl FnOnce(
        *mut libc::passwd,
        *mut libc::c_char,
        usize,
        *mut *mut libc::passwd,
    ) -> libc::c_int,
) -> Option<(u32, String)> {
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let code = lookup(
        entry.as_mut_ptr(),
        buffer.as_mut_ptr(),
        buffer.len(),
        &mut found,
    );
    if code != 0 || found.is_null() {
        return None;
    }
    // SAFETY: the lookup filled `entry` (`found` points at it); its name
    // points into `buffer`, which is still alive.
    let entry = unsafe { entry.assume_init() };
    // SAFETY: as above; a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some((entry.pw_uid, name.to_string_lossy().into_owned()))
}

#[cfg(not(unix))]
fn uid_of(_name: &str) -> Option<u32> {
    None
}

#[cfg(not(unix))]
fn name_of(_uid: u32) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_parsed() {
        assert_eq!(parse("any"), Ok(Allowed::Any));
        assert_eq!(parse("65534"), Ok(Allowed::Owner(Owner::Uid(65534))));
        assert_eq!(
            parse("S-1-5-18"),
            Ok(Allowed::Owner(Owner::Sid("S-1-5-18".to_owned())))
        );
        assert!(parse("no-such-user-here").is_err());
        #[cfg(unix)]
        assert_eq!(parse("root"), Ok(Allowed::Owner(Owner::Uid(0))));
    }
}
